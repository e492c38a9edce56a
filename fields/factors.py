"""Sampling, resampling and smoothing of the 1-D (line) and 2-D (plane) factors of the tensor
backends (TensoRF VM/CP, tri-planes).

Layout: channels last, so one texel's components are contiguous for the native sampler. A plane
over axes (a, b) is [res_b, res_a, R] (u runs along a, v along b); a line along axis a is
[res_a, 1, R]. Coordinates are in [-1, 1] with the first and last texel on the box faces
(align_corners), so upsampling keeps every texel's position.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from onefield.cuda_ext import plane_sample

PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # the matrix of VM component i spans these axes...
LINE_AXES = (2, 1, 0)  # ...and its vector runs along this one


def sample_plane(plane: Tensor, uv: Tensor, k: int) -> Tensor:
    """Bilinear samples [N, k] of the first k components of plane [H, W, R] at uv [N, 2] in [-1, 1]."""
    return plane_sample(plane, uv, k)


def sample_line(line: Tensor, t: Tensor, k: int) -> Tensor:
    """Linear samples [N, k] of the first k components of line [L, 1, R] at t [N] in [-1, 1]."""
    return plane_sample(line, torch.stack([torch.zeros_like(t), t], -1), k)


def resample(factor: Tensor, old: Tensor, new: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a factor [H, W, R] covering the box `old` to `size` = (H', W') texels covering `new`.

    Boxes are [2, 2] = (lo, hi) x (W axis, H axis) in any common coordinates (a line's dummy W
    axis is ignored). Serves upsampling (same box, more texels) and TensoRF's box shrinking."""
    h, w = size

    def positions(n: int, axis: int) -> Tensor:  # the new texels in the old factor's [-1, 1] coordinates
        s = torch.linspace(0.0, 1.0, n, device=factor.device) if n > 1 else torch.zeros(1, device=factor.device)
        world = new[0, axis] + s * (new[1, axis] - new[0, axis])
        return 2.0 * (world - old[0, axis]) / (old[1, axis] - old[0, axis]) - 1.0

    gy, gx = torch.meshgrid(positions(h, 1), positions(w, 0), indexing="ij")
    if factor.shape[1] == 1:
        gx = torch.zeros_like(gx)
    grid = torch.stack([gx, gy], -1)[None].to(factor.dtype)  # [1, h, w, 2]
    out = F.grid_sample(factor.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border",
                        align_corners=True)  # [1, R, h, w]
    return out[0].permute(1, 2, 0).contiguous()


def total_variation(factor: Tensor) -> Tensor:
    """Mean squared difference between neighbouring texels of a factor [H, W, R] (W may be 1)."""
    tv = (factor[1:] - factor[:-1]).square().mean()
    if factor.shape[1] > 1:
        tv = tv + (factor[:, 1:] - factor[:, :-1]).square().mean()
    return tv
