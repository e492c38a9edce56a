"""Ray marching through an occupancy grid into packed samples."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from onefield.cuda_ext import ops

from .occupancy import OccupancyGrid


@dataclass
class RaySamples:
    """Packed samples (the nerfacc layout): ray r owns samples [start_r, start_r + count_r)."""

    packed_info: Tensor  # [N, 2] int64 (start, count)
    ray_indices: Tensor  # [S] int64
    t_starts: Tensor  # [S]
    t_ends: Tensor  # [S]

    @property
    def n_rays(self) -> int:
        return self.packed_info.shape[0]

    @property
    def n_samples(self) -> int:
        return self.ray_indices.shape[0]

    def midpoints(self, rays_o: Tensor, rays_d: Tensor) -> tuple[Tensor, Tensor]:
        """Sample positions [S, 3] at the segment midpoints, and their ray directions [S, 3]."""
        t_mid = (self.t_starts + self.t_ends) * 0.5
        d = rays_d.index_select(0, self.ray_indices)
        return torch.addcmul(rays_o.index_select(0, self.ray_indices), d, t_mid[:, None]), d

    def sum_before(self, x: Tensor) -> Tensor:
        """Per sample, the sum of x [S] over its ray's earlier samples: one running sum over all rays (in
        double: it grows with the number of rays) minus its value at the ray's first sample."""
        total = torch.cumsum(x.double(), 0) - x.double()  # [S], exclusive
        return (total - total[self.packed_info[self.ray_indices, 0]]).to(x.dtype)


def check_rays(rays_o: Tensor, rays_d: Tensor) -> None:
    if rays_o.dim() != 2 or rays_o.shape[-1] != 3 or rays_o.shape != rays_d.shape:
        raise ValueError(f"rays_o and rays_d must both be [N, 3], got {tuple(rays_o.shape)} and {tuple(rays_d.shape)}")


@torch.no_grad()
def march(rays_o: Tensor, rays_d: Tensor, grid: OccupancyGrid, *, step_size: float, near: float = 0.0,
          far: float = 1e10, cone_angle: float = 0.0, max_step_size: float = 1e10,
          max_samples: int = 1024, t_start: Tensor | None = None) -> RaySamples:
    """Samples of rays [N, 3] through the occupied cells of `grid`.

    Steps are dt = clamp(t * cone_angle, step_size, max_step_size) in units of |rays_d| (pass unit
    directions for world units); empty cells are skipped, and each ray stops after max_samples
    samples, at `far`, or where it leaves the grid's outer box. `t_start` [N] moves each ray's start
    further out: the marcher's next step depends on t alone, so marching on from a sample's t_end
    continues exactly where a longer march would have gone (`render_image` marches in rounds).
    """
    check_rays(rays_o, rays_d)
    if step_size <= 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    t_near, t_far, _ = ops.ray_aabb_intersect(rays_o, rays_d, grid.outer_aabb())
    t_min = t_near.clamp(min=near)
    if t_start is not None:
        t_min = torch.maximum(t_min, t_start)
    t_max = t_far.clamp(max=far)
    packed_info, ray_indices, t_starts, t_ends = ops.march_rays(
        rays_o, rays_d, t_min, t_max, grid.bitfield, grid.box, grid.resolution, grid.levels, step_size,
        max_step_size, cone_angle, max_samples)
    return RaySamples(packed_info, ray_indices, t_starts, t_ends)


FIRST_ROUND = 8  # samples per ray marched in the first round; each later round doubles it up to LAST_ROUND
LAST_ROUND = 64

# (live ray indices [A], their next samples, their transmittance in front of them [A]) -> the samples' opacity [A]
Composite = Callable[[Tensor, RaySamples, Tensor], Tensor]


@torch.no_grad()
def march_in_rounds(rays_o: Tensor, rays_d: Tensor, grid: OccupancyGrid, composite: Composite, *, step_size: float,
                    near: float = 0.0, far: float = 1e10, cone_angle: float = 0.0, max_samples: int = 1024,
                    t_thresh: float = 1e-4) -> Tensor:
    """Instant-NGP's compacted marching of rays [N, 3]: march every ray a few samples, hand them to
    `composite` (which evaluates the field and says how much light they stopped), and march on, from
    where it stopped, only the rays whose transmittance is still above `t_thresh`. The samples are those
    of one long `march` (the marcher is memoryless in t), but the field never sees the ones past a ray's
    stop: on an opaque real scene most of a full march. Returns each ray's marched samples [N] (int64)."""
    n = rays_o.shape[0]
    trans = rays_o.new_ones(n)  # [N] transmittance in front of each ray's next sample
    counts = torch.zeros(n, dtype=torch.long, device=rays_o.device)
    t_next = rays_o.new_zeros(n)  # [N] where each ray goes on marching
    alive = torch.arange(n, device=rays_o.device)
    per_round, used = FIRST_ROUND, 0  # every live ray has taken `used` samples: each round's full count
    while alive.numel() and used < max_samples:
        k = min(per_round, max_samples - used)
        samples = march(rays_o[alive], rays_d[alive], grid, step_size=step_size, near=near, far=far,
                        cone_angle=cone_angle, max_samples=k, t_start=t_next[alive] if used else None)
        t_before = trans[alive]
        trans[alive] = t_after = t_before * (1.0 - composite(alive, samples, t_before))
        taken = samples.packed_info[:, 1]  # [A]
        counts[alive] += taken
        going = (taken == k) & (t_after >= t_thresh)  # a ray that took fewer left the grid or reached `far`
        last = samples.packed_info[going, 0] + k - 1
        alive = alive[going]
        t_next[alive] = samples.t_ends[last]
        used += k
        per_round = min(2 * per_round, LAST_ROUND)
    return counts
