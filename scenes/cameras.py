"""Cameras (pinholes, optionally with OpenCV lens distortion) in the one internal convention
(OpenCV: x right, y down, z forward, like COLMAP), the one function that turns pixels into rays
and its inverse, `project`; training, evaluation, rendering, export and the GUI all use them, so a
convention or lens bug cannot hide in one of them."""

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


_TENSORS = ("c2w", "fx", "fy", "cx", "cy", "distortion")


def distort(x: Tensor, y: Tensor, coeffs: Tensor) -> tuple[Tensor, Tensor]:
    """OpenCV radial-tangential model on normalized coordinates [R]; coeffs [R, 4] (k1, k2, p1, p2)."""
    k1, k2, p1, p2 = coeffs.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + k2 * r2)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def undistort(xd: Tensor, yd: Tensor, coeffs: Tensor, iterations: int = 20) -> tuple[Tensor, Tensor]:
    """Inverse of `distort` by fixed-point iteration (as OpenCV's undistortPoints): rays are bent
    to where the distorted pixel looked, so images are used as captured, with no resampling."""
    k1, k2, p1, p2 = coeffs.unbind(-1)
    x, y = xd, yd
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + k2 * r2)
        x, y = ((xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) / radial,
                (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) / radial)
    return x, y


def fold_radius2(coeffs: Tensor) -> Tensor:  # coeffs [..., 4]
    """[...] squared normalized radius up to which `distort` grows with the radius; inf where it never
    stops. Beyond it the radial polynomial folds back (k1 < 0 without a large enough k2), so a point
    outside the lens's view would land inside the image: no pixel of the camera sees it."""
    k1, k2 = coeffs[..., 0], coeffs[..., 1]
    # d(r * radial)/dr = 1 + 3 k1 s + 5 k2 s^2 with s = r^2; its roots as s = 2 / (-b +- sqrt(b^2 - 4a))
    a, b = 5 * k2, 3 * k1
    disc = b * b - 4 * a
    root = disc.clamp(min=0).sqrt()
    s = torch.stack([2 / (-b - root), 2 / (-b + root)], -1)  # [..., 2]; a = 0 gives one root and inf
    s = torch.where((s > 0) & (disc >= 0)[..., None], s, torch.full_like(s, float("inf")))
    return s.min(-1).values


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
    distortion: Tensor | None = None  # [N, 4] OpenCV k1, k2, p1, p2; None: ideal pinholes

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape != (n, 3, 4):
            raise ValueError(f"c2w must be [N, 3, 4], got {tuple(self.c2w.shape)}")
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32, device=self.c2w.device)
            setattr(self, name, value.expand(n).contiguous() if value.dim() == 0 else value)
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be a scalar or [N] = [{n}], got {tuple(value.shape)}")
        if self.distortion is not None:
            self.distortion = torch.as_tensor(self.distortion, dtype=torch.float32, device=self.c2w.device)
            if self.distortion.dim() == 1:
                self.distortion = self.distortion.expand(n, 4).contiguous()
            if self.distortion.shape != (n, 4):
                raise ValueError(f"distortion must be [4] or [N, 4] = [{n}, 4] (k1, k2, p1, p2), "
                                 f"got {tuple(self.distortion.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def distorted(self) -> bool:
        """Whether any camera's lens bends rays (non-zero k1, k2, p1 or p2)."""
        return self.distortion is not None and bool(self.distortion.any())

    def pinhole(self) -> "Cameras":
        """The same cameras as ideal pinholes: pose and intrinsics kept, distortion dropped (for
        consumers that only know K, e.g. open3d's TSDF integration, fed views rendered through it)."""
        return dataclasses.replace(self, distortion=None)

    def to(self, device: torch.device | str) -> "Cameras":
        return dataclasses.replace(self, **{k: getattr(self, k).to(device) for k in _TENSORS
                                            if getattr(self, k) is not None})

    def subset(self, indices: Tensor | list[int]) -> "Cameras":
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        return dataclasses.replace(self, **{k: getattr(self, k)[idx] for k in _TENSORS if getattr(self, k) is not None})

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by `factor` (intrinsics scale about the corner;
        distortion acts on normalized coordinates and is unchanged)."""
        width, height = round(self.width * factor), round(self.height * factor)
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                                   width=width, height=height)

    def rays(self, image_index: Tensor, u: Tensor, v: Tensor) -> Rays:
        """Rays through pixel centres: camera `image_index` [R], pixel column `u` [R] and row `v` [R]
        (integers or sub-pixel floats; the centre of pixel (0, 0) is at (0.5, 0.5))."""
        image_index = image_index.to(device=self.device, dtype=torch.long)
        u = u.to(self.device, torch.float32) + 0.5
        v = v.to(self.device, torch.float32) + 0.5
        x = (u - self.cx[image_index]) / self.fx[image_index]
        y = (v - self.cy[image_index]) / self.fy[image_index]
        if self.distortion is not None:
            x, y = undistort(x, y, self.distortion[image_index])
        d_cam = torch.stack([x, y, torch.ones_like(x)], -1)  # [R, 3]
        c2w = self.c2w[image_index]  # [R, 3, 4]
        d_world = torch.nn.functional.normalize(torch.einsum("rij,rj->ri", c2w[:, :, :3], d_cam), dim=-1)
        return Rays(c2w[:, :, 3].contiguous(), d_world, image_index, self.near, self.far)

    def project(self, points: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """Where camera `index` sees world `points` [K, 3]: pixel coordinates [K, 2] (the centre of
        pixel (0, 0) at (0.5, 0.5), as in `rays`: `floor` gives the pixel) and depth along the optical
        axis [K] (<= 0 behind). The inverse of `rays`, lens included; points beyond the radius where
        the distortion folds back (`fold_radius2`) are seen by no pixel and get uv (-1, -1)."""
        c2w = self.c2w[index]
        cam = (points - c2w[:, 3]) @ c2w[:, :3]  # [K, 3], world -> camera is the transposed rotation
        z = cam[:, 2]
        safe = torch.where(z.abs() > 1e-9, z, torch.full_like(z, 1e-9))
        x, y = cam[:, 0] / safe, cam[:, 1] / safe
        if self.distortion is not None:
            coeffs = self.distortion[index]  # [4]
            in_lens = x * x + y * y < fold_radius2(coeffs)
            x, y = distort(x, y, coeffs.expand(x.shape[0], 4))
        uv = torch.stack([x * self.fx[index] + self.cx[index], y * self.fy[index] + self.cy[index]], -1)
        if self.distortion is not None:
            uv = torch.where(in_lens[:, None], uv, torch.full_like(uv, -1.0))
        return uv, z

    def image_rays(self, index: int) -> Rays:
        """All H*W rays of one camera, row-major."""
        v, u = torch.meshgrid(torch.arange(self.height, device=self.device),
                              torch.arange(self.width, device=self.device), indexing="ij")
        image_index = torch.full((self.height * self.width,), index, dtype=torch.long, device=self.device)
        return self.rays(image_index, u.flatten(), v.flatten())
