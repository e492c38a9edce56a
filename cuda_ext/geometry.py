"""Scene-box geometry, in one place for the fields, the renderers and the kernels' twins.

A box is a tensor [6] (min xyz, max xyz). Cascade c of the occupancy grid (and the reach of a field
with c + 1 cascades) is the box scaled by 2^c about its centre. Centre and half size are computed
as the native kernels compute them, (lo + hi) * 0.5 and (hi - lo) * 0.5, so a value taken from here
matches the marcher's to the bit.
"""

import torch
from torch import Tensor

MAX_CASCADES = 16  # the outermost cascade spans 2^15 base boxes: any scene a float32 grid can resolve


def box_center_half(aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Centre [3] and half size [3] of the box `aabb` [6], in its dtype."""
    lo, hi = aabb[:3], aabb[3:]
    return (lo + hi) * 0.5, (hi - lo) * 0.5


def cascade_box(aabb: Tensor, cascade: int) -> Tensor:
    """[6]: the box `aabb` [6] scaled by 2^cascade about its centre."""
    center, half = box_center_half(aabb)
    half = half * float(1 << cascade)
    return torch.cat([center - half, center + half])



def contract_unit(x: Tensor, aabb: Tensor, cascades: int) -> Tensor:
    """World positions [N, 3] -> [0, 1]^3, the coordinates the fields and the proposal networks encode.
    One cascade: linear over the box (clamped). Several: the mip-NeRF 360 contraction (with the max
    norm) of box coordinates u: u inside the box, (2 - 1/|u|) u/|u| outside, so the base box keeps half
    of the encoding's range and the far cascades, coarse in the occupancy grid too, share the rest."""
    center, half = box_center_half(aabb)
    u = (x - center) / half  # [N, 3], the base box is [-1, 1]^3
    if cascades == 1:
        return (u * 0.5 + 0.5).clamp(0.0, 1.0)
    norm = u.abs().amax(-1, keepdim=True).clamp(min=1.0)  # [N, 1]
    contracted = torch.where(norm > 1.0, (2.0 - 1.0 / norm) * u / norm, u)  # [-2, 2]^3
    return (contracted * 0.25 + 0.5).clamp(0.0, 1.0)


def inside_reach(x: Tensor, aabb: Tensor, cascades: int) -> Tensor:
    """1 where x [N, 3] lies inside the whole scene (the base box scaled by 2^(cascades-1)), else 0; [N]."""
    center, half = box_center_half(aabb)
    reach = half * float(1 << (cascades - 1))
    return ((x - center).abs() <= reach).all(-1).to(x.dtype)
