"""Random cameras where the training cameras could have been: new viewpoints for data-free work
(distillation renders a teacher from them), pinholes with the training cameras' intrinsics.

Two ways to place them:
- `sphere`: on the shell around the scene's centre that the training cameras span (their range of
  distances and of elevations about the mean image-up direction, any azimuth), looking at the
  centre. The choice for objects seen from all around (Blender scenes, turntables).
- `cameras`: between two training cameras drawn at random (centre and viewing direction
  interpolated), so views stay in the region the capture covered. The choice for real captures,
  where a view from behind the scene sees what no photo saw.
"""

from typing import Literal

import torch
from torch import Tensor

from .cameras import Cameras
from .rays import orbit_up

ViewMode = Literal["auto", "sphere", "cameras"]
VIEW_MODES: tuple[str, ...] = ("auto", "sphere", "cameras")
ELEVATION_MARGIN = 0.05  # radians added to each end of the elevation band: a ring of cameras still gets a band


def resolve_mode(mode: str, bounded: bool) -> str:
    """`mode` with 'auto' decided: the sphere for a bounded scene (one cascade), else `cameras`."""
    if mode not in VIEW_MODES:
        raise ValueError(f"view mode must be one of {', '.join(VIEW_MODES)}, got {mode!r}")
    return ("sphere" if bounded else "cameras") if mode == "auto" else mode


def _frames(eye: Tensor, forward: Tensor, up: Tensor) -> Tensor:
    """c2w [N, 3, 4] (OpenCV axes) of cameras at eye [N, 3] looking along forward [N, 3], up [N, 3] or [3]
    up in the image (the batched `rays.look_at`)."""
    forward = torch.nn.functional.normalize(forward, dim=-1)
    right = torch.linalg.cross(forward, up.expand_as(forward), dim=-1)
    # a view straight along `up` has no horizon: any right axis orthogonal to forward will do
    fallback = torch.linalg.cross(forward, torch.roll(forward, 1, -1) + 0.1, dim=-1)
    right = torch.where(right.norm(dim=-1, keepdim=True) > 1e-6, right, fallback)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    return torch.stack([right, down, forward, eye], -1)


def _on_sphere(cameras: Cameras, n: int, center: Tensor, generator: torch.Generator) -> Tensor:
    up = orbit_up(cameras).to(cameras.device)
    offsets = cameras.c2w[:, :, 3] - center  # [N, 3]
    radius = offsets.norm(dim=-1)
    sin_el = (offsets @ up / radius.clamp(min=1e-9)).clamp(-1, 1)
    el = torch.asin(sin_el)
    lo = torch.sin((el.min() - ELEVATION_MARGIN).clamp(min=-torch.pi / 2))
    hi = torch.sin((el.max() + ELEVATION_MARGIN).clamp(max=torch.pi / 2))
    u = torch.rand(n, 3, generator=generator, device=cameras.device)
    z = lo + (hi - lo) * u[:, 0]  # uniform in sin(elevation): uniform over the band's area
    az = 2 * torch.pi * u[:, 1]
    r = radius.min() + (radius.max() - radius.min()) * u[:, 2]
    ref = torch.tensor([1.0, 0.0, 0.0], device=up.device) if abs(float(up[0])) < 0.9 else \
        torch.tensor([0.0, 1.0, 0.0], device=up.device)
    a = torch.nn.functional.normalize(torch.linalg.cross(up, ref, dim=0), dim=0)
    b = torch.linalg.cross(up, a, dim=0)
    ring = (1 - z * z).clamp(min=0).sqrt()
    direction = z[:, None] * up + ring[:, None] * (torch.cos(az)[:, None] * a + torch.sin(az)[:, None] * b)
    eye = center + r[:, None] * direction
    return _frames(eye, center - eye, up)


def _between(cameras: Cameras, n: int, generator: torch.Generator) -> Tensor:
    device = cameras.device
    i = torch.randint(0, len(cameras), (n,), generator=generator, device=device)
    j = torch.randint(0, len(cameras), (n,), generator=generator, device=device)
    t = torch.rand(n, 1, generator=generator, device=device)
    c2w_i, c2w_j = cameras.c2w[i], cameras.c2w[j]
    lerp = lambda a, b: a + t * (b - a)  # noqa: E731
    eye = lerp(c2w_i[:, :, 3], c2w_j[:, :, 3])
    forward = lerp(c2w_i[:, :, 2], c2w_j[:, :, 2])
    up = -lerp(c2w_i[:, :, 1], c2w_j[:, :, 1])
    return _frames(eye, forward, up)


def random_cameras(cameras: Cameras, n: int, mode: str, center: Tensor, generator: torch.Generator) -> Cameras:
    """n random pinhole cameras [n] placed by `mode` ('sphere' around `center` [3] or 'cameras', see the
    module docstring; resolve 'auto' with `resolve_mode` first), each with the intrinsics, image size and
    near / far of a training camera drawn at random; every draw comes from `generator`."""
    if mode == "sphere":
        c2w = _on_sphere(cameras, n, center.to(cameras.device, torch.float32), generator)
    elif mode == "cameras":
        c2w = _between(cameras, n, generator)
    else:
        raise ValueError(f"view mode must be 'sphere' or 'cameras' here, got {mode!r}")
    k = torch.randint(0, len(cameras), (n,), generator=generator, device=cameras.device)
    return Cameras(c2w.contiguous(), cameras.fx[k], cameras.fy[k], cameras.cx[k], cameras.cy[k], cameras.width,
                   cameras.height, cameras.near, cameras.far)
