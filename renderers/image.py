"""Marching + rendering of many rays, in chunks so memory stays bounded for any image size."""

from collections.abc import Callable

import torch
from torch import Tensor

from .marching import RaySamples, march
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

    Peak memory is set by `chunk` x max_samples, not by the image size. Returns 'rgb' [..., 3],
    'depth' [...], 'opacity' [...] and 'samples_per_ray' [...].
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    shape = rays_o.shape[:-1]
    flat_o, flat_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": [], "samples_per_ray": []}
    for start in range(0, flat_o.shape[0], chunk):
        out = render_rays(flat_o[start:start + chunk], flat_d[start:start + chunk], sampler, rgb_sigma_fn, **kwargs)
        parts["rgb"].append(out.rgb)
        parts["depth"].append(out.depth)
        parts["opacity"].append(out.opacity)
        parts["samples_per_ray"].append(out.samples.packed_info[:, 1])
    return {k: torch.cat(v).reshape(*shape, *v[0].shape[1:]) for k, v in parts.items()}
