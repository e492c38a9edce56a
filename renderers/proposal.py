"""Proposal sampling (mip-NeRF 360, nerfacto): a fixed number of samples per ray, placed where
small proposal density networks say the field's weight lies.

Each ray is sampled in nerfacto's spacing coordinate s in [0, 1]: s is an affine map of
g(t / unit), g(r) = r / 2 for r < 1 and 1 - 1 / (2 r) beyond (`unit`: the base box's half size), so
samples are even in distance near the camera and even in disparity far away, which is where the
contraction of the fields puts its resolution too. Level 0 is uniform in s (one jitter per ray while
training); each proposal density renders its intervals into weights, and `pdf_resample` draws the
next level's edges from them; the last level's edges are the field's samples. The histogram loss
(`proposal_loss`) trains each proposal network to bound the field's weights from above
(mip-NeRF 360's L_prop), so proposals never hide what the field shows.

Field-agnostic like the marcher: the proposals are density callables, the result is the packed
`RaySamples` layout `render` takes (every ray owns the same number of samples).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from onefield.cuda_ext import ops

from .marching import RaySamples, check_rays

SigmaFn = Callable[[Tensor], Tensor]  # x [K, 3] -> sigma [K]
HISTOGRAM_PADDING = 0.01  # nerfstudio's: a little weight everywhere, so resampling never ignores a bin


def spacing(t: Tensor, unit: float) -> Tensor:
    """nerfacto's g(t / unit): linear up to one unit, then 1 - 1 / (2 r) (disparity), in [0, 1)."""
    r = t / unit
    return torch.where(r < 1.0, r * 0.5, 1.0 - 0.5 / r.clamp(min=1.0))


def spacing_inverse(y: Tensor, unit: float) -> Tensor:
    """t with spacing(t, unit) = y, for y in [0, 1)."""
    return unit * torch.where(y < 0.5, 2.0 * y, 0.5 / (1.0 - y).clamp(min=1e-7))


@dataclass
class ProposalSamples:
    """The field's samples and what the histogram loss compares them with."""

    samples: RaySamples  # every ray owns `field_samples` consecutive samples
    edges: Tensor  # [N, K + 1] spacing coordinates of the field samples' interval edges
    proposal_edges: list[Tensor]  # per proposal level, [N, K_i + 1]
    proposal_weights: list[Tensor]  # per proposal level, [N, K_i] (differentiable in the proposal density)


