"""A COLMAP project as a dataset: `<root>/sparse/0` (or `<root>/colmap/sparse/0`, or a model folder
given directly) and the images it names under `<root>/images`.

Normalisation: the sparse points (1st-99th percentile per axis, so stray points do not inflate
it) set a box; the scene is centred on it and scaled so its largest half-extent is 1, which is
where the field's resolution goes; occupancy cascades are added until the box, doubled per
cascade, holds every camera, so backgrounds around a 360 capture are still marched (coarsely).
"""

import math
from pathlib import Path

import numpy as np
import torch

from .cameras import Cameras
from .colmap import ColmapCamera, read_model
from .dataset import DatasetError, PosedImages
from .frames import load_images

MODEL_FOLDERS = ("sparse/0", "colmap/sparse/0", "sparse")


def find_model(root: Path) -> Path:
    for sub in ("", *MODEL_FOLDERS):
        folder = root / sub if sub else root
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder
    raise DatasetError(f"{root}: no COLMAP model (looked for cameras.bin/.txt in {', '.join(MODEL_FOLDERS)}).")


def normalize_scene(c2w: np.ndarray, points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Centre and scale cameras c2w [N, 3, 4] on the points [P, 3] (1st-99th percentile box; the
    camera centres when there are none) so the box's largest half-extent is 1. Returns the new
    c2w, the similarity [3, 4] (x' = A x + b) and the cascades that reach every camera."""
    source = points if points is not None and len(points) >= 8 else c2w[:, :, 3]
    lo, hi = np.percentile(source, 1, axis=0), np.percentile(source, 99, axis=0)
    center, scale = (lo + hi) / 2, 1.0 / max(float((hi - lo).max()) / 2, 1e-9)
    out = c2w.copy()
    out[:, :, 3] = (c2w[:, :, 3] - center) * scale
    reach = float(np.abs(out[:, :, 3]).max())
    cascades = 1 + max(0, math.ceil(math.log2(max(reach, 1.0) * 1.05)))
    return out, np.concatenate([np.eye(3) * scale, (-center * scale)[:, None]], 1), cascades


def colmap_intrinsics(camera: ColmapCamera, path: Path) -> list[float]:
    """fx, fy, cx, cy, k1, k2, p1, p2 of a COLMAP camera at its own resolution."""
    p = camera.params.tolist()
    if camera.model == "SIMPLE_PINHOLE":
        return [p[0], p[0], p[1], p[2], 0, 0, 0, 0]
    if camera.model == "PINHOLE":
        return [*p[:4], 0, 0, 0, 0]
    if camera.model == "SIMPLE_RADIAL":
        return [p[0], p[0], p[1], p[2], p[3], 0, 0, 0]
    if camera.model == "RADIAL":
        return [p[0], p[0], p[1], p[2], p[3], p[4], 0, 0]
    if camera.model == "OPENCV":
        return p
    raise DatasetError(f"{path}: camera {camera.id} uses the {camera.model} model, which onefield does not read "
                       "(PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV). Undistort the images with "
                       "`colmap image_undistorter` and use its output model.")


def read_colmap_scene(root: str | Path, images: str = "images", downscale: float = 1.0,
                      use_cache: bool = True) -> PosedImages:
    root = Path(root)
    model_dir = find_model(root)
    model = read_model(model_dir)
    if not model.images:
        raise DatasetError(f"{model_dir}: the model registers no images; run the mapper again or add photos.")
    image_dir = root / images
    kept = sorted(model.images.values(), key=lambda im: im.name)
    paths = [image_dir / im.name for im in kept]
    missing = [im.name for im, path in zip(kept, paths) if not path.is_file()]
    if missing:
        raise DatasetError(f"{image_dir}: {len(missing)} registered image(s) are missing, e.g. {missing[:3]}. "
                           "Keep the images beside the model, in the folder it was built from.")
    sizes = {(model.cameras[im.camera_id].width, model.cameras[im.camera_id].height) for im in kept}
    if len(sizes) > 1:
        raise DatasetError(f"{model_dir}: images of several sizes {sorted(sizes)}; onefield trains on one size. "
                           "Resize the photos to one size before structure-from-motion.")
    cam_w, cam_h = sizes.pop()

    points = np.stack([p.xyz for p in model.points.values()]) if model.points else None
    c2w, transform, cascades = normalize_scene(np.stack([im.c2w() for im in kept]), points)

    cameras_file = next(model_dir / f"cameras{ext}" for ext in (".bin", ".txt") if (model_dir / f"cameras{ext}").is_file())
    images_t = load_images(cameras_file, paths, downscale, use_cache)
    height, width = images_t.shape[1:3]
    k = np.array([colmap_intrinsics(model.cameras[im.camera_id], model_dir) for im in kept])  # [N, 8]
    sx, sy = width / cam_w, height / cam_h
    distortion = torch.tensor(k[:, 4:], dtype=torch.float32) if np.any(k[:, 4:] != 0) else None
    cameras = Cameras(torch.tensor(c2w, dtype=torch.float32), torch.tensor(k[:, 0] * sx, dtype=torch.float32),
                      torch.tensor(k[:, 1] * sy, dtype=torch.float32), torch.tensor(k[:, 2] * sx, dtype=torch.float32),
                      torch.tensor(k[:, 3] * sy, dtype=torch.float32), width, height, 0.05, 1e10, distortion)
    has_alpha = bool((images_t[..., 3] < 255).any())
    sparse = colors = None
    if points is not None:
        sparse = torch.tensor(points @ transform[:, :3].T + transform[:, 3], dtype=torch.float32)
        colors = torch.tensor(np.stack([p.rgb for p in model.points.values()]), dtype=torch.uint8)
    return PosedImages(cameras, images_t, [im.name for im in kept], (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), has_alpha,
                       cascades, torch.tensor(transform, dtype=torch.float32), sparse, colors)
