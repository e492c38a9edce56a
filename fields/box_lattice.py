"""Which axis-aligned boxes hold each query point: a loose hierarchy of uniform lattices.

Splats answer `density(x)` as a sum over the Gaussians whose 3-sigma box holds x. Their boxes span
orders of magnitude (an unbounded capture has centimetre Gaussians on the object and metre ones
on the far shell), so one lattice sized for the typical box would list each huge box in
thousands of cells. Here each box goes to the level whose cells are at least as large as its
longest edge (cell edges double per level), where it touches at most 2 x 2 x 2 cells; a point meets
the boxes listed in its cell at every level. The lattice is sparse: cell keys are sorted and looked
up by binary search, so its memory is 8 entries per box at most, whatever the scene's extent.
"""

from collections.abc import Iterator

import torch
from torch import Tensor

MAX_CELLS_PER_AXIS = 1 << 20  # level 0 cells are at least the extent / 2^20 (keys stay within int64)


class BoxLattice:
    def __init__(self, lo: Tensor, hi: Tensor):  # lo, hi [N, 3]: box corners, hi >= lo
        lo, hi = lo.detach(), hi.detach()
        self.lo, self.hi = lo, hi
        device = lo.device
        self.origin = lo.amin(0) if len(lo) else torch.zeros(3, device=device)  # [3]
        extent = float((hi.amax(0) - self.origin).max()) if len(lo) else 1.0
        edge = (hi - lo).amax(-1)  # [N]
        base = max(float(edge.median()) if len(lo) else 1.0, extent / MAX_CELLS_PER_AXIS, 1e-12)
        level = torch.log2((edge / base).clamp(min=1.0)).ceil().long()  # [N]: cell = base * 2^level >= edge
        self.levels = int(level.max()) + 1 if len(lo) else 0
        self.cell = base * 2.0 ** torch.arange(self.levels, device=device, dtype=torch.float64)  # [L]
        top = hi.amax(0) if len(lo) else self.origin
        self.dims = ((top - self.origin).double()[None] / self.cell[:, None]).floor().long() + 1  # [L, 3]
        sizes = self.dims.prod(-1)
        self.offsets = sizes.cumsum(0) - sizes  # [L]: level l's keys follow those of the levels below
        # every box in the (up to) 2 x 2 x 2 cells of its level that it touches
        cell = self.cell[level][:, None]  # [N, 1]
        i0 = ((lo - self.origin).double() / cell).floor().long()
        i1 = ((hi - self.origin).double() / cell).floor().long()
        corner = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], device=device)  # [8, 3]
        ijk = i0[:, None, :] + corner[None]  # [N, 8, 3]
        valid = (ijk <= i1[:, None, :]).all(-1)  # [N, 8]
        keys = self._key(ijk, level[:, None].expand(-1, 8))
        box = torch.arange(len(lo), device=device)[:, None].expand(-1, 8)
        self.keys, order = keys[valid].sort(stable=True)
        self.boxes = box[valid][order]

    def _key(self, ijk: Tensor, level: Tensor) -> Tensor:  # ijk [..., 3] in level `level` [...]
        dims = self.dims[level]
        return self.offsets[level] + (ijk[..., 0] * dims[..., 1] + ijk[..., 1]) * dims[..., 2] + ijk[..., 2]

    def _candidates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(first entry [M, L], entry count [M, L]) of the boxes listed in each point's cell, per level."""
        ijk = ((x.detach() - self.origin).double()[:, None, :] / self.cell[None, :, None]).floor().long()  # [M, L, 3]
        inside = ((ijk >= 0) & (ijk < self.dims[None])).all(-1)  # [M, L]
        level = torch.arange(self.levels, device=x.device).expand(x.shape[0], -1)
        keys = self._key(ijk.clamp(min=0), level)
        first = torch.searchsorted(self.keys, keys)
        count = torch.where(inside, torch.searchsorted(self.keys, keys, right=True) - first, 0)
        return first, count

    def pairs(self, x: Tensor, max_pairs: int = 1 << 21) -> Iterator[tuple[Tensor, Tensor]]:
        """(point index [P], box index [P]) of every point of x [M, 3] inside a box, in chunks of points
        whose candidate pairs stay within `max_pairs` (a chunk is never smaller than one point)."""
        if self.levels == 0 or x.shape[0] == 0:
            return
        first, count = self._candidates(x)
        per_point = count.sum(-1)  # [M]
        ends = per_point.cumsum(0)
        start = 0
        while start < x.shape[0]:
            base = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(torch.searchsorted(ends, base + max_pairs, right=True)))
            n = count[start:stop].flatten()  # [m * L]
            slot = torch.repeat_interleave(torch.arange(n.numel(), device=x.device), n)
            k = torch.arange(int(n.sum()), device=x.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
            box = self.boxes[first[start:stop].flatten()[slot] + k]
            point = start + slot // self.levels
            keep = ((x[point] >= self.lo[box]) & (x[point] <= self.hi[box])).all(-1)
            yield point[keep], box[keep]
            start = stop
