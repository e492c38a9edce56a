import pytest
import torch

from onefield.renderers import OccupancyGrid
from onefield.renderers.carving import carve, visual_hull
from onefield.scenes import Cameras, orbit_pose, sphere
from onefield.scenes.shapes import orbit_cameras, sphere_views

RADIUS = 0.5


def sphere_alpha(cameras: Cameras, supersample: int = 3) -> torch.Tensor:
    """[N, H, W] coverage of a sphere of RADIUS at the origin, box-filtered over sub-pixel rays."""
    s, out = supersample, []
    for i in range(len(cameras)):
        v, u = torch.meshgrid((torch.arange(cameras.height * s) + 0.5) / s - 0.5,
                              (torch.arange(cameras.width * s) + 0.5) / s - 0.5, indexing="ij")
        rays = cameras.rays(torch.full((u.numel(),), i), u.flatten(), v.flatten())
        t = -(rays.origins * rays.directions).sum(-1)  # closest approach to the centre
        miss = (rays.origins + t[:, None] * rays.directions).norm(dim=-1)
        hit = ((miss < RADIUS) & (t > 0)).float().view(cameras.height, s, cameras.width, s)
        out.append(hit.mean((1, 3)))
    return torch.stack(out)


def cell_centre_distance(grid: OccupancyGrid) -> torch.Tensor:
    cells = torch.arange(grid.n_cells)
    return grid.cell_points(cells, torch.full((grid.n_cells, 3), 0.5)).norm(dim=-1)  # [M]


def test_visual_hull_of_a_sphere_keeps_the_sphere_and_carves_the_rest():
    cams = orbit_cameras(sphere_views(24, 4.0), 48)
    grid = OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], resolution=32)
    alive = visual_hull(grid, cams, sphere_alpha(cams))
    dist = cell_centre_distance(grid)
    half_diag = 3**0.5 / 2 * 3.0 / 32
    assert alive[dist < RADIUS + half_diag].all()  # every cell touching the sphere survives
    assert not alive[dist > 2 * RADIUS].any()  # 24 views carve all that lies well outside
    inside_fraction = float((dist < RADIUS).float().mean())
    assert inside_fraction < float(alive.float().mean()) < 3 * inside_fraction


def test_a_view_carves_only_cells_it_sees_whole_against_the_background():
    cams = orbit_cameras(sphere_views(1, 4.0), 48)
    grid = OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], resolution=16)
    alpha = sphere_alpha(cams)
    alive = visual_hull(grid, cams, alpha)
    # one view carves nothing on the line of sight of its silhouette, which is a cone through the sphere
    centres = grid.cell_points(torch.arange(grid.n_cells), torch.full((grid.n_cells, 3), 0.5))
    uv, z = cams.project(centres, 0)
    px = uv.floor().long()
    inside = (px >= 0).all(-1) & (px[:, 0] < 48) & (px[:, 1] < 48) & (z > 0)
    covered = torch.zeros(grid.n_cells, dtype=torch.bool)
    covered[inside] = alpha[0, px[inside, 1], px[inside, 0]] > 0
    assert alive[covered].all()
    assert alive[~inside].all()  # outside the image: unknown, kept
    # every cell whose footprint, with room to spare for the pooled window (at most twice it), sees
    # only background well inside the image is carved: carving does its job, not just one cell of it
    half_diag = float(((grid.aabb[3:] - grid.aabb[:3]) / 16).norm()) / 2
    reach = (2 * float(cams.fx[0]) * half_diag / z.clamp(min=1e-6)).ceil().long() + 1  # [M] pixels
    clear = torch.zeros(grid.n_cells, dtype=torch.bool)
    for i in (inside & ~covered).nonzero().flatten().tolist():
        (u, v), r = px[i].tolist(), int(reach[i])
        if r <= u < 48 - r and r <= v < 48 - r and float(alpha[0, v - r:v + r + 1, u - r:u + r + 1].max()) == 0:
            clear[i] = True
    assert int(clear.sum()) > 200 and not alive[clear].any()


