"""The NeRF-Synthetic ("Blender") format: `transforms_<split>.json` with `camera_angle_x` and
frames of `file_path` + OpenGL camera-to-world `transform_matrix`, RGBA PNGs beside it.

Reading converts to OpenCV cameras and premultiplied RGBA, downscales by area averaging and keeps
the downscaled copy in the cache (outside the repository), and skips listed frames whose image is
missing with one warning that names them (NeRF-Synthetic's own val split lists frames it lacks).
"""

import json
import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from .cameras import Cameras
from .dataset import PosedImages
from .frames import OPENGL_TO_OPENCV
from .transforms import read_transforms

BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)  # the NeRF-Synthetic objects fit in this box
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0


def read_blender(root: str | Path, split: str = "train", downscale: float = 1.0, use_cache: bool = True) -> PosedImages:
    """Read `root/transforms_<split>.json` and its images, downscaled by `downscale` (>= 1)."""
    return read_transforms(Path(root) / f"transforms_{split}.json", downscale, use_cache,
                           default_aabb=BLENDER_AABB, default_near_far=(BLENDER_NEAR, BLENDER_FAR))


def write_blender(root: str | Path, split: str, cameras: Cameras, images: Tensor,
                  aabb: tuple[float, ...] | None = None, aabb_scale: int = 1) -> Path:
    """Write cameras and straight-alpha RGBA images (uint8 [N, H, W, 4]) as a Blender split;
    `aabb_scale` > 1 (instant-ngp's key) makes the scene reach that many boxes: cascades."""
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    if not torch.allclose(cameras.fx, cameras.fx[0]) or not torch.allclose(cameras.cx, cameras.cx.new_tensor(cameras.width / 2)):
        raise ValueError("the Blender format stores one centred pinhole camera; these cameras differ")
    frames = []
    for i in range(len(cameras)):
        name = f"r_{i}"
        Image.fromarray(images[i].cpu().numpy(), "RGBA").save(root / split / f"{name}.png")
        m = torch.eye(4)
        m[:3, :4] = cameras.c2w[i].cpu() * torch.cat([OPENGL_TO_OPENCV, torch.ones(1)])
        frames.append({"file_path": f"./{split}/{name}", "transform_matrix": m.tolist()})
    meta: dict[str, object] = {"camera_angle_x": 2 * math.atan(0.5 * cameras.width / float(cameras.fx[0])),
                               "near": cameras.near, "far": cameras.far, "frames": frames}
    if aabb is not None:
        meta["aabb"] = list(aabb)
    if aabb_scale > 1:
        meta["aabb_scale"] = aabb_scale
    path = root / f"transforms_{split}.json"
    path.write_text(json.dumps(meta, indent=1))
    return path
