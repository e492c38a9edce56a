"""instant-ngp / nerfstudio `transforms.json` (NeRF-Synthetic's `transforms_<split>.json` is the
subset with only `camera_angle_x`).

Intrinsics are shared at the top level or given per frame (`fl_x`, `fl_y`, `cx`, `cy`, `w`, `h`,
or `camera_angle_x` / `camera_angle_y`), with OpenCV radial-tangential distortion (`k1`, `k2`,
`p1`, `p2`). Distortion is applied to the rays, not the images: the pixels are used as captured
(no resampling blur, no cropped or stretched borders), and `Cameras.rays` bends each ray to where
the distorted pixel looked. The scene box follows instant-ngp: the unit cube of its `scale` /
`offset` (default 0.33 / 0.5, a cube of side ~3 about the origin), with `aabb_scale` (a power of
two) as the number of occupancy cascades around it.
"""

import math
from pathlib import Path

import torch

from onefield.errors import UserError

from .frames import frame_pose, image_size, load_images, present_frames, read_json
from .cameras import Cameras
from .dataset import DatasetError, PosedImages

SUPPORTED_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


def _number(json_path: Path, where: str, key: str, value: object) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{json_path}: {where} '{key}' must be a finite number, got {value!r}.")
    return float(value)


def _intrinsics(json_path: Path, meta: dict, frame: dict, index: int, width: int, height: int) -> list[float]:
    """fx, fy, cx, cy, k1, k2, p1, p2 of one frame for an image of width x height pixels."""
    where = f"frame {index}"

    def get(key: str) -> float | None:
        value = frame.get(key, meta.get(key))
        return None if value is None else _number(json_path, where, key, value)

    model = frame.get("camera_model", meta.get("camera_model"))
    if model is not None and model not in SUPPORTED_MODELS:
        raise DatasetError(f"{json_path}: camera model {model!r} is not supported (onefield reads "
                           f"{', '.join(SUPPORTED_MODELS)}). Undistort the images first, e.g. with "
                           "`colmap image_undistorter`, and export PINHOLE cameras.")
    for key in ("k3", "k4"):
        if get(key):
            raise DatasetError(f"{json_path}: '{key}' is not supported (OpenCV k1, k2, p1, p2 only). "
                               "Undistort the images first or drop the higher-order terms.")
    # intrinsics refer to the size stated in the file (w, h); images on disk may be smaller
    file_w, file_h = get("w") or width, get("h") or height
    sx, sy = width / file_w, height / file_h
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise DatasetError(f"{json_path}: {where} has no focal length: give 'fl_x' (pixels) or "
                               "'camera_angle_x' (radians), at the top level or per frame.")
        fx = 0.5 * file_w / math.tan(0.5 * angle)
    if fy is None:
        angle_y = get("camera_angle_y")
        fy = 0.5 * file_h / math.tan(0.5 * angle_y) if angle_y is not None else fx
    cx, cy = get("cx"), get("cy")
    cx = file_w / 2 if cx is None else cx
    cy = file_h / 2 if cy is None else cy
    return [fx * sx, fy * sy, cx * sx, cy * sy] + [get(k) or 0.0 for k in ("k1", "k2", "p1", "p2")]


def _ngp_box(json_path: Path, meta: dict) -> tuple[tuple[float, ...], int]:
    """instant-ngp's unit cube in world units, and the number of cascades from aabb_scale."""
    scale = _number(json_path, "top level", "scale", meta.get("scale", 0.33))
    offset = meta.get("offset", [0.5, 0.5, 0.5])
    if not (isinstance(offset, list) and len(offset) == 3):
        raise DatasetError(f"{json_path}: 'offset' must list 3 numbers, got {offset!r}.")
    # ngp stores world (x, y, z) as (y, z, x): world axis a uses ngp offset component (a + 2) % 3
    lo = [(0.0 - offset[(a + 2) % 3]) / scale for a in range(3)]
    hi = [(1.0 - offset[(a + 2) % 3]) / scale for a in range(3)]
    aabb_scale = meta.get("aabb_scale", 1)
    if not isinstance(aabb_scale, int) or aabb_scale < 1 or aabb_scale & (aabb_scale - 1) or aabb_scale > 128:
        raise DatasetError(f"{json_path}: 'aabb_scale' must be a power of two from 1 to 128, got {aabb_scale!r}.")
    return tuple(lo + hi), int(math.log2(aabb_scale)) + 1


def read_transforms(json_path: str | Path, downscale: float = 1.0, use_cache: bool = True,
                    default_aabb: tuple[float, ...] | None = None,
                    default_near_far: tuple[float, float] = (0.05, 1e10)) -> PosedImages:
    """Cameras and images of a transforms file (image paths relative to its folder)."""
    json_path = Path(json_path)
    if json_path.is_dir():
        json_path = json_path / "transforms.json"
    if downscale < 1:
        raise UserError(f"downscale must be >= 1, got {downscale}")
    meta = read_json(json_path, "instant-ngp / nerfstudio")
    root = json_path.parent
    kept, paths = present_frames(json_path, root, meta["frames"])
    frames = [meta["frames"][i] for i in kept]
    poses = torch.stack([frame_pose(json_path, i, f) for i, f in zip(kept, frames)])

    images = load_images(json_path, paths, downscale, use_cache)
    height, width = images.shape[1:3]
    full_w, full_h = image_size(paths[0])
    k = torch.tensor([_intrinsics(json_path, meta, f, i, full_w, full_h) for i, f in zip(kept, frames)],
                     dtype=torch.float64)  # [N, 8]: fx fy cx cy (image on disk) k1 k2 p1 p2
    sx, sy = width / full_w, height / full_h  # our downscale
    distortion = k[:, 4:].float() if bool((k[:, 4:] != 0).any()) else None
    if "aabb" in meta:
        aabb, cascades = tuple(float(v) for v in meta["aabb"]), _ngp_box(json_path, meta)[1]
        if len(aabb) != 6:
            raise DatasetError(f"{json_path}: 'aabb' must list 6 numbers (min xyz, max xyz), got {meta['aabb']}.")
    elif default_aabb is not None:
        aabb, cascades = default_aabb, 1
    else:
        aabb, cascades = _ngp_box(json_path, meta)
    near = float(meta.get("near", default_near_far[0]))
    far = float(meta.get("far", default_near_far[1]))
    cameras = Cameras(poses, (k[:, 0] * sx).float(), (k[:, 1] * sy).float(), (k[:, 2] * sx).float(),
                      (k[:, 3] * sy).float(), width, height, near, far, distortion)
    has_alpha = bool((images[..., 3] < 255).any())
    return PosedImages(cameras, images, [p.name for p in paths], aabb, has_alpha, cascades)  # type: ignore[arg-type]
