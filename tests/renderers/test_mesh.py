"""Surface extraction: marching cubes on a sampled density, TSDF fusion and Poisson from rendered depth."""

import math

import numpy as np
import pytest
import torch
import trimesh

from onefield.renderers import OccupancyGrid, render_image, render_rays
from onefield.renderers.fusion import DepthView, FreeSpace, point_cloud, poisson_surface, tsdf_fusion
from onefield.renderers.image import expected_depth
from onefield.renderers.mesh import fill_hidden, lattice_for, marching_cubes, opacity_level, sample_density
from onefield.scenes import Cameras, sphere
from onefield.scenes.shapes import orbit_cameras, sphere_views

BOX = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
STEP = 2 * math.sqrt(3) / 256


def soft_sphere(x: torch.Tensor, radius: float = 0.5) -> torch.Tensor:
    """Density 100 inside, 0 outside, a smooth (sigmoid) wall of width ~0.01 at the radius."""
    return 100.0 * torch.sigmoid((radius - x.norm(dim=-1)) * 300.0)


def trained_grid(sigma_fn, resolution: int = 64) -> OccupancyGrid:
    grid = OccupancyGrid(BOX, resolution)
    for seed in range(4):
        grid.update(sigma_fn, step_size=STEP, generator=torch.Generator().manual_seed(seed))
    return grid


def test_marching_cubes_recovers_a_sphere_within_one_percent():
    grid = trained_grid(soft_sphere)
    volume = sample_density(soft_sphere, BOX, 128, grid=grid, chunk=5000)  # many slabs
    assert volume.shape == (128, 128, 128)
    assert volume.queried < 0.2 * 128**3  # empty grid cells are never sent to the field
    surface = marching_cubes(volume, 50.0)
    radii = np.linalg.norm(surface.vertices, axis=1)
    assert abs(radii.mean() - 0.5) < 0.005 and np.abs(radii - 0.5).max() < 0.01
    mesh = trimesh.Trimesh(surface.vertices, surface.faces)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.5**3, rel=0.02)  # positive: faces wound outward
    outward = (surface.normals * surface.vertices).sum(1) / radii
    assert outward.min() > 0.8 and outward.mean() > 0.98


def hollow_ball(x: torch.Tensor) -> torch.Tensor:
    """A shell 0.35 < r < 0.5 around an empty pocket (the inside of a fitted object looks like this)."""
    return soft_sphere(x) - soft_sphere(x, 0.35)


def test_fill_hidden_makes_the_unseen_inside_solid_and_keeps_seen_space_empty():
    free = FreeSpace(rendered_sphere_views(), margin=0.02)
    directions = torch.nn.functional.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert free((directions * 0.6).numpy()).all()  # in front of the sphere from some view
    assert not free((directions * 0.4).numpy()).any()  # behind its surface from every view
    volume = sample_density(hollow_ball, BOX, 96)
    raw = marching_cubes(volume, 50.0)
    assert (np.linalg.norm(raw.vertices, axis=1) < 0.4).any()  # marching cubes alone: an inner shell
    filled_volume = fill_hidden(volume, 50.0, free)
    filled = marching_cubes(filled_volume, 50.0)
    mesh = trimesh.Trimesh(filled.vertices, filled.faces)
    assert np.linalg.norm(filled.vertices, axis=1).min() > 0.48 and mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.5**3, rel=0.03)
    origin, spacing = volume.origin, volume.spacing
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij"), -1)
    outside = np.linalg.norm(origin + ijk * spacing, axis=-1) > 0.55
    assert np.array_equal(filled_volume.values[outside], volume.values[outside])  # seen space untouched
    solid = sample_density(soft_sphere, BOX, 32)
    assert fill_hidden(solid, 50.0, lambda p: np.ones(len(p), bool)) is solid  # all empty space seen: unchanged


def test_sampling_without_a_grid_queries_every_point_and_lattice_is_cubic():
    bounds = torch.tensor([-1.0, -0.5, -0.25, 1.0, 0.5, 0.25])
    origin, spacing, counts = lattice_for(bounds, 41)
    assert counts == (41, 21, 11) and spacing == pytest.approx(0.05)
    volume = sample_density(soft_sphere, bounds, 41)
    assert volume.queried == 41 * 21 * 11
    x = torch.tensor([[origin[0] + 20 * spacing, origin[1] + 10 * spacing, origin[2] + 5 * spacing]])
    assert volume.values[20, 10, 5] == pytest.approx(float(soft_sphere(x)), rel=1e-5)