@pytest.mark.parametrize("cx,carved", [(24.0, True), (1.0, False), (47.0, False)])
def test_a_view_carves_a_cell_only_when_its_whole_footprint_is_in_the_image(cx, carved):
    """One cell (footprint ~7 px) seen against an empty background: carved when its footprint lies in
    the image; kept when the centre projects inside but the footprint crosses the border, since
    what the view does not see may be the object."""
    grid = OccupancyGrid([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5], resolution=1)
    cams = Cameras(orbit_pose(30.0, 20.0, 3.0)[None], 24.0, 24.0, cx, 24.0, 48, 48)
    uv, _ = cams.project(torch.zeros(1, 3), 0)
    assert 0 <= uv[0, 0] < 48  # the centre is inside the image in every case
    assert bool(visual_hull(grid, cams, torch.zeros(1, 48, 48))[0]) is not carved


def test_carving_excludes_cells_for_good_and_updates_skip_them():
    scene = sphere(radius=RADIUS, density=50.0)
    cams = orbit_cameras(sphere_views(24, 4.0), 48)
    grid = OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], resolution=16)
    kept = carve(grid, cams, (sphere_alpha(cams) * 255).round().to(torch.uint8))
    assert 0 < kept < 0.2 and grid.excluded_fraction() == pytest.approx(1 - kept)
    assert grid.occupied_fraction() == pytest.approx(kept)  # the hull starts fully occupied
    probed = []

    def everywhere_dense(x):  # a young field with density everywhere (floaters)
        probed.append(x)
        return torch.full((x.shape[0],), 100.0)

    for seed in range(3):
        grid.update(everywhere_dense, step_size=0.01, generator=torch.Generator().manual_seed(seed))
        grid.update(everywhere_dense, step_size=0.01, n_cells=1000, generator=torch.Generator().manual_seed(seed))
    assert grid.occupied_fraction() == pytest.approx(kept)  # no carved cell came back
    assert all(grid.occupied_at(x).all() for x in probed)  # only hull cells were probed
    restored = OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], resolution=16)
    restored.load_state_dict(grid.state_dict())
    assert restored.excluded_fraction() == grid.excluded_fraction()  # it is part of the checkpoint
    grid.update(scene.density, step_size=0.01)
    dist = cell_centre_distance(grid)
    assert grid.binary().flatten()[dist < RADIUS - 0.2].all()


def test_masks_that_disagree_with_the_poses_carve_nothing():
    cams = orbit_cameras(sphere_views(8, 4.0), 32)
    grid = OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], resolution=16)
    assert carve(grid, cams, torch.zeros(8, 32, 32)) == 0.0
    assert grid.occupied_fraction() == 1.0 and grid.excluded_fraction() == 0.0
    with pytest.raises(ValueError, match="alpha must be"):
        visual_hull(grid, cams, torch.zeros(8, 16, 16))


@pytest.mark.parametrize("distortion", [None, (-0.2, 0.05, 0.001, -0.002)])
def test_project_inverts_rays(distortion):
    cams = orbit_cameras(sphere_views(3, 4.0), 40)
    if distortion is not None:
        cams = Cameras(cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy, 40, 40, distortion=torch.tensor(distortion))
    u, v = torch.meshgrid(torch.arange(0, 40, 7.0), torch.arange(0, 40, 5.0), indexing="ij")
    rays = cams.rays(torch.full((u.numel(),), 2), u.flatten(), v.flatten())
    points = rays.origins + 3.0 * rays.directions
    uv, z = cams.project(points, 2)
    torch.testing.assert_close(uv, torch.stack([u.flatten(), v.flatten()], -1) + 0.5, atol=2e-3, rtol=0)
    forward = cams.c2w[2, :, 2]
    torch.testing.assert_close(z, 3.0 * rays.directions @ forward)
