"""Camera poses and pixel rays, in the one internal convention (OpenCV: x right, y down,
z forward; c2w is camera-to-world [3, 4])."""

from collections.abc import Sequence

import torch
from torch import Tensor


def look_at(eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0),
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> Tensor:
    """Camera-to-world [3, 4] of a camera at `eye` looking at `target`, `up` pointing up in the image."""
    eye_t, target_t, up_t = (torch.as_tensor(v, dtype=torch.float32) for v in (eye, target, up))
    forward = torch.nn.functional.normalize(target_t - eye_t, dim=0)
    right = torch.linalg.cross(forward, up_t)
    if float(right.norm()) < 1e-8:
        raise ValueError(f"`up` {tuple(up)} is parallel to the viewing direction from {tuple(eye)} to {tuple(target)}")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward, eye_t], dim=1)


def orbit_pose(azimuth_deg: float, elevation_deg: float, radius: float,
               target: Sequence[float] = (0.0, 0.0, 0.0)) -> Tensor:
    """c2w [3, 4] on a sphere around `target` (z up), looking at it."""
    az, el = torch.deg2rad(torch.tensor(azimuth_deg)), torch.deg2rad(torch.tensor(elevation_deg))
    offset = radius * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)])
    eye = torch.as_tensor(target, dtype=torch.float32) + offset
    return look_at(eye.tolist(), target)


def pinhole_rays(c2w: Tensor, fx: float, fy: float, cx: float, cy: float, width: int,
                 height: int) -> tuple[Tensor, Tensor]:
    """Rays through pixel centres: origins [H, W, 3] and unit directions [H, W, 3]."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    d_cam = torch.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, torch.ones_like(u)], -1)  # [H, W, 3]
    d_world = torch.nn.functional.normalize(d_cam @ c2w[:, :3].T, dim=-1)
    return c2w[:, 3].expand_as(d_world).contiguous(), d_world
