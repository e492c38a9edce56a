"""Pinhole cameras in the one internal convention (OpenCV: x right, y down, z forward, like
COLMAP) and the one function that turns pixels into rays; training, evaluation, rendering and the
GUI all use it, so a convention bug cannot hide in one of them."""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Rays:
    origins: Tensor  # [R, 3]
    directions: Tensor  # [R, 3] unit length, so t is in world units
    image_index: Tensor  # [R] int64, which camera the ray came from
    near: float
    far: float

    def __len__(self) -> int:
        return self.origins.shape[0]


@dataclass
class Cameras:
    """N pinhole cameras sharing one image size. Readers convert to this convention on load."""

    c2w: Tensor  # [N, 3, 4] camera-to-world, OpenCV axes
    fx: Tensor  # [N]
    fy: Tensor  # [N]
    cx: Tensor  # [N]
    cy: Tensor  # [N]
    width: int
    height: int
    near: float = 0.0
    far: float = 1e10

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape != (n, 3, 4):
            raise ValueError(f"c2w must be [N, 3, 4], got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32, device=self.c2w.device)
            setattr(self, name, value.expand(n).contiguous() if value.dim() == 0 else value)
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be a scalar or [N] = [{n}], got {tuple(value.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
                       self.cy.to(device), self.width, self.height, self.near, self.far)

    def subset(self, indices: Tensor | list[int]) -> "Cameras":
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        return Cameras(self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx], self.width,
                       self.height, self.near, self.far)

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by `factor` (intrinsics scale about the corner)."""
        width, height = round(self.width * factor), round(self.height * factor)
        sx, sy = width / self.width, height / self.height
        return Cameras(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height,
                       self.near, self.far)

    def rays(self, image_index: Tensor, u: Tensor, v: Tensor) -> Rays:
        """Rays through pixel centres: camera `image_index` [R], pixel column `u` [R] and row `v` [R]
        (integers or sub-pixel floats; the centre of pixel (0, 0) is at (0.5, 0.5))."""
        image_index = image_index.to(device=self.device, dtype=torch.long)
        u = u.to(self.device, torch.float32) + 0.5
        v = v.to(self.device, torch.float32) + 0.5
        d_cam = torch.stack([(u - self.cx[image_index]) / self.fx[image_index],
                             (v - self.cy[image_index]) / self.fy[image_index], torch.ones_like(u)], -1)  # [R, 3]
        c2w = self.c2w[image_index]  # [R, 3, 4]
        d_world = torch.nn.functional.normalize(torch.einsum("rij,rj->ri", c2w[:, :, :3], d_cam), dim=-1)
        return Rays(c2w[:, :, 3].contiguous(), d_world, image_index, self.near, self.far)

    def image_rays(self, index: int) -> Rays:
        """All H*W rays of one camera, row-major."""
        v, u = torch.meshgrid(torch.arange(self.height, device=self.device),
                              torch.arange(self.width, device=self.device), indexing="ij")
        image_index = torch.full((self.height * self.width,), index, dtype=torch.long, device=self.device)
        return self.rays(image_index, u.flatten(), v.flatten())
