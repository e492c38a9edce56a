"""Cascaded occupancy grid (Instant-NGP): which cells of the scene box are worth sampling.

Cascade c covers the base box scaled by 2^c about its centre, each at `resolution`^3 cells, so
one grid serves bounded scenes (levels=1) and unbounded ones (levels > 1, coarser far away).
Each cell keeps a running opacity estimate `occs` (sigma * step_size, an alpha proxy); the
packed bitfield that the marcher reads marks cells whose estimate exceeds
min(threshold, mean estimate of the cells not excluded). A negative estimate marks a cell
excluded for good (Instant-NGP marks cells no camera sees this way; onefield also marks cells
outside the visual hull of the training masks, see `carving.py`): updates never probe it, it
never becomes occupied again, and it does not count towards the mean, so carving away empty
space does not lower the threshold.
"""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from onefield.cuda_ext import ops, reference
from onefield.cuda_ext.geometry import MAX_CASCADES, box_center_half, cascade_box
from onefield.errors import UserError

SigmaFn = Callable[[Tensor], Tensor]  # x [K, 3] -> sigma [K]


def _as_aabb(aabb: Sequence[float] | Tensor) -> Tensor:
    box = torch.as_tensor(aabb, dtype=torch.float32).flatten()
    if box.numel() != 6 or not bool(torch.isfinite(box).all()) or not bool((box[3:] > box[:3]).all()):
        raise UserError(f"aabb must be 6 finite numbers (min xyz, max xyz) with max > min, got {box.tolist()}")
    return box


