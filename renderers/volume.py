"""Volume rendering of packed samples with a field given as a callable."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from onefield.cuda_ext import ops

from .marching import RaySamples, march_in_rounds
from .occupancy import OccupancyGrid

RgbSigmaFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x [S, 3], d [S, 3]) -> (rgb [S, 3], sigma [S])


@dataclass(frozen=True)
class Deferred:
    """A field whose colour is costly next to its density (TensoRF's appearance tensors and shader
    MLP): density at every sample, colour only at the samples whose compositing weight exceeds
    `weight_thresh` (TensoRF's `app_mask`). Samples in front of the surface with no density and
    samples behind it (transmittance gone) skip the colour network; their rgb counts as 0, which
    changes a pixel by at most weight_thresh per skipped sample."""

    sigma_fn: Callable[[Tensor], Tensor]  # x [S, 3] -> sigma [S]
    rgb_fn: Callable[[Tensor, Tensor], Tensor]  # (x [K, 3], d [K, 3]) -> rgb [K, 3]
    weight_thresh: float = 1e-4

    def __call__(self, samples: RaySamples, x: Tensor, d: Tensor, t_thresh: float) -> tuple[Tensor, Tensor]:
        sigmas = self.sigma_fn(x)  # [S]
        with torch.no_grad():
            weights = ops.volume_render(sigmas.detach(), sigmas.new_zeros(sigmas.shape[0], 3), samples.t_starts,
                                        samples.t_ends, samples.packed_info, t_thresh)[0]
        # [K]; a device sync, unavoidable: K sizes the colour batch
        shown = (weights > self.weight_thresh).nonzero().squeeze(1)
        rgbs = x.new_zeros(x.shape[0], 3)
        if shown.numel():
            rgbs = rgbs.index_put((shown,), self.rgb_fn(x[shown], d[shown]))
        return rgbs, sigmas


@torch.no_grad()
def march_visible(rays_o: Tensor, rays_d: Tensor, grid: OccupancyGrid, sigma_fn: Callable[[Tensor], Tensor], *,
                  t_thresh: float = 1e-4, **march_options) -> tuple[RaySamples, int]:
    """The samples of a `march` of rays [N, 3] through `grid` that `render` with `t_thresh` gives a weight
    (nerfacc's visibility pass), marched in rounds (`march_in_rounds`) with density alone, so the field
    is evaluated only up to each ray's stop, never at the samples behind it (on fox after its first
    minute, 67-80 % of a full march). Exact for training: `render` stops a ray at the same sample and
    the ones dropped carry weight 0, so the loss and every gradient are unchanged. A round's render stops
    its rays at their local transmittance; its samples past the global stop (by more than half the
    threshold's float slack) are dropped too. Returns the samples, packed, and how many had a density
    evaluated."""
    n = rays_o.shape[0]
    rays, starts, ends = [rays_o.new_zeros(0, dtype=torch.long)], [rays_o.new_zeros(0)], [rays_o.new_zeros(0)]

    def composite(alive: Tensor, samples: RaySamples, t_before: Tensor) -> Tensor:
        x, _ = samples.midpoints(rays_o[alive], rays_d[alive])
        sigmas = sigma_fn(x).float() if samples.n_samples else x.new_zeros(0)  # [S]
        weights, _, _, opacity = ops.volume_render(sigmas, sigmas.new_zeros(sigmas.shape[0], 3), samples.t_starts,
                                                   samples.t_ends, samples.packed_info, t_thresh)
        # weighed here and not yet past the global stop (half the threshold: float slack), NaN kept so a
        # broken field reaches the loss and its divergence guard
        t_local = torch.exp(-samples.sum_before(sigmas * (samples.t_ends - samples.t_starts)))  # [S]
        keep = (weights != 0) & ~(t_before[samples.ray_indices] * t_local < 0.5 * t_thresh)
        rays.append(alive[samples.ray_indices[keep]])
        starts.append(samples.t_starts[keep])
        ends.append(samples.t_ends[keep])
        return opacity

    marched = march_in_rounds(rays_o, rays_d, grid, composite, t_thresh=t_thresh, **march_options)
    ray_indices = torch.cat(rays)  # [K], ray by ray in round order: a stable sort puts each ray's in t order
    order = torch.sort(ray_indices, stable=True).indices
    count = torch.bincount(ray_indices, minlength=n)
    packed_info = torch.stack([torch.cumsum(count, 0) - count, count], -1)
    return RaySamples(packed_info, ray_indices[order], torch.cat(starts)[order], torch.cat(ends)[order]), int(marched.sum())


@dataclass
class RenderResult:
    rgb: Tensor  # [N, 3], composited on the background when one is given
    depth: Tensor  # [N] expected ray depth sum_i w_i t_i (not divided by opacity)
    opacity: Tensor  # [N] sum_i w_i
    weights: Tensor  # [S]
    samples: RaySamples


def render(samples: RaySamples, rays_o: Tensor, rays_d: Tensor, rgb_sigma_fn: RgbSigmaFn | Deferred, *,
           background: Tensor | None = None, t_thresh: float = 1e-4) -> RenderResult:
    """Evaluate `rgb_sigma_fn` (or a `Deferred` field) at the sample midpoints and composite front to back.

    A ray stops at the first sample whose transmittance is below t_thresh. Gradients flow to
    whatever `rgb_sigma_fn` computed rgb and sigma from.
    """
    x, d = samples.midpoints(rays_o, rays_d)
    if samples.n_samples > 0:
        rgbs, sigmas = (rgb_sigma_fn(samples, x, d, t_thresh) if isinstance(rgb_sigma_fn, Deferred)
                        else rgb_sigma_fn(x, d))
        if rgbs.shape != (samples.n_samples, 3) or sigmas.shape != (samples.n_samples,):
            raise ValueError(f"rgb_sigma_fn must return rgb [S, 3] and sigma [S] with S={samples.n_samples}, "
                             f"got {tuple(rgbs.shape)} and {tuple(sigmas.shape)}")
    else:
        rgbs, sigmas = x.new_zeros(0, 3), x.new_zeros(0)
    weights, rgb, depth, opacity = ops.volume_render(sigmas, rgbs, samples.t_starts, samples.t_ends,
                                                     samples.packed_info, t_thresh)
    if background is not None:
        rgb = rgb + (1.0 - opacity[:, None]) * background.to(rgb)
    return RenderResult(rgb, depth, opacity, weights, samples)
