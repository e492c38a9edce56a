"""`OccupancyGrid.occupied_at` and the marcher find the same cell for every point, on cell faces and
cascade boundaries included: mesh extraction (which asks occupied_at) and rendering (which
marches) never disagree about which cells are empty."""

import pytest
import torch

from onefield.cuda_ext import ops, reference
from onefield.cuda_ext.geometry import box_center_half
from onefield.renderers import OccupancyGrid

BOX = (-0.3, 0.1, -1.7, 1.9, 2.3, 0.6)  # sizes where x / half and x * (1 / half) round apart
RES = 8


def on_faces(levels: int, n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 3] points whose every coordinate is a cell face of some cascade, computed as the marcher
    computes a face ((centre - half 2^c) + k width, float32), or the float just below or above it."""
    center, half = box_center_half(torch.tensor(BOX))
    c = torch.randint(0, levels, (n, 1), generator=g)
    half_s = half * (torch.ones_like(c) << c).float()  # [n, 3]
    k = torch.randint(0, RES + 1, (n, 3), generator=g).float()
    x = (center - half_s) + k * (half_s * (2.0 / RES))
    nudge = torch.randint(-1, 2, (n, 3), generator=g)
    x = torch.where(nudge > 0, torch.nextafter(x, torch.full_like(x, 1e9)), x)
    return torch.where(nudge < 0, torch.nextafter(x, torch.full_like(x, -1e9)), x)


def on_cascade_boundaries(levels: int, n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 3] points inside the outer box with one coordinate exactly on a cascade's boundary
    (centre +- half 2^c: where a cascade ends and the next begins)."""
    center, half = box_center_half(torch.tensor(BOX))
    outer = half * float(1 << (levels - 1))
    x = center + (torch.rand(n, 3, generator=g) * 2 - 1) * outer
    axis = torch.randint(0, 3, (n,), generator=g)
    c = torch.randint(0, levels, (n,), generator=g)
    sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    rows = torch.arange(n)
    x[rows, axis] = center[axis] + sign * (half[axis] * (torch.ones_like(c) << c).float())
    return x


def marcher_samples(x: torch.Tensor, grid: OccupancyGrid) -> torch.Tensor:
    """bool [n]: whether the marcher emits a sample at x. Each point is a ray of one step [0, dt)
    with direction 0, so its midpoint o + d (dt / 2) is x exactly."""
    dt = 1e-3
    t_min, t_max = torch.zeros(x.shape[0]), torch.full((x.shape[0],), dt)
    info, _, _, _ = ops.march_rays(x, torch.zeros_like(x), t_min, t_max, grid.bitfield, grid.box, RES,
                                   grid.levels, dt, 1e10, 0.0, 1)
    return info[:, 1] == 1


@pytest.mark.parametrize("kernels", ["", "torch"])
@pytest.mark.parametrize("levels", [1, 3])
def test_occupied_at_agrees_with_the_marcher(monkeypatch, kernels, levels):
    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    g = torch.Generator().manual_seed(levels)
    grid = OccupancyGrid(BOX, resolution=RES, levels=levels)
    grid.bitfield = reference.grid_pack_bits(torch.rand(grid.n_cells, generator=g), 0.5)
    center, half = box_center_half(grid.aabb)
    outer = half * float(1 << (levels - 1))
    points = torch.cat([on_faces(levels, 4000, g), on_cascade_boundaries(levels, 2000, g),
                        center + (torch.rand(2000, 3, generator=g) * 2.2 - 1.1) * outer])  # some outside
    got = grid.occupied_at(points)
    want = marcher_samples(points, grid)
    assert 0.2 < want.float().mean() < 0.5  # occupied, empty and outside points all occur
    mismatch = (got != want).nonzero().flatten()
    assert mismatch.numel() == 0, f"{mismatch.numel()} points disagree, e.g. {points[mismatch[:3]].tolist()}"
