"""Marching + rendering of many rays, in chunks so memory stays bounded for any image size."""

from collections.abc import Callable

import torch
from torch import Tensor

from .marching import RaySamples, march, march_in_rounds
from .occupancy import OccupancyGrid
from .volume import Deferred, RenderResult, RgbSigmaFn, render

SampleFn = Callable[[Tensor, Tensor], RaySamples]  # (rays_o [N, 3], rays_d [N, 3]) -> samples


def render_rays(rays_o: Tensor, rays_d: Tensor, sampler: OccupancyGrid | SampleFn, rgb_sigma_fn: RgbSigmaFn | Deferred,
                *, step_size: float = 0.0, near: float = 0.0, far: float = 1e10, cone_angle: float = 0.0,
                max_samples: int = 1024, background: Tensor | None = None,
                t_thresh: float = 1e-4) -> RenderResult:
    """Sample rays [N, 3] and render them (differentiable; one batch): marched through `sampler` when
    it is an occupancy grid (the step options apply), else `sampler(rays_o, rays_d)` gives the samples
    (the proposal sampler)."""
    if isinstance(sampler, OccupancyGrid):
        samples = march(rays_o, rays_d, sampler, step_size=step_size, near=near, far=far, cone_angle=cone_angle,
                        max_samples=max_samples)
    else:
        samples = sampler(rays_o, rays_d)
    return render(samples, rays_o, rays_d, rgb_sigma_fn, background=background, t_thresh=t_thresh)


def expected_depth(depth: Tensor, opacity: Tensor) -> Tensor:
    """Where a ray stops, given that it stops: the rendered depth (sum_i w_i t_i, any shape [...])
    over the opacity (sum_i w_i); t along unit rays, so world units from the ray's origin."""
    return depth / opacity.clamp(min=1e-6)


@torch.no_grad()
def render_image(rays_o: Tensor, rays_d: Tensor, sampler: OccupancyGrid | SampleFn,
                 rgb_sigma_fn: RgbSigmaFn | Deferred, *, chunk: int = 8192, **kwargs) -> dict[str, Tensor]:
    """Render rays of any leading shape [..., 3] in chunks of `chunk` rays.

    Through an occupancy grid the rays march in rounds (`_render_in_rounds`), so the field is
    evaluated only up to where each ray's transmittance runs out. Peak memory is set by `chunk` x
    max_samples, not by the image size. Returns 'rgb' [..., 3], 'depth' [...], 'opacity' [...] and
    'samples_per_ray' [...] (the samples the field was evaluated at).
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    shape = rays_o.shape[:-1]
    flat_o, flat_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": [], "samples_per_ray": []}
    for start in range(0, flat_o.shape[0], chunk):
        o, d = flat_o[start:start + chunk], flat_d[start:start + chunk]
        if isinstance(sampler, OccupancyGrid):
            out = _render_in_rounds(o, d, sampler, rgb_sigma_fn, **kwargs)
        else:
            result = render_rays(o, d, sampler, rgb_sigma_fn, **kwargs)
            out = {"rgb": result.rgb, "depth": result.depth, "opacity": result.opacity,
                   "samples_per_ray": result.samples.packed_info[:, 1]}
        for k, v in out.items():
            parts[k].append(v)
    return {k: torch.cat(v).reshape(*shape, *v[0].shape[1:]) for k, v in parts.items()}


def _render_in_rounds(rays_o: Tensor, rays_d: Tensor, grid: OccupancyGrid, rgb_sigma_fn: RgbSigmaFn | Deferred, *,
                      background: Tensor | None = None, t_thresh: float = 1e-4, **march_options) -> dict[str, Tensor]:
    """Instant-NGP's compacted inference (`march_in_rounds`) of rays [N, 3]: each round's samples are
    rendered and added behind what the ray has already composited. Within a round a ray composites up
    to its own local stop, so it may take samples whose weights sum to at most `t_thresh` more than one
    long render would."""
    n = rays_o.shape[0]
    rgb, depth, opacity = rays_o.new_zeros(n, 3), rays_o.new_zeros(n), rays_o.new_zeros(n)  # [N, 3], [N], [N]

    def composite(alive: Tensor, samples: RaySamples, t_before: Tensor) -> Tensor:
        out = render(samples, rays_o[alive], rays_d[alive], rgb_sigma_fn, t_thresh=t_thresh)
        rgb[alive] += t_before[:, None] * out.rgb
        depth[alive] += t_before * out.depth
        opacity[alive] += t_before * out.opacity
        return out.opacity

    counts = march_in_rounds(rays_o, rays_d, grid, composite, t_thresh=t_thresh, **march_options)
    if background is not None:
        rgb = rgb + (1.0 - opacity[:, None]) * background.to(rgb)
    return {"rgb": rgb, "depth": depth, "opacity": opacity, "samples_per_ray": counts}
