"""Camera poses in the one internal convention (OpenCV: x right, y down, z forward; c2w is
camera-to-world [3, 4]). Pixel rays come from `Cameras.rays`."""

from collections.abc import Sequence

import torch
from torch import Tensor

from .cameras import Cameras


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


def orbit_up(cameras: Cameras) -> Tensor:
    """[3] the mean image-up direction of `cameras` (OpenCV y points down), on the CPU."""
    return torch.nn.functional.normalize(-cameras.c2w[:, :, 1].mean(0).float().cpu(), dim=0)
