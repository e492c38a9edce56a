"""The occupancy grid forgets: a cell whose density vanished is un-marked once its decayed estimate
falls below the threshold, while the cells that stay dense stay marked."""

import math

import torch

from onefield.renderers import OccupancyGrid

STEP = 0.01


def balls(centres: list[tuple[float, float, float]], radii: list[float], sigma: float = 50.0):
    c, r = torch.tensor(centres), torch.tensor(radii)

    def density(x: torch.Tensor) -> torch.Tensor:
        inside = (torch.cdist(x, c) < r).any(-1)
        return inside.float() * sigma
    return density


def test_a_vanished_object_is_unmarked_after_the_decay_and_the_rest_stays():
    grid = OccupancyGrid([-1.0] * 3 + [1.0] * 3, resolution=16)
    # the big ball keeps the mean estimate above the threshold, so the threshold is 0.01 throughout
    both, left_only = balls([(-0.4, 0, 0), (0.6, 0, 0)], [0.55, 0.2]), balls([(-0.4, 0, 0)], [0.55])
    g = torch.Generator().manual_seed(0)
    grid.update(both, step_size=STEP, generator=g)
    left, right = torch.tensor([[-0.4, 0.0, 0.0]]), torch.tensor([[0.6, 0.0, 0.0]])
    assert bool(grid.occupied_at(left)) and bool(grid.occupied_at(right))
    # sigma * step = 0.5 decays by 0.95 per refresh: below the 0.01 threshold after ln(0.02) / ln(0.95) = 76.3
    needed = math.ceil(math.log(0.01 / (50.0 * STEP)) / math.log(0.95))
    for k in range(1, needed + 2):
        grid.update(left_only, step_size=STEP, generator=g)
        assert bool(grid.occupied_at(left)), k
        assert bool(grid.occupied_at(right)) == (k < needed), k
    assert float(grid.occs.max()) == 50.0 * STEP  # the living ball's estimate is refreshed, not decayed
