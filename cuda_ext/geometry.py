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

