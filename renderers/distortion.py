"""mip-NeRF 360's distortion loss on packed samples: it pulls each ray's weight into as short a
stretch as possible, so the fog a young field spreads along real-capture rays (every ray ends on
something there) condenses onto surfaces, which also lets the occupancy grid prune it.

    L = sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_i+1 - s_i),

over each ray's samples in nerfacto's spacing coordinate s (`proposal.spacing`: distance near the
camera, disparity far away, so far samples are not over-penalised), with m_i the interval midpoints;
the double sum in O(S) from running sums along the sorted samples (the paper's efficient form).
"""

from torch import Tensor

from .marching import RaySamples
from .proposal import spacing


def distortion_loss(weights: Tensor, samples: RaySamples, unit: float) -> Tensor:
    """Mean over rays of the distortion of weights [S] on `samples` (distances in units of `unit`)."""
    if samples.n_samples == 0:
        return weights.new_zeros(())
    s0, s1 = spacing(samples.t_starts, unit), spacing(samples.t_ends, unit)  # [S]
    mid, width = (s0 + s1) * 0.5, s1 - s0
    w_before = samples.sum_before(weights)
    wm_before = samples.sum_before(weights * mid)
    pairs = 2.0 * weights * (mid * w_before - wm_before)  # both orders of every pair i > j
    own = weights.square() * width / 3.0
    return (pairs + own).sum() / samples.n_rays
