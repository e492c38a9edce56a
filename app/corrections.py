"""Per-view corrections learned with the field, for real captures: camera poses (SfM and phone
poses are off by a fraction of a degree, which blurs every surface) and each photo's colour
(exposure and white balance change from shot to shot). Both start at the identity.

Poses: view i's camera turns by exp(omega_i) about its own centre and moves by tau_i (world units,
`unit` x the parameter, so one learning rate suits any scene size): R' = exp(omega) R, c' = c + tau.
Cameras that were not trained on (held-out views, orbits) take the correction of the training camera
whose centre is nearest, so they follow any drift of the refined frame as a whole.

Appearance: view i's rendered colour passes through its own affine map, C' = (I + M_i) C + b_i
times the ray's opacity (an affine map of radiance, so exactly the per-sample map summed along the
ray; the background is composited after it). It is field-agnostic, unlike a code fed to the colour
network (nerfacto, NeRF-W), and it can only explain what changes per photo as a whole — exposure and
white balance, the cause the issue names — not view-dependent effects or floaters. Novel views use
the mean map over the training views.
"""

import dataclasses

import torch
from torch import Tensor

from onefield.scenes import Cameras


def skew(v: Tensor) -> Tensor:
    """[N, 3] -> the cross-product matrices [N, 3, 3]."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] of axis-angle vectors omega [N, 3] (Rodrigues), with the series
    near 0 so the identity has the exact gradient."""
    theta2 = (omega * omega).sum(-1)[:, None, None]  # [N, 1, 1]
    small = theta2 < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    k = skew(omega)
    eye = torch.eye(3, device=omega.device, dtype=omega.dtype).expand_as(k)
    return eye + a * k + b * (k @ k)


def rotation_angle(r: Tensor) -> Tensor:
    """Angle in radians [N] of rotations [N, 3, 3]."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) * 0.5).clamp(-1.0, 1.0)
    return torch.arccos(cos)


def nearest_views(centres: Tensor, reference: Tensor) -> Tensor:
    """For camera centres [M, 3], the index [M] of the nearest of `reference` [N, 3]."""
    return torch.cdist(centres, reference, compute_mode="donot_use_mm_for_euclid_dist").argmin(-1)


class PoseCorrections(torch.nn.Module):
    """A learned SE(3) correction per training view: omega [N, 3] and tau / unit [N, 3]."""

    def __init__(self, cameras: Cameras, unit: float):
        super().__init__()
        n, device = len(cameras), cameras.device
        self.unit = unit
        self.omega = torch.nn.Parameter(torch.zeros(n, 3, device=device))
        self.tau = torch.nn.Parameter(torch.zeros(n, 3, device=device))
        self.register_buffer("centres", cameras.c2w[:, :, 3].clone())  # where the views were, uncorrected

    def corrected_c2w(self, c2w: Tensor, views: Tensor) -> Tensor:
        """c2w [M, 3, 4] corrected by the corrections of training views `views` [M]."""
        rotation = so3_exp(self.omega[views])
        return torch.cat([rotation @ c2w[:, :, :3], c2w[:, :, 3:] + self.unit * self.tau[views][..., None]], -1)

    def apply(self, cameras: Cameras, views: Tensor | None = None) -> Cameras:
        """The cameras corrected: by view `views` [M] where given (the training cameras themselves:
        arange), else by each camera's nearest training view."""
        if views is None:
            views = nearest_views(cameras.c2w[:, :, 3], self.centres)
        return dataclasses.replace(cameras, c2w=self.corrected_c2w(cameras.c2w, views))

    def param_groups(self, lr: float, final_ratio: float) -> list[dict]:
        return [{"name": "poses", "params": [self.omega, self.tau], "lr": lr, "final_ratio": final_ratio}]


class ColorCorrections(torch.nn.Module):
    """A learned affine colour map per training view: M [N, 3, 3] (added to I) and b [N, 3]."""

    def __init__(self, n_views: int, device: torch.device | str = "cpu"):
        super().__init__()
        self.matrix = torch.nn.Parameter(torch.zeros(n_views, 3, 3, device=device))
        self.bias = torch.nn.Parameter(torch.zeros(n_views, 3, device=device))

    def forward(self, rgb: Tensor, opacity: Tensor, views: Tensor | None) -> Tensor:
        """rgb [R, 3] (not yet composited) and opacity [R] of rays of training views `views` [R]; None:
        a novel view, which takes the mean map."""
        if views is None:
            m, b = self.matrix.mean(0, keepdim=True), self.bias.mean(0, keepdim=True)
        else:
            m, b = self.matrix[views], self.bias[views]
        return rgb + torch.einsum("rij,rj->ri", m.expand(rgb.shape[0], 3, 3), rgb) + b.expand(rgb.shape[0], 3) * opacity[:, None]

    def describe(self) -> str:
        return f"mean colour map of the {self.matrix.shape[0]} training views"

    def param_groups(self, lr: float) -> list[dict]:
        return [{"name": "appearance", "params": [self.matrix, self.bias], "lr": lr}]
