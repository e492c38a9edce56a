"""Posed images in memory, the errors readers raise, and the cache of downscaled copies."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from onefield.errors import UserError

from .cameras import Cameras


class DatasetError(UserError):
    """Bad input data. The message names the file and says how to fix it."""


@dataclass
class PosedImages:
    """Images and their cameras. `images` is uint8 [N, H, W, 4]: colour premultiplied by alpha,
    then alpha (255 where the source had none), so compositing on any background is
    rgb + (1 - alpha) * background and downscaling by area averaging is exact."""

    cameras: Cameras
    images: Tensor  # [N, H, W, 4] uint8
    names: list[str]
    aabb: tuple[float, float, float, float, float, float]  # the base box of the scene
    has_alpha: bool
    cascades: int = 1  # occupancy cascades: the scene extends to the base box scaled by 2^(cascades-1)
    transform: Tensor | None = None  # [3, 4] source world -> ours: x' = A x + b (A may scale); None: identity
    points: Tensor | None = None  # [P, 3] the dataset's sparse 3-d points (structure from motion), in our frame
    point_colors: Tensor | None = None  # [P, 3] uint8 their colours

    def __post_init__(self) -> None:
        n, h, w = len(self.cameras), self.cameras.height, self.cameras.width
        if self.images.shape != (n, h, w, 4) or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [{n}, {h}, {w}, 4], got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} images")

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: list[int]) -> "PosedImages":
        return PosedImages(self.cameras.subset(indices), self.images[torch.as_tensor(indices, dtype=torch.long)],
                           [self.names[i] for i in indices], self.aabb, self.has_alpha, self.cascades, self.transform,
                           self.points, self.point_colors)

    def split_every(self, n: int = 8) -> tuple["PosedImages", "PosedImages"]:
        """(train, held-out) with every n-th view held out, starting at view 0 (the LLFF protocol)."""
        if len(self) < 2:
            raise DatasetError(f"{len(self)} view(s): at least 2 are needed to hold one out")
        held = list(range(0, len(self), n))
        return self.subset([i for i in range(len(self)) if i % n]), self.subset(held)

    def rgba(self, index: int) -> Tensor:
        """Image `index` as float [H, W, 4] in [0, 1] (premultiplied colour, alpha)."""
        return self.images[index].float() / 255.0

    def composite(self, index: int, background: Tensor) -> Tensor:
        """Image `index` on a background colour [3], float [H, W, 3]."""
        rgba = self.rgba(index)
        return rgba[..., :3] + (1.0 - rgba[..., 3:]) * background.to(rgba)


def cache_dir() -> Path:
    """Where downscaled copies live: $ONEFIELD_CACHE, else ~/.cache/onefield (never the repo)."""
    root = os.environ.get("ONEFIELD_CACHE") or Path.home() / ".cache" / "onefield"
    return Path(root) / "images"


def cache_key(*parts: object, files: list[Path]) -> str:
    """A key that changes when any input file is replaced (path, size and mtime)."""
    h = hashlib.sha1()
    for part in parts:
        h.update(repr(part).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]
