"""Ray marching through an occupancy grid into packed samples."""

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

    def select(self, keep: Tensor) -> "RaySamples":
        """The samples where keep [S] (bool) holds, each ray's in their order, packed again."""
        count = torch.zeros(self.n_rays, dtype=torch.int64, device=keep.device).index_add_(
            0, self.ray_indices, keep.to(torch.int64))
        packed_info = torch.stack([torch.cumsum(count, 0) - count, count], -1)
        return RaySamples(packed_info, self.ray_indices[keep], self.t_starts[keep], self.t_ends[keep])


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
