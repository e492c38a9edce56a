"""Calibrated multi-view sets: DTU / IDR `cameras.npz` and Strecha `.camera` files.

Both give pinhole cameras with OpenCV axes. DTU/IDR store `world_mat_i` (the 3x4 projection
K [R | t], padded to 4x4) and `scale_mat_i` (maps the unit sphere around the object to world);
the camera of P = world_mat @ scale_mat lives in that normalised frame, where the object fits in
the unit sphere. Strecha stores K, radial distortion, the camera-to-world rotation R and the
centre C: x ~ K R^T (X - C).
"""

from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from .cameras import Cameras
from .dataset import DatasetError, PosedImages
from .frames import image_size, load_images
from .sfm import IMAGE_SUFFIXES


def decompose_projection(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x4 projection P = K [R | t] -> (K [3, 3] with positive diagonal, c2w [3, 4])."""
    k, r = scipy.linalg.rq(p[:, :3])
    signs = np.diag(np.sign(np.diag(k)))
    k, r = k @ signs, signs @ r  # K's diagonal positive; R stays a rotation up to the sign of P
    if np.linalg.det(r) < 0:
        r, p = -r, -p
    t = np.linalg.solve(k, p[:, 3])
    k = k / k[2, 2]
    return k, np.concatenate([r.T, (-r.T @ t)[:, None]], 1)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (the images of the calibrated set).")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_dtu(root: str | Path, images: str = "image", downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """IDR/NeuS-style DTU scan: `cameras.npz` + images in `image/` (sorted, one per camera)."""
    root = Path(root)
    path = root / "cameras.npz"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; a DTU/IDR scan folder holds cameras.npz and image/.")
    data = np.load(path)
    files = _images(root / images)
    n = len(files)
    keys = [f"world_mat_{i}" for i in range(n)] + [f"scale_mat_{i}" for i in range(n)]
    missing = [k for k in keys if k not in data]
    if missing:
        raise DatasetError(f"{path}: {len(files)} images but {missing[:3]} are missing from the file; each image i "
                           "needs world_mat_i and scale_mat_i.")
    ks, c2ws = [], []
    for i in range(n):
        k, c2w = decompose_projection((data[f"world_mat_{i}"] @ data[f"scale_mat_{i}"])[:3, :4])
        ks.append(k)
        c2ws.append(c2w)
    pixels = load_images(path, files, downscale, use_cache)
    height, width = pixels.shape[1:3]
    with_image = image_size(files[0])
    sx, sy = width / with_image[0], height / with_image[1]
    kk = np.stack(ks)
    cameras = Cameras(torch.tensor(np.stack(c2ws), dtype=torch.float32), torch.tensor(kk[:, 0, 0] * sx).float(),
                      torch.tensor(kk[:, 1, 1] * sy).float(), torch.tensor(kk[:, 0, 2] * sx).float(),
                      torch.tensor(kk[:, 1, 2] * sy).float(), width, height, 0.05, 1e10)
    has_alpha = bool((pixels[..., 3] < 255).any())
    return PosedImages(cameras, pixels, [p.name for p in files], (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), has_alpha, 2)



def read_strecha_camera(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(K [3, 3], radial [3], c2w [3, 4], (width, height)) of one `.camera` file."""
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise DatasetError(f"{path}: not a Strecha .camera file ({error}).") from error
    if values.size != 26:
        raise DatasetError(f"{path}: a Strecha .camera file has 26 numbers (K, distortion, R, C, size), got {values.size}.")
    k, radial, r, c = values[:9].reshape(3, 3), values[9:12], values[12:21].reshape(3, 3), values[21:24]
    return k, radial, np.concatenate([r, c[:, None]], 1), (int(values[24]), int(values[25]))


def _strecha_distortion(cams: list) -> torch.Tensor | None:
    radial = np.stack([c[1] for c in cams])  # [N, 3]
    if not radial.any():
        return None
    if radial[:, 2].any():
        raise DatasetError("Strecha cameras with a third radial coefficient are not supported (k1, k2 only).")
    return torch.tensor(np.concatenate([radial[:, :2], np.zeros((len(cams), 2))], 1), dtype=torch.float32)


def read_strecha(root: str | Path, downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """Strecha set: `images/*.jpg` with `gt_dense_cameras/<name>.camera` (world units as given)."""
    root = Path(root)
    files = _images(root / "images")
    cams = []
    for f in files:
        path = root / "gt_dense_cameras" / f"{f.name}.camera"
        if not path.is_file():
            raise DatasetError(f"{path}: missing ground-truth camera for {f.name}.")
        cams.append(read_strecha_camera(path))
    pixels = load_images(root / "gt_dense_cameras", files, downscale, use_cache)
    height, width = pixels.shape[1:3]
    sx, sy = width / cams[0][3][0], height / cams[0][3][1]
    c2w = np.stack([c[2] for c in cams])
    centres = c2w[:, :, 3]
    half = max(float(np.abs(centres - centres.mean(0)).max()) * 2, 1e-6)
    lo, hi = centres.mean(0) - half, centres.mean(0) + half
    cameras = Cameras(torch.tensor(c2w, dtype=torch.float32),
                      torch.tensor([c[0][0, 0] * sx for c in cams]).float(), torch.tensor([c[0][1, 1] * sy for c in cams]).float(),
                      torch.tensor([c[0][0, 2] * sx for c in cams]).float(), torch.tensor([c[0][1, 2] * sy for c in cams]).float(),
                      width, height, 0.05, 1e10, _strecha_distortion(cams))
    return PosedImages(cameras, pixels, [f.name for f in files], tuple(lo.tolist() + hi.tolist()), False)  # type: ignore[arg-type]
