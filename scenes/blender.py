"""The NeRF-Synthetic ("Blender") format: `transforms_<split>.json` with `camera_angle_x` and
frames of `file_path` + OpenGL camera-to-world `transform_matrix`, RGBA PNGs beside it.

Reading converts to OpenCV cameras and premultiplied RGBA, downscales by area averaging and keeps
the downscaled copy in the cache (outside the repository), and skips listed frames whose image is
missing with one warning that names them (NeRF-Synthetic's own val split lists frames it lacks).
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .cameras import Cameras
from .dataset import DatasetError, PosedImages, cache_dir, cache_key

BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)  # the NeRF-Synthetic objects fit in this box
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0
_OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0])  # flip camera y and z axes


class MissingFramesWarning(UserWarning):
    pass


def load_rgba(path: Path) -> np.ndarray:
    """uint8 [H, W, 4] premultiplied RGBA of an image file (alpha 255 when it has none)."""
    try:
        with Image.open(path) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{path}: cannot read this image ({error}). Replace the file with a valid "
                           "PNG/JPEG, or remove its frame from the transforms file.") from error
    rgba[..., :3] *= rgba[..., 3:]
    return np.round(rgba * 255.0).astype(np.uint8)


def downscale_rgba(images: Tensor, width: int, height: int) -> Tensor:
    """uint8 premultiplied [N, H, W, 4] -> [N, height, width, 4] by area averaging."""
    x = images.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _frame_image(root: Path, file_path: str) -> Path:
    path = (root / file_path).resolve()
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return path
    return path.with_name(path.name + ".png")  # NeRF-Synthetic lists paths without extension


def _read_json(path: Path) -> dict:
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("transforms*.json")) if path.parent.is_dir() else []
        hint = f"found {siblings}" if siblings else "the folder has no transforms*.json"
        raise DatasetError(f"{path}: no such file ({hint}). Point to a NeRF-Synthetic/Blender scene folder.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error}). Fix or re-export the file.") from error
    if not isinstance(meta, dict) or "camera_angle_x" not in meta or not isinstance(meta.get("frames"), list):
        raise DatasetError(f"{path}: a Blender transforms file needs 'camera_angle_x' and a 'frames' list.")
    return meta


def _frame_pose(path: Path, i: int, frame: object) -> Tensor:
    try:
        m = torch.tensor(frame["transform_matrix"], dtype=torch.float32)  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{path}: frame {i} has no valid 4x4 'transform_matrix' ({error}).") from error
    if m.shape != (4, 4) or not bool(torch.isfinite(m).all()):
        raise DatasetError(f"{path}: frame {i} 'transform_matrix' must be a finite 4x4 matrix, got {list(m.shape)}.")
    return m[:3, :4] * torch.cat([_OPENGL_TO_OPENCV, torch.ones(1)])


def read_blender(root: str | Path, split: str = "train", downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """Read `root/transforms_<split>.json` and its images, downscaled by `downscale` (>= 1)."""
    root = Path(root)
    if downscale < 1:
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    json_path = root / f"transforms_{split}.json"
    meta = _read_json(json_path)

    present, poses, missing = [], [], []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise DatasetError(f"{json_path}: frame {i} has no 'file_path'.")
        image_path = _frame_image(root, frame["file_path"])
        if image_path.is_file():
            present.append(image_path)
            poses.append(_frame_pose(json_path, i, frame))
        else:
            missing.append(frame["file_path"])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warnings.warn(f"{json_path}: {len(missing)} of {len(meta['frames'])} listed frames have no image and are "
                      f"skipped: {shown}", MissingFramesWarning, stacklevel=2)
    if not present:
        raise DatasetError(f"{json_path}: none of the {len(meta['frames'])} listed images exist under {root}. "
                           "Check that the image folders sit beside the transforms file.")

    images = _load_images(json_path, present, downscale, use_cache)
    n, height, width = images.shape[:3]
    full_width = _image_width(present[0])
    focal = 0.5 * full_width / math.tan(0.5 * float(meta["camera_angle_x"])) * (width / full_width)
    aabb = tuple(float(v) for v in meta.get("aabb", BLENDER_AABB))
    if len(aabb) != 6:
        raise DatasetError(f"{json_path}: 'aabb' must list 6 numbers (min xyz, max xyz), got {meta['aabb']}.")
    cameras = Cameras(torch.stack(poses), torch.tensor(focal), torch.tensor(focal), torch.tensor(width / 2),
                      torch.tensor(height / 2), width, height, float(meta.get("near", BLENDER_NEAR)),
                      float(meta.get("far", BLENDER_FAR)))
    has_alpha = bool((images[..., 3] < 255).any())
    return PosedImages(cameras, images, [p.name for p in present], aabb, has_alpha)  # type: ignore[arg-type]


def _image_width(path: Path) -> int:
    with Image.open(path) as im:
        return im.width


def _load_images(json_path: Path, paths: list[Path], downscale: float, use_cache: bool) -> Tensor:
    cached = cache_dir() / f"{cache_key('blender-v1', downscale, files=[json_path, *paths])}.npy"
    if use_cache and cached.is_file():
        return torch.from_numpy(np.load(cached, allow_pickle=False))
    images = []
    for path in paths:
        rgba = torch.from_numpy(load_rgba(path))
        if images and rgba.shape != images[0].shape:
            raise DatasetError(f"{path}: image is {rgba.shape[1]}x{rgba.shape[0]} but {paths[0].name} is "
                               f"{images[0].shape[1]}x{images[0].shape[0]}; all images of a split must share one size.")
        images.append(rgba)
    stack = torch.stack(images)
    if downscale != 1:
        height, width = stack.shape[1:3]
        stack = downscale_rgba(stack, round(width / downscale), round(height / downscale))
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, stack.numpy(), allow_pickle=False)
        tmp.replace(cached)
    return stack


def write_blender(root: str | Path, split: str, cameras: Cameras, images: Tensor,
                  aabb: tuple[float, ...] | None = None) -> Path:
    """Write cameras and straight-alpha RGBA images (uint8 [N, H, W, 4]) as a Blender split."""
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    if not torch.allclose(cameras.fx, cameras.fx[0]) or not torch.allclose(cameras.cx, cameras.cx.new_tensor(cameras.width / 2)):
        raise ValueError("the Blender format stores one centred pinhole camera; these cameras differ")
    frames = []
    for i in range(len(cameras)):
        name = f"r_{i}"
        Image.fromarray(images[i].cpu().numpy(), "RGBA").save(root / split / f"{name}.png")
        m = torch.eye(4)
        m[:3, :4] = cameras.c2w[i].cpu() * torch.cat([_OPENGL_TO_OPENCV, torch.ones(1)])
        frames.append({"file_path": f"./{split}/{name}", "transform_matrix": m.tolist()})
    meta: dict[str, object] = {"camera_angle_x": 2 * math.atan(0.5 * cameras.width / float(cameras.fx[0])),
                               "near": cameras.near, "far": cameras.far, "frames": frames}
    if aabb is not None:
        meta["aabb"] = list(aabb)
    path = root / f"transforms_{split}.json"
    path.write_text(json.dumps(meta, indent=1))
    return path
