"""LLFF forward-facing captures: `poses_bounds.npy` ([N, 17]: a 3x5 [R | t | (h, w, f)] per view
with rotation columns (down, right, back), then the near and far depth bounds) and the image
folders `images`, `images_4`, `images_8`, ... in file-name order.

Choice: a bounded world box, not NDC. Poses are recentred on their mean pose and scaled so the
nearest bound sits at 1/0.75 (LLFF's `bd_factor`), and the box is the union of the camera
frustums between the near and far bounds. The occupancy grid then skips the empty space in front
of the scene and the same field, marcher and mesh extraction serve LLFF and 360 scenes, while NDC
would warp the geometry (meshes in NDC are not metric) and tie the scene to one forward axis.
"""

from pathlib import Path

import numpy as np
import torch

from .frames import load_images
from .cameras import Cameras
from .dataset import DatasetError, PosedImages
from .sfm import IMAGE_SUFFIXES


def _mean_pose(c2w: np.ndarray) -> np.ndarray:
    """The average camera [3, 4] (OpenCV axes): mean centre, mean forward, mean down."""
    center = c2w[:, :, 3].mean(0)
    forward = c2w[:, :, 2].mean(0)
    forward /= np.linalg.norm(forward)
    right = np.cross(c2w[:, :, 1].mean(0), forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward, center], 1)


def _image_folder(root: Path, factor: int) -> Path:
    folder = root / ("images" if factor == 1 else f"images_{factor}")
    if not folder.is_dir():
        found = sorted(p.name for p in root.glob("images*") if p.is_dir())
        raise DatasetError(f"{folder}: no such folder (found {found or 'no image folders'}). Pick an existing "
                           "factor, e.g. --factor 8 for images_8.")
    return folder


def read_llff(root: str | Path, factor: int = 8, downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """All views of an LLFF scene from `images_<factor>`, downscaled further by `downscale`."""
    root = Path(root)
    path = root / "poses_bounds.npy"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file. An LLFF scene folder holds poses_bounds.npy and images_* folders.")
    try:
        raw = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DatasetError(f"{path}: not a readable .npy file ({error}).") from error
    if raw.ndim != 2 or raw.shape[1] != 17 or not np.isfinite(raw).all():
        raise DatasetError(f"{path}: expected finite [N, 17] poses and bounds, got {list(raw.shape)}.")
    folder = _image_folder(root, factor)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)
    if len(files) != raw.shape[0]:
        raise DatasetError(f"{folder}: {len(files)} images for {raw.shape[0]} poses in {path.name}; LLFF pairs them "
                           f"in file-name order, so the counts must match"
                           + (f" (ignored non-image files: {others[:5]})." if others else "."))

    poses = raw[:, :15].reshape(-1, 3, 5)
    bounds = raw[:, 15:]
    h_full, w_full, focal = poses[0, :, 4]
    # (down, right, back) -> OpenCV (right, down, forward)
    c2w = np.stack([poses[:, :, 1], poses[:, :, 0], -poses[:, :, 2], poses[:, :, 3]], -1)
    scale = 1.0 / (bounds.min() * 0.75)
    c2w[:, :, 3] *= scale
    near, far = float(bounds.min() * scale * 0.9), float(bounds.max() * scale * 1.1)
    mean = _mean_pose(c2w)
    r, t = mean[:, :3], mean[:, 3]
    c2w = np.concatenate([r.T @ c2w[:, :, :3], (r.T @ (c2w[:, :, 3] - t).T).T[:, :, None]], -1)

    images = load_images(path, files, downscale, use_cache)
    height, width = images.shape[1:3]
    fx = focal * width / w_full
    fy = focal * height / h_full
    cameras = Cameras(torch.tensor(c2w, dtype=torch.float32), fx, fy, width / 2, height / 2, width, height, near, far)
    transform = torch.tensor(np.concatenate([scale * r.T, (-r.T @ t)[:, None]], 1), dtype=torch.float32)
    return PosedImages(cameras, images, [p.name for p in files], _frustum_box(cameras, near, far), False,
                       transform=transform)


def _frustum_box(cameras: Cameras, near: float, far: float) -> tuple[float, ...]:
    """Axis-aligned box around every camera's view frustum between depths near and far."""
    n, w, h = len(cameras), cameras.width, cameras.height
    # the rays through the image corners (pixel centres sit at +0.5, so the corners are at -0.5 and size - 0.5)
    u = torch.tensor([-0.5, w - 0.5, -0.5, w - 0.5]).repeat(n)
    v = torch.tensor([-0.5, -0.5, h - 0.5, h - 0.5]).repeat(n)
    rays = cameras.rays(torch.arange(n).repeat_interleave(4), u, v)
    forward = cameras.c2w[:, :, 2].repeat_interleave(4, 0)  # [4N, 3] optical axes
    per_depth = rays.directions / (rays.directions * forward).sum(-1, keepdim=True)  # [4N, 3] to unit z-depth
    flat = torch.cat([rays.origins + per_depth * near, rays.origins + per_depth * far])
    return tuple(flat.min(0).values.tolist() + flat.max(0).values.tolist())  # type: ignore[return-value]