class OccupancyGrid(torch.nn.Module):
    """A `levels` x `resolution`^3 bitfield over `aabb`, kept as buffers so it moves with `.to()`
    and is saved in `state_dict()`. A new grid marks every cell occupied. `box` holds the base box
    as Python floats too, for the marcher (set with the buffer, here and on `load_state_dict`)."""

    def __init__(self, aabb: Sequence[float] | Tensor, resolution: int = 128, levels: int = 1):
        super().__init__()
        if not 1 <= resolution <= 1024:
            raise UserError(f"resolution must be in [1, 1024], got {resolution}")
        if not 1 <= levels <= MAX_CASCADES:
            raise UserError(f"levels must be in [1, {MAX_CASCADES}], got {levels}")
        self.resolution = int(resolution)
        self.levels = int(levels)
        n_cells = self.levels * self.resolution**3
        self.register_buffer("aabb", _as_aabb(aabb))
        self.box = tuple(self.aabb.tolist())
        self.register_buffer("occs", torch.zeros(n_cells))
        self.register_buffer("bitfield", torch.full(((n_cells + 7) // 8,), 255, dtype=torch.uint8))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.box = tuple(self.aabb.tolist())

    @property
    def n_cells(self) -> int:
        return self.occs.numel()

    @property
    def center(self) -> Tensor:
        """[3] the centre of the base box."""
        return (self.aabb[:3] + self.aabb[3:]) / 2

    def outer_aabb(self) -> Tensor:
        """The box of the coarsest cascade, [6]."""
        return cascade_box(self.aabb, self.levels - 1)

    def binary(self) -> Tensor:
        """Unpacked occupancy, bool [levels, R, R, R] indexed [cascade, x, y, z]."""
        shifts = torch.arange(8, device=self.bitfield.device, dtype=torch.uint8)
        bits = (self.bitfield[:, None] >> shifts) & 1
        r = self.resolution
        return bits.flatten()[: self.n_cells].bool().view(self.levels, r, r, r)

    def occupied_fraction(self) -> float:
        return float(self.binary().float().mean())

    @torch.no_grad()
    def fill_(self, occupied: bool = True) -> "OccupancyGrid":
        """Reset: every cell occupied (the marcher samples the whole box) or every cell empty;
        excluded cells are forgotten too."""
        self.occs.fill_(0.0)
        self.bitfield.fill_(255 if occupied else 0)
        return self

    @torch.no_grad()
    def exclude_(self, cells: Tensor) -> "OccupancyGrid":
        """Mark `cells` (bool, [n_cells] or [levels, R, R, R]) empty for good; others keep their bits."""
        self.occs[cells.flatten().to(self.occs.device)] = -1.0
        self.bitfield = self.bitfield & ops.grid_pack_bits(self.occs, -0.5)
        return self

    def excluded_fraction(self) -> float:
        return float((self.occs < 0).float().mean())

    def cell_points(self, indices: Tensor, jitter: Tensor) -> Tensor:
        """World positions inside cells `indices` [K] at offsets `jitter` [K, 3] in [0, 1)."""
        r = self.resolution
        cascade = indices // r**3
        rem = indices % r**3
        ijk = torch.stack([rem // (r * r), (rem // r) % r, rem % r], -1).float()  # [K, 3]
        u = (ijk + jitter) / r * 2.0 - 1.0  # [-1, 1] inside the cascade box
        center, half = box_center_half(self.aabb)
        scale = (torch.ones_like(cascade) << cascade).float()[:, None]
        return center + u * half * scale

    def occupied_at(self, x: Tensor, occupancy: Tensor | None = None) -> Tensor:
        """bool [N]: whether the finest cell holding each world point x [N, 3] is occupied (False
        outside the outermost cascade), found exactly as the marcher finds a sample's cell (the
        kernel's twin, in float32), so the two agree on cell faces too. `occupancy`: `binary()`
        unpacked once by a caller that asks many times."""
        cell, inside = reference.grid_cells(x, self.box, self.resolution, self.levels)
        occupancy = self.binary() if occupancy is None else occupancy
        return occupancy.flatten()[cell] & inside

    def holding(self, x: Tensor, dilate: int = 1) -> Tensor:
        """bool [levels, R, R, R]: the cells holding any of the world points x [N, 3], grown by `dilate`
        cells in every direction (within each cascade)."""
        r = self.resolution
        cell, inside = reference.grid_cells(x, self.box, r, self.levels)
        mask = torch.zeros(self.n_cells, device=self.occs.device)
        mask[cell[inside]] = 1.0
        mask = mask.view(self.levels, 1, r, r, r)
        if dilate:
            mask = torch.nn.functional.max_pool3d(mask, 2 * dilate + 1, stride=1, padding=dilate)
        return mask.view(self.levels, r, r, r).bool()

    def occupied_bounds(self) -> Tensor | None:
        """World box [6] around the occupied cells of the base cascade (None when none is occupied)."""
        cells = self.binary()[0].nonzero()  # [K, 3]
        if cells.numel() == 0:
            return None
        lo, hi = cells.amin(0).float() / self.resolution, (cells.amax(0).float() + 1) / self.resolution
        size = self.aabb[3:] - self.aabb[:3]
        return torch.cat([self.aabb[:3] + lo * size, self.aabb[:3] + hi * size])

    @torch.no_grad()
    def update(self, sigma_fn: SigmaFn, *, step_size: float, threshold: float = 0.01, decay: float = 0.95,
               n_cells: int | None = None, chunk: int = 1 << 18, generator: torch.Generator | None = None) -> None:
        """Refresh the estimates from `sigma_fn` and rebuild the bitfield.

        n_cells=None evaluates every cell (use it while the field warms up); otherwise n_cells
        uniformly random cells plus as many random occupied ones, as Instant-NGP does, or every
        occupied cell once when there are fewer (nerfacc; after carving, drawing n_cells times
        among a few occupied cells would probe each of them many times over). Each cell is probed at
        one jittered point; its value is sigma * step_size. Cells not probed decay.
        """
        device = self.occs.device
        excluded = self.occs < 0  # [n_cells]
        if n_cells is None:
            indices = torch.nonzero(~excluded).flatten()
        else:
            uniform = torch.randint(0, self.n_cells, (n_cells,), device=device, generator=generator)
            occupied = torch.nonzero(self.binary().flatten()).flatten()
            if occupied.numel() > n_cells:
                occupied = occupied[torch.randint(0, occupied.numel(), (n_cells,), device=device, generator=generator)]
            uniform = torch.cat([uniform, occupied])
            indices = uniform[~excluded[uniform]]
        jitter = torch.rand(indices.numel(), 3, device=device, generator=generator)
        values = torch.empty(indices.numel(), device=device)
        for start in range(0, indices.numel(), chunk):
            sl = slice(start, start + chunk)
            sigma = sigma_fn(self.cell_points(indices[sl], jitter[sl]))
            if sigma.shape != (values[sl].numel(),):
                raise ValueError(f"sigma_fn must return sigma of shape [K] = [{values[sl].numel()}], got {tuple(sigma.shape)}")
            values[sl] = sigma.float() * step_size
        values = torch.nan_to_num(values, nan=0.0, posinf=1e6).clamp_(min=0.0)
        ops.grid_ema_update_(self.occs, indices, values, decay)
        self.occs.masked_fill_(excluded, -1.0)  # the decay moved them towards 0
        self.bitfield = ops.grid_pack_bits(self.occs, min(self._mean_estimate(excluded), threshold))

    @torch.no_grad()
    def assign_(self, values: Tensor, threshold: float = 0.01) -> None:
        """Replace every estimate by `values` [levels, R, R, R] (sigma * step_size, computed elsewhere in
        one pass, e.g. a splat model's density at the cell centres) and rebuild the bitfield; excluded cells stay excluded."""
        excluded = self.occs < 0
        self.occs.copy_(torch.nan_to_num(values.flatten().float(), nan=0.0, posinf=1e6).clamp(min=0.0))
        self.occs.masked_fill_(excluded, -1.0)
        self.bitfield = ops.grid_pack_bits(self.occs, min(self._mean_estimate(excluded), threshold))

    def _mean_estimate(self, excluded: Tensor) -> float:
        """Mean estimate over the cells not `excluded` [n_cells] (0 when all are): excluded cells say
        nothing about the field's density scale, so carving does not drag the threshold down."""
        live = (~excluded).sum().clamp(min=1)
        return float(self.occs.masked_fill(excluded, 0.0).sum() / live)