def test_a_level_outside_the_density_range_is_refused():
    volume = sample_density(soft_sphere, BOX, 16)
    with pytest.raises(ValueError, match="outside the sampled density range"):
        marching_cubes(volume, 1000.0)


def test_opacity_level_makes_one_step_half_opaque():
    level = opacity_level(0.01)
    assert 1 - math.exp(-level * 0.01) == pytest.approx(0.5)


def test_expected_depth_is_where_a_ray_stops_given_that_it_stops():
    """A central ray through a faint ball (density 2, diameter 1, entered at t0 = 2.5) stops at
    t0 + 1/sigma - L e^(-sigma L) / (1 - e^(-sigma L)) on average, if it stops."""
    scene = sphere(radius=0.5, density=2.0)
    out = render_rays(torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]]), OccupancyGrid(BOX, 8),
                      scene.rgb_sigma, step_size=1e-3, max_samples=4096)
    expected = 2.5 + 0.5 - math.exp(-2.0) / (1 - math.exp(-2.0))
    assert float(expected_depth(out.depth, out.opacity)) == pytest.approx(expected, abs=2e-3)


def rendered_sphere_views(n: int = 24, size: int = 48) -> list[DepthView]:
    scene = sphere(radius=0.5, density=200.0)
    grid = trained_grid(scene.density)
    cameras = orbit_cameras(sphere_views(n, 3.0, min_elevation=-0.9), size, near=0.5, far=6.0)
    return [render_depth_view(cameras.subset([i]), grid, scene.rgb_sigma) for i in range(len(cameras))]


def render_depth_view(camera: Cameras, grid: OccupancyGrid, rgb_sigma, step_size: float = STEP / 2) -> DepthView:
    """A one-view `camera`'s image rays volume-rendered (as `app.export.depth_views` renders them)."""
    rays = camera.image_rays(0)
    out = render_image(rays.origins, rays.directions, grid, rgb_sigma, step_size=step_size)
    shape = (camera.height, camera.width)
    return DepthView.from_render(camera, out["rgb"].view(*shape, 3), out["depth"].view(shape), out["opacity"].view(shape))


def test_depth_views_back_project_onto_the_sphere():
    views = rendered_sphere_views(4)
    points, colors, normals = views[0].points()
    radii = np.linalg.norm(points, axis=1)
    # expected depth sits ~1/sigma = 0.005 inside a density-200 wall; silhouette pixels mix depths
    assert len(points) > 300 and abs(np.median(radii) - 0.5) < 0.008 and np.quantile(np.abs(radii - 0.5), 0.95) < 0.02
    assert ((normals * points).sum(1) / radii).mean() > 0.95  # normals face out, towards the camera
    assert colors.min() >= 0 and colors.max() <= 1


def test_tsdf_fusion_of_rendered_depth_recovers_the_sphere():
    mesh = tsdf_fusion(rendered_sphere_views(), voxel_size=0.01)
    vertices = np.asarray(mesh.vertices)
    radii = np.linalg.norm(vertices, axis=1)
    assert len(mesh.triangles) > 1000
    assert abs(np.median(radii) - 0.5) < 0.01 and np.quantile(np.abs(radii - 0.5), 0.99) < 0.03
    assert np.asarray(mesh.vertex_colors).shape == vertices.shape


def test_poisson_reconstruction_recovers_the_sphere():
    mesh = poisson_surface(point_cloud(rendered_sphere_views()), depth=7)
    radii = np.linalg.norm(np.asarray(mesh.vertices), axis=1)
    assert len(mesh.triangles) > 1000
    assert abs(np.median(radii) - 0.5) < 0.01 and np.quantile(np.abs(radii - 0.5), 0.95) < 0.03


def test_poisson_without_points_says_why():
    with pytest.raises(ValueError, match="needs an oriented point cloud"):
        poisson_surface(point_cloud([]))
