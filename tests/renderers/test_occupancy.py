import pytest
import torch

from onefield.renderers import OccupancyGrid
from onefield.scenes import sphere


def test_new_grid_is_fully_occupied_and_moves_with_state_dict():
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, levels=2)
    assert grid.binary().shape == (2, 16, 16, 16) and grid.occupied_fraction() == 1.0
    grid.fill_(False)
    other = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, levels=2)
    other.load_state_dict(grid.state_dict())
    assert other.occupied_fraction() == 0.0


def test_update_from_a_sphere_marks_exactly_the_cells_it_covers():
    scene = sphere(radius=0.5, density=50.0)
    res = 32
    grid = OccupancyGrid(scene.aabb, resolution=res, levels=2)
    for seed in range(4):
        grid.update(scene.density, step_size=0.01, generator=torch.Generator().manual_seed(seed))
    occ = grid.binary()
    centers = (torch.arange(res) + 0.5) / res * 2 - 1  # cascade-0 cell centres
    dist = torch.sqrt(centers[:, None, None] ** 2 + centers[None, :, None] ** 2 + centers[None, None, :] ** 2)
    half_diag = 3**0.5 / res
    assert occ[0][dist < 0.5 - half_diag].all()  # cells fully inside the sphere
    assert not occ[0][dist > 0.5 + half_diag].any()  # cells fully outside
    # cascade 1 covers [-2, 2]^3: its cells around the sphere are occupied, the shell beyond is not
    dist1 = dist * 2
    assert occ[1][dist1 < 0.5 - 2 * half_diag].all() and not occ[1][dist1 > 0.5 + 2 * half_diag].any()


def test_partial_updates_sample_random_and_occupied_cells():
    scene = sphere(radius=0.3, density=50.0)
    grid = OccupancyGrid(scene.aabb, resolution=16)
    grid.update(scene.density, step_size=0.01)
    before = grid.occupied_fraction()
    calls = []

    def counting_density(x):
        calls.append(x.shape[0])
        return scene.density(x)

    n_occupied = int(grid.binary().sum())
    assert 0 < n_occupied < 500
    grid.update(counting_density, step_size=0.01, n_cells=500, generator=torch.Generator().manual_seed(1))
    assert sum(calls) == 500 + n_occupied  # 500 uniform + each of the fewer occupied cells once
    assert grid.occupied_fraction() == pytest.approx(before, abs=0.01)
    calls.clear()
    grid.update(counting_density, step_size=0.01, n_cells=20, generator=torch.Generator().manual_seed(1))
    assert sum(calls) == 40  # more occupied cells than n_cells: n_cells drawn among them


def test_cell_points_fall_inside_their_cells():
    grid = OccupancyGrid([0, 0, 0, 2, 4, 8], resolution=4, levels=2)
    idx = torch.arange(grid.n_cells)
    jitter = torch.full((grid.n_cells, 3), 0.5)
    pts = grid.cell_points(idx, jitter)
    # cell 0 of cascade 0 spans [0, .5] x [0, 1] x [0, 2]; cascade 1 doubles the box about its centre
    assert pts[0].tolist() == pytest.approx([0.25, 0.5, 1.0])
    assert pts[4**3].tolist() == pytest.approx([-1 + 0.5, -2 + 1.0, -4 + 2.0])


def test_rejects_bad_configuration_and_bad_density_shape():
    with pytest.raises(ValueError, match="aabb"):
        OccupancyGrid([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="max > min"):
        OccupancyGrid([0, 0, 0, 1, -1, 1])
    with pytest.raises(ValueError, match="resolution"):
        OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=0)
    grid = OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=4)
    with pytest.raises(ValueError, match="sigma_fn"):
        grid.update(lambda x: x, step_size=0.1)


def test_nan_density_is_not_occupied():
    grid = OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=4)
    grid.update(lambda x: torch.full((x.shape[0],), float("nan")), step_size=0.1)
    assert grid.occupied_fraction() == 0.0 and torch.isfinite(grid.occs).all()


def test_excluded_cells_do_not_lower_the_threshold():
    """The threshold is min(threshold, mean estimate of the cells not excluded): a grid with its far
    half excluded prunes its near half exactly as the same grid without exclusion, whose far half
    mirrors the near one (same mean)."""
    res, step = 8, 0.01
    values = torch.rand(res // 2, res, res, generator=torch.Generator().manual_seed(0)) * 0.02  # sigma * step

    def mirrored(x):  # constant per cell, the same in cell i and its mirror res - 1 - i along x
        ijk = ((x + 1.0) * 0.5 * res).floor().long().clamp(0, res - 1)
        return values[torch.minimum(ijk[:, 0], res - 1 - ijk[:, 0]), ijk[:, 1], ijk[:, 2]] / step

    far = torch.zeros(1, res, res, res, dtype=torch.bool)
    far[0, res // 2:] = True
    whole = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=res)
    carved = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=res).exclude_(far)
    for grid in (whole, carved):
        grid.update(mirrored, step_size=step, threshold=1.0)  # a high cap: the mean decides
    near = whole.binary()[~far]
    assert 0.3 < near.float().mean() < 0.7
    assert torch.equal(carved.binary()[~far], near) and not carved.binary()[far].any()


def test_the_host_copy_of_the_box_follows_load_state_dict():
    """The marcher reads `box` (Python floats, no device read per step); loading a checkpoint that
    holds another box updates it with the buffer."""
    grid = OccupancyGrid([0, 0, 0, 1, 1, 1], resolution=4)
    assert grid.box == (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
    grid.load_state_dict(OccupancyGrid([-2, -1, 0, 2, 3, 0.5], resolution=4).state_dict())
    assert grid.box == (-2.0, -1.0, 0.0, 2.0, 3.0, 0.5) == tuple(grid.aabb.tolist())


def test_assign_thresholds_given_estimates_and_keeps_exclusions():
    """`assign_` thresholds the given estimates as `update` does (min(threshold, mean of the live cells));
    excluded cells stay excluded whatever value they are given."""
    scene = sphere(radius=0.6, density=30.0)
    res, step = 16, 0.01
    far = torch.zeros(2, res, res, res, dtype=torch.bool)
    far[1, :3] = True
    assigned = OccupancyGrid(scene.aabb, resolution=res, levels=2).exclude_(far)
    n = assigned.n_cells
    centres = assigned.cell_points(torch.arange(n), torch.full((n, 3), 0.5))
    values = scene.density(centres) * step
    assigned.assign_(torch.ones(n).view(2, res, res, res) * 5.0)  # every cell, excluded ones too
    assert not assigned.binary()[far].any()
    assigned.assign_(values.view(2, res, res, res))
    occ = assigned.binary()
    assert not occ[far].any()
    expected = (values.view(2, res, res, res) > min(0.01, float(values[~far.flatten()].mean()))) & ~far
    assert torch.equal(occ, expected) and 0.05 < occ.float().mean() < 0.6
