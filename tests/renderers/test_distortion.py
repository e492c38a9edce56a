"""Lens distortion in every consumer of rendered depth.

An analytic sphere is rendered through strongly distorted OpenCV cameras and read back through the
same cameras (`Cameras.image_rays` to back-project, `Cameras.project` to find a point's pixel) by the
point cloud, Poisson, TSDF (fed views rendered through the ideal pinholes, as export does) and the
hidden-space fill of marching cubes; each recovers the radius within 1 %. Each test is run a second
time on the same renders read back as lens-blind pinholes (what export did before) and checks that
this misses by more than 1 %: the tests cannot pass without the lens.
"""

import dataclasses

import numpy as np
import pytest
import torch

from onefield.renderers.fusion import DepthView, FreeSpace, point_cloud, poisson_surface, tsdf_fusion
from onefield.renderers.mesh import fill_hidden, marching_cubes, sample_density
from onefield.scenes import Cameras, sphere
from onefield.scenes.shapes import orbit_cameras, sphere_views

from test_mesh import STEP, render_depth_view, soft_sphere, trained_grid

R = 0.5
LENS = torch.tensor([-0.3, 0.1, 0.01, -0.01])  # k1 k2 p1 p2: strong barrel (the image edge bends 8 %), decentred
READ_AS = ["lens", "pinhole"]  # how renders made through LENS are read back; "pinhole" is the old bug


def lens_cameras(n: int = 16, size: int = 64) -> Cameras:
    """Cameras 1.2 from the centre: the sphere nearly fills their 56-degree view, so its rim lies
    where the lens bends most."""
    cameras = orbit_cameras(sphere_views(n, 1.2, min_elevation=-0.9), size, fov_deg=56.0, near=0.1, far=4.0)
    return dataclasses.replace(cameras, distortion=LENS)


def render_views(cameras: Cameras) -> list[DepthView]:
    scene = sphere(radius=R, density=1000.0)  # expected depth sits 1/1000 inside the wall: 0.2 % of R
    grid = trained_grid(sphere(radius=R + 0.06).density)  # grown by a cell's diagonal: no surface cell missed
    return [render_depth_view(cameras.subset([i]), grid, scene.rgb_sigma, step_size=STEP / 4)
            for i in range(len(cameras))]


@pytest.fixture(scope="module")
def lens_views() -> list[DepthView]:
    return render_views(lens_cameras())


def read_back(views: list[DepthView], read_as: str) -> list[DepthView]:
    return views if read_as == "lens" else [dataclasses.replace(v, camera=v.camera.pinhole()) for v in views]


def within_one_percent(points: np.ndarray) -> bool:
    """Median and 90th percentile of |r - R| / R under 1 %."""
    error = np.abs(np.linalg.norm(points, axis=1) - R) / R
    return bool(np.median(error) < 0.01 and np.quantile(error, 0.9) < 0.01)


@pytest.mark.parametrize("read_as", READ_AS)
def test_point_cloud_through_the_lens_lies_on_the_sphere(lens_views, read_as):
    points = np.asarray(point_cloud(read_back(lens_views, read_as)).points)
    assert len(points) > 10_000
    assert within_one_percent(points) == (read_as == "lens")


@pytest.mark.parametrize("read_as", READ_AS)
def test_poisson_through_the_lens_recovers_the_sphere(lens_views, read_as):
    mesh = poisson_surface(point_cloud(read_back(lens_views, read_as), stride=2), depth=7)
    assert len(mesh.triangles) > 1000
    assert within_one_percent(np.asarray(mesh.vertices)) == (read_as == "lens")


def test_tsdf_of_the_ideal_pinholes_recovers_the_sphere_and_lens_blind_fusion_does_not(lens_views):
    pinhole_views = render_views(lens_cameras().pinhole())  # as export renders the views for TSDF
    assert within_one_percent(np.asarray(tsdf_fusion(pinhole_views, voxel_size=0.01).vertices))
    assert not within_one_percent(np.asarray(tsdf_fusion(read_back(lens_views, "pinhole"), voxel_size=0.01).vertices))


def test_tsdf_refuses_views_with_distortion(lens_views):
    with pytest.raises(ValueError, match="pinhole views only"):
        tsdf_fusion(lens_views[:1], voxel_size=0.01)


@pytest.mark.parametrize("read_as", READ_AS)
def test_hidden_space_fill_through_the_lens_closes_a_thin_shell(lens_views, read_as):
    """A shell 0.46 < r < 0.5 (the inside of a fitted object): its pocket reaches close to every
    view's rim, where a pinhole reading of the lens looks a few pixels too far out, past the
    silhouette, and calls the pocket seen; read through the lens, all of it is filled."""
    volume = sample_density(lambda x: soft_sphere(x) - soft_sphere(x, 0.46), torch.tensor([-0.56] * 3 + [0.56] * 3), 121)
    free = FreeSpace(read_back(lens_views, read_as), margin=0.003)
    surface = marching_cubes(fill_hidden(volume, 50.0, free), 50.0)
    assert within_one_percent(surface.vertices) == (read_as == "lens")


def test_project_inverts_the_rays_through_the_lens():
    cameras = lens_cameras(4)
    rays = cameras.image_rays(1)
    uv, z = cameras.project(rays.origins + 2.0 * rays.directions, 1)
    v, u = torch.meshgrid(torch.arange(cameras.height), torch.arange(cameras.width), indexing="ij")
    pixels = torch.stack([u.flatten(), v.flatten()], -1)  # [H W, 2]
    assert torch.allclose(uv, pixels + 0.5, atol=1e-3) and torch.equal(uv.floor().long(), pixels)
    assert (z > 0).all()


def test_a_point_where_the_lens_folds_back_is_seen_by_no_pixel():
    """k1 = -0.3 alone: r (1 - 0.3 r^2) peaks at r^2 = 1/0.9, and a point at normalized radius 1.6,
    far outside the view, would otherwise land at radius 0.37, inside the image."""
    cameras = dataclasses.replace(lens_cameras(1), distortion=torch.tensor([-0.3, 0.0, 0.0, 0.0]))
    c2w = cameras.c2w[0]
    inside, folded = torch.tensor([[0.3, 0.0, 1.0], [1.6, 0.0, 1.0]])  # camera axes, unit depth
    uv, _ = cameras.project(torch.stack([c2w[:, :3] @ inside, c2w[:, :3] @ folded]) + c2w[:, 3], 0)
    assert 0 < uv[0, 0] < cameras.width and uv[1].tolist() == [-1.0, -1.0]
    r = 1.6 * (1 - 0.3 * 1.6**2)
    assert 0 < float(cameras.fx[0]) * r + float(cameras.cx[0]) < cameras.width  # where it would have landed