def dense_packed(n_rays: int, per_ray: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """packed_info [N, 2] and ray_indices [N * per_ray] of rays that all own `per_ray` samples."""
    rays = torch.arange(n_rays, device=device)
    packed = torch.stack([rays * per_ray, torch.full_like(rays, per_ray)], -1)
    return packed, rays.repeat_interleave(per_ray)


def _uniform_edges(n_rays: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """[N, n + 1] edges even in s over [0, 1]; with `generator`, every edge moves by one jitter per ray
    within its half-bins (nerfstudio's single jitter: the ends move inwards by up to half a bin)."""
    edges = torch.linspace(0.0, 1.0, n + 1, device=device).expand(n_rays, n + 1)
    if generator is None:
        return edges.contiguous()
    centers = (edges[:, 1:] + edges[:, :-1]) * 0.5
    upper = torch.cat([centers, edges[:, -1:]], -1)
    lower = torch.cat([edges[:, :1], centers], -1)
    jitter = torch.rand(n_rays, 1, generator=generator, device=device)
    return lower + (upper - lower) * jitter


def _cdf_positions(n_rays: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """[N, n + 1] sorted positions in [0, 1] at which to invert a CDF into n + 1 edges: strata with one
    jitter per ray while training, their centres otherwise (nerfstudio's PDFSampler)."""
    base = torch.linspace(0.0, 1.0 - 1.0 / (n + 1), n + 1, device=device).expand(n_rays, n + 1)
    if generator is None:
        return (base + 0.5 / (n + 1)).contiguous()
    return base + torch.rand(n_rays, 1, generator=generator, device=device) / (n + 1)


def _to_t(edges: Tensor, g_min: Tensor, g_max: Tensor, unit: float) -> Tensor:
    return spacing_inverse(g_min[:, None] + edges * (g_max - g_min)[:, None], unit)  # [N, K + 1]


def _interval_weights(t: Tensor, sigmas: Tensor) -> Tensor:
    """Compositing weights [N, K] of densities sigmas [N, K] on intervals with edges t [N, K + 1]."""
    n, k = sigmas.shape
    packed, _ = dense_packed(n, k, sigmas.device)
    weights = ops.volume_render(sigmas.flatten(), sigmas.new_zeros(n * k, 3), t[:, :-1].flatten(), t[:, 1:].flatten(),
                                packed, 0.0)[0]
    return weights.view(n, k)


def sample_proposals(rays_o: Tensor, rays_d: Tensor, t_min: Tensor, t_max: Tensor, density_fns: Sequence[SigmaFn],
                     proposal_samples: Sequence[int], field_samples: int, *, unit: float, anneal: float = 1.0,
                     generator: torch.Generator | None = None) -> ProposalSamples:
    """Field samples of rays [N, 3] (unit directions) between t_min [N] and t_max [N] (world units).

    `density_fns[i]` (one per entry of `proposal_samples`) is evaluated at proposal_samples[i]
    intervals per ray; its weights raised to `anneal` (nerfacto anneals from 0, a flat pdf, to 1)
    place the next level. With `generator` the strata are jittered (training), else centred.
    Proposal densities keep their gradients (the histogram loss trains them); placement does not.
    """
    check_rays(rays_o, rays_d)
    if len(density_fns) != len(proposal_samples):
        raise ValueError(f"{len(density_fns)} proposal densities for {len(proposal_samples)} sample counts")
    n, device = rays_o.shape[0], rays_o.device
    g_min, g_max = spacing(t_min, unit), spacing(torch.maximum(t_max, t_min), unit)
    counts = list(proposal_samples) + [field_samples]
    edges = _uniform_edges(n, counts[0], generator, device)
    proposal_edges, proposal_weights = [], []
    for level, density_fn in enumerate(density_fns):
        t = _to_t(edges, g_min, g_max, unit)  # [N, K + 1]
        with torch.no_grad():
            x = rays_o[:, None] + rays_d[:, None] * ((t[:, 1:] + t[:, :-1]) * 0.5)[..., None]  # [N, K, 3]
        sigmas = density_fn(x.reshape(-1, 3)).view(n, -1)
        weights = _interval_weights(t, sigmas)
        proposal_edges.append(edges)
        proposal_weights.append(weights)
        with torch.no_grad():
            u = _cdf_positions(n, counts[level + 1], generator, device)
            edges = ops.pdf_resample(edges, weights.detach().pow(anneal), u, HISTOGRAM_PADDING)
    t = _to_t(edges, g_min, g_max, unit)
    packed, ray_indices = dense_packed(n, field_samples, device)
    samples = RaySamples(packed, ray_indices, t[:, :-1].flatten().contiguous(), t[:, 1:].flatten().contiguous())
    return ProposalSamples(samples, edges, proposal_edges, proposal_weights)


def proposal_loss(result: ProposalSamples, field_weights: Tensor) -> Tensor:
    """mip-NeRF 360's histogram loss: for each proposal level, the field's weights [S] (detached) above
    the proposal's envelope over each field interval, squared, over the field weight; mean per
    interval, summed over levels."""
    w = field_weights.detach().view(result.edges.shape[0], -1)  # [N, K]
    eps = torch.finfo(w.dtype).eps
    loss = w.new_zeros(())
    for edges, weights in zip(result.proposal_edges, result.proposal_weights):
        envelope = ops.interval_weights(result.edges, edges, weights)  # [N, K]
        loss = loss + ((w - envelope).clamp(min=0.0).square() / (w + eps)).mean()
    return loss


def anneal_power(step: int, anneal_steps: int = 1000, slope: float = 10.0) -> float:
    """nerfacto's proposal-weight exponent: 0 at step 0 (flat proposals) rising to 1 by `anneal_steps`."""
    x = min(max(step / anneal_steps, 0.0), 1.0)
    return slope * x / ((slope - 1.0) * x + 1.0)
