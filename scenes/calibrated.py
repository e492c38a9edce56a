"""Calibrated multi-view sets: DTU scans in the IDR / NeuS / MonoSDF layouts, and Strecha `.camera` files.

Both give pinhole cameras with OpenCV axes. The DTU scans store `world_mat_i` (the 3x4 projection
K [R | t], padded to 4x4) and `scale_mat_i` (maps the unit sphere around the object to world);
the camera of P = world_mat @ scale_mat lives in that normalised frame, where the object fits in
the unit sphere (`camera_mat_i`, where present, is not needed). The layouts differ only in where
the files are: IDR `cameras.npz` + `image/` + `mask/`, NeuS the same with `cameras_sphere.npz`,
MonoSDF `cameras.npz` beside `000000_rgb.png`, ... (its `*_depth` / `*_normal` priors are not read).
Strecha stores K, radial distortion, the camera-to-world rotation R and the centre C:
x ~ K R^T (X - C).
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


CAMERA_FILES = ("cameras_sphere.npz", "cameras.npz")  # NeuS's name, then IDR's and MonoSDF's
MONOSDF_SUFFIX = "_rgb"  # MonoSDF names its images 000000_rgb.png beside 000000_depth.npy, ...


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (the images of the calibrated set).")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def camera_file(root: Path) -> Path | None:
    """The cameras file of a DTU scan folder, or None when it has none."""
    return next((root / name for name in CAMERA_FILES if (root / name).is_file()), None)


def _scan_images(root: Path, images: str) -> list[Path]:
    """One image per camera, sorted: `images/` (IDR, NeuS), else MonoSDF's `*_rgb.png` in the root."""
    files = _images(root / images) if (root / images).is_dir() else sorted(root.glob(f"*{MONOSDF_SUFFIX}.png"))
    if not files:
        raise DatasetError(f"{root}: no images; a DTU scan keeps them in {images}/ (IDR, NeuS) or as "
                           f"000000{MONOSDF_SUFFIX}.png, ... beside the cameras file (MonoSDF).")
    return files


def _frame_key(path: Path) -> int | str:
    """What pairs an image with its mask: the frame number where the name is one (IDR's DTU names
    images 000000.png and masks 000.png), else the name."""
    stem = path.stem.removesuffix(MONOSDF_SUFFIX)
    return int(stem) if stem.isdigit() else stem


def _scan_masks(root: Path, files: list[Path]) -> list[Path] | None:
    """Each image's mask from `mask/`, or None without that folder. A missing mask is an error: that
    view would teach its background as part of the object."""
    folder = root / "mask"
    if not folder.is_dir():
        return None
    masks = {_frame_key(p): p for p in _images(folder)}
    missing = [f for f in files if _frame_key(f) not in masks]
    if missing:
        names = ", ".join(f.name for f in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(f"{folder}: no mask for {len(missing)} of {len(files)} images ({names}). Add a mask "
                           f"named like each image (e.g. {folder.name}/{missing[0].stem}.png), or remove "
                           f"{folder.name}/ to train on the full images.")
    return [masks[_frame_key(f)] for f in files]


def read_dtu(root: str | Path, images: str = "image", downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """A DTU scan (IDR, NeuS or MonoSDF layout): the cameras file + one image per camera, sorted,
    cut out by the masks in `mask/` when that folder exists."""
    root = Path(root)
    path = camera_file(root)
    if path is None:
        raise DatasetError(f"{root}: no {' or '.join(CAMERA_FILES)}; a DTU scan folder holds one of them beside "
                           f"{images}/ (IDR, NeuS) or 000000{MONOSDF_SUFFIX}.png, ... (MonoSDF).")
    data = np.load(path)
    files = _scan_images(root, images)
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
    pixels = load_images(path, files, downscale, use_cache, _scan_masks(root, files))
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
