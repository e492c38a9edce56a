"""The proposal sampler: spacing, placement where the density is, the histogram loss by hand."""

import math

import pytest
import torch

from onefield.renderers.proposal import (anneal_power, proposal_loss, sample_proposals, spacing, spacing_inverse,
                                         ProposalSamples)
from onefield.renderers.marching import RaySamples
from onefield.scenes.procedural import Ball, ProceduralScene, sphere


def test_spacing_is_linear_then_disparity_and_inverts():
    t = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0, 1e6])
    assert torch.allclose(spacing(t, 1.0), torch.tensor([0.0, 0.25, 0.5, 0.75, 0.875, 1.0 - 0.5e-6]))
    assert torch.allclose(spacing(t * 3.0, 3.0), spacing(t, 1.0))  # the unit scales distance
    y = torch.linspace(0.0, 0.999, 50)
    assert torch.allclose(spacing(spacing_inverse(y, 2.0), 2.0), y, atol=1e-6)


def test_anneal_power_rises_from_flat_to_one():
    assert anneal_power(0) == 0.0 and anneal_power(1000) == 1.0 and anneal_power(5000) == 1.0
    assert anneal_power(100) == pytest.approx(10 * 0.1 / (9 * 0.1 + 1))


def _rays(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    o = torch.tensor([[0.0, 0.0, -3.0]]).expand(n, 3).contiguous()
    offset = torch.linspace(-0.3, 0.3, n)
    d = torch.nn.functional.normalize(torch.stack([offset, torch.zeros(n), torch.ones(n)], -1), dim=-1)
    return o, d


def test_samples_gather_where_the_density_is():
    """With the true density as both proposals, field samples crowd the shell just around the sphere's
    surface, where the weight is: 8x more of them than flat proposals (no density) put there."""
    scene = sphere(radius=0.5, density=50.0)
    o, d = _rays(16)
    t_min, t_max = torch.full((16,), 0.05), torch.full((16,), 8.0)

    def near_surface(density_fn) -> tuple[float, ProposalSamples]:
        out = sample_proposals(o, d, t_min, t_max, [density_fn, density_fn], (64, 32), 24, unit=1.0)
        t_mid = ((out.samples.t_starts + out.samples.t_ends) * 0.5).view(16, 24)
        r = (o[:, None] + d[:, None] * t_mid[..., None]).norm(dim=-1)
        return float(((r > 0.4) & (r < 0.6)).float().mean()), out

    focused, out = near_surface(scene.density)
    flat, _ = near_surface(lambda x: torch.zeros(x.shape[0]))
    assert focused > 0.3 and focused > 8 * flat, (focused, flat)
    edges = out.samples.t_starts.view(16, 24)
    assert bool((edges[:, 1:] >= edges[:, :-1]).all())  # sorted along each ray
    assert torch.equal(out.samples.packed_info[:, 1], torch.full((16,), 24))
    assert torch.equal(out.samples.packed_info[:, 0], torch.arange(16) * 24)


def test_training_jitter_moves_samples_and_evaluation_does_not():
    scene = sphere()
    o, d = _rays(4)
    t_min, t_max = torch.full((4,), 0.05), torch.full((4,), 8.0)
    args = (o, d, t_min, t_max, [scene.density], (32,), 16)
    fixed = [sample_proposals(*args, unit=1.0).samples.t_starts for _ in range(2)]
    assert torch.equal(fixed[0], fixed[1])
    g = torch.Generator().manual_seed(0)
    jittered = [sample_proposals(*args, unit=1.0, generator=g).samples.t_starts for _ in range(2)]
    assert not torch.equal(jittered[0], jittered[1])


def test_histogram_loss_by_hand():
    """Field edges [0, 1, 2] with weights [0.9, 0.1]; proposal edges [0, 0.5, 2] with weights
    [0.1, 0.2]. The proposal's envelope over [0, 1] is 0.1 + 0.2 = 0.3 (both of its intervals meet
    it), over [1, 2] it is 0.2. Loss = mean(max(w - env, 0)^2 / w) = ((0.6^2 / 0.9) + 0) / 2 = 0.2."""
    w_prop = torch.tensor([[0.1, 0.2]], requires_grad=True)
    samples = RaySamples(torch.tensor([[0, 2]]), torch.zeros(2, dtype=torch.long), torch.tensor([0.0, 1.0]),
                         torch.tensor([1.0, 2.0]))
    result = ProposalSamples(samples, torch.tensor([[0.0, 1.0, 2.0]]), [torch.tensor([[0.0, 0.5, 2.0]])], [w_prop])
    field_w = torch.tensor([0.9, 0.1], requires_grad=True)
    loss = proposal_loss(result, field_w)
    assert float(loss.detach()) == pytest.approx(0.2, rel=1e-5)
    loss.backward()
    # d/d(env) of (0.9 - env)^2 / 0.9 / 2 at env 0.3 = -(0.6) / 0.9; both proposal weights form that envelope
    assert torch.allclose(w_prop.grad, torch.full((1, 2), -0.6 / 0.9), atol=1e-5)
    assert field_w.grad is None  # the field is never pulled towards the proposals


def test_proposal_density_learns_through_the_loss():
    """The histogram loss reaches the proposal density's parameters; sample placement carries none."""
    scale = torch.tensor(1.0, requires_grad=True)
    scene = ProceduralScene("soft", [Ball((0.0, 0.0, 0.0), 0.5, (1.0, 0.0, 0.0))], density_scale=20.0, sharpness=8.0)

    def density(x: torch.Tensor) -> torch.Tensor:
        return scene.density(x) * scale

    o, d = _rays(8)
    out = sample_proposals(o, d, torch.full((8,), 0.05), torch.full((8,), 8.0), [density], (32,), 16, unit=1.0)
    assert not out.samples.t_starts.requires_grad
    field_weights = torch.rand(8 * 16)
    proposal_loss(out, field_weights).backward()
    assert scale.grad is not None and math.isfinite(float(scale.grad)) and float(scale.grad) != 0.0
