"""Shared by the readers: images as premultiplied RGBA (optionally cut out by mask images) with a
downscaled cache; for the transforms files, listed frames that may be missing and OpenGL poses."""

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .dataset import DatasetError, cache_dir, cache_key

OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0])  # flip camera y and z axes


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


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W] coverage (white = object) of a mask image for an image of size (width, height)."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{path}: cannot read this mask ({error}). Replace it with a valid PNG (white = object, "
                           f"black = background), or remove the {path.parent.name}/ folder to train on the full "
                           "images.") from error
    if (mask.shape[1], mask.shape[0]) != size:
        raise DatasetError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}; "
                           "save each mask at the size of its image.")
    return mask


def downscale_rgba(images: Tensor, width: int, height: int) -> Tensor:
    """uint8 premultiplied [N, H, W, 4] -> [N, height, width, 4] by area averaging."""
    x = images.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    with Image.open(path) as im:
        return im.width, im.height


def fit_max_side(im: Image.Image, max_side: int) -> Image.Image:
    """`im` shrunk (Lanczos) so its longest side is at most max_side; unchanged if already smaller."""
    scale = max_side / max(im.size)
    if scale >= 1:
        return im
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)


def _frame_image(root: Path, file_path: str) -> Path:
    path = (root / file_path).resolve()
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return path
    return path.with_name(path.name + ".png")  # NeRF-Synthetic lists paths without extension


def read_json(path: Path, kind: str = "Blender/NeRF-Synthetic") -> dict:
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("transforms*.json")) if path.parent.is_dir() else []
        hint = f"found {siblings}" if siblings else "the folder has no transforms*.json"
        raise DatasetError(f"{path}: no such file ({hint}). Point to a {kind} scene folder.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error}). Fix or re-export the file.") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DatasetError(f"{path}: a transforms file needs a 'frames' list.")
    return meta


def frame_pose(path: Path, i: int, frame: object) -> Tensor:
    """OpenCV camera-to-world [3, 4] of frame i (the file stores OpenGL axes)."""
    try:
        m = torch.tensor(frame["transform_matrix"], dtype=torch.float64)  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{path}: frame {i} has no valid 4x4 'transform_matrix' ({error}).") from error
    if m.shape != (4, 4):
        shape = "x".join(map(str, m.shape)) or "a number"
        raise DatasetError(f"{path}: frame {i} 'transform_matrix' must be a 4x4 matrix, got {shape}; "
                           "fix or remove that frame.")
    if not bool(torch.isfinite(m).all()):
        raise DatasetError(f"{path}: frame {i} 'transform_matrix' has non-finite values (NaN/inf); "
                           "fix or remove that frame.")
    return (m[:3, :4] * torch.cat([OPENGL_TO_OPENCV, torch.ones(1)]).double()).float()


def present_frames(json_path: Path, root: Path, frames: list) -> tuple[list[int], list[Path]]:
    """Indices and image paths of the listed frames whose image exists; warns once, naming the
    missing ones; an error when none exists."""
    kept, paths, missing = [], [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise DatasetError(f"{json_path}: frame {i} has no 'file_path'.")
        image_path = _frame_image(root, frame["file_path"])
        if image_path.is_file():
            kept.append(i)
            paths.append(image_path)
        else:
            missing.append(frame["file_path"])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warnings.warn(f"{json_path}: {len(missing)} of {len(frames)} listed frames have no image and are "
                      f"skipped: {shown}", MissingFramesWarning, stacklevel=3)
    if not kept:
        raise DatasetError(f"{json_path}: none of the {len(frames)} listed images exist under {root}. "
                           "Check that the image folders sit beside the transforms file.")
    return kept, paths


def load_images(json_path: Path, paths: list[Path], downscale: float, use_cache: bool,
                masks: list[Path] | None = None) -> Tensor:
    """uint8 [N, H, W, 4] premultiplied RGBA of `paths` (one size), each multiplied by its mask
    when `masks` are given: the mask becomes alpha, and colour stays premultiplied."""
    cached = cache_dir() / f"{cache_key('blender-v1', downscale, files=[json_path, *paths, *(masks or [])])}.npy"
    if use_cache and cached.is_file():
        return torch.from_numpy(np.load(cached, allow_pickle=False))
    images = []
    for i, path in enumerate(paths):
        rgba = load_rgba(path)
        if masks is not None:
            coverage = load_mask(masks[i], (rgba.shape[1], rgba.shape[0])).astype(np.float32) / 255.0
            rgba = np.round(rgba * coverage[..., None]).astype(np.uint8)
        rgba = torch.from_numpy(rgba)
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
