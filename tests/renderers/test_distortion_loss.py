"""mip-NeRF 360's distortion loss against its definition (a double sum per ray) and by hand."""

import pytest
import torch

from onefield.renderers.distortion import distortion_loss
from onefield.renderers.marching import RaySamples
from onefield.renderers.proposal import spacing


def _samples(counts: list[int], generator: torch.Generator) -> RaySamples:
    counts_t = torch.tensor(counts)
    starts = torch.cumsum(counts_t, 0) - counts_t
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), counts_t)
    t0, t1 = [], []
    for n in counts:
        edges = torch.sort(torch.rand(n + 1, generator=generator) * 5.0 + 0.1).values
        t0.append(edges[:-1])
        t1.append(edges[1:])
    return RaySamples(torch.stack([starts, counts_t], -1), ray_indices, torch.cat(t0), torch.cat(t1))


def _double_sum(weights: torch.Tensor, samples: RaySamples, unit: float) -> torch.Tensor:
    total = weights.new_zeros(())
    for start, count in samples.packed_info.tolist():
        sl = slice(start, start + count)
        s0, s1 = spacing(samples.t_starts[sl], unit), spacing(samples.t_ends[sl], unit)
        w, m = weights[sl], (s0 + s1) / 2
        total = total + (w[:, None] * w[None, :] * (m[:, None] - m[None, :]).abs()).sum() + (w * w * (s1 - s0)).sum() / 3
    return total / samples.n_rays


def test_matches_the_double_sum_with_its_gradient():
    g = torch.Generator().manual_seed(0)
    samples = _samples([5, 0, 1, 12, 3], g)
    weights = torch.rand(samples.n_samples, generator=g, dtype=torch.float64).requires_grad_()
    fast, slow = distortion_loss(weights, samples, 1.5), _double_sum(weights, samples, 1.5)
    assert float(fast) == pytest.approx(float(slow), rel=1e-6)  # the double sum subtracts float32 midpoints
    (g_fast,) = torch.autograd.grad(fast, weights)
    (g_slow,) = torch.autograd.grad(slow, weights)
    assert torch.allclose(g_fast, g_slow, atol=1e-6)


def test_by_hand_and_concentrated_weight_costs_less():
    """Two unit-weight intervals [0, 0.5] and [1.0, 1.5] (unit 2: s = t / 4 up to t = 2): midpoints
    1/16 and 5/16 apart by 1/4, widths 1/8: L = 2 * 1/4 + 2 * 1/3 * 1/8 = 7/12."""
    samples = RaySamples(torch.tensor([[0, 2]]), torch.zeros(2, dtype=torch.long), torch.tensor([0.0, 1.0]),
                         torch.tensor([0.5, 1.5]))
    assert float(distortion_loss(torch.ones(2), samples, 2.0)) == pytest.approx(7 / 12, rel=1e-6)
    assert float(distortion_loss(torch.tensor([2.0, 0.0]), samples, 2.0)) < float(distortion_loss(torch.ones(2), samples, 2.0))
