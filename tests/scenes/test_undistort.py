"""Images resampled to ideal pinholes (`scenes.undistort`), for the splat rasterizer.

Images are painted with a smooth function of each pixel's ray direction through a strongly
distorted lens; after resampling, every pixel of the pinhole image must hold the value of its own
pinhole ray's direction. Reading the same images with the lens ignored (what a rasterizer would do
without this step) misses by far more, so the test cannot pass without the resampling.
"""

import dataclasses

import pytest
import torch

from onefield.scenes import Cameras, PosedImages
from onefield.scenes.shapes import orbit_cameras, sphere_views
from onefield.scenes.undistort import pinhole_intrinsics, undistorted

LENSES = {"barrel": [-0.3, 0.1, 0.01, -0.01], "pincushion": [0.15, 0.02, -0.005, 0.008]}


def paint(cameras: Cameras, index: int) -> torch.Tensor:
    """uint8 [H, W, 4]: a smooth colour of each pixel's camera-frame ray direction (opaque)."""
    rays = cameras.image_rays(index)
    d = rays.directions @ cameras.c2w[index, :, :3]  # world -> camera: the transposed rotation
    x, y = d[:, 0] / d[:, 2], d[:, 1] / d[:, 2]
    rgb = torch.stack([0.5 + 0.45 * torch.sin(4 * x), 0.5 + 0.45 * torch.cos(3 * y), 0.5 + 0.4 * torch.sin(2 * (x + y))], -1)
    rgba = torch.cat([rgb, torch.ones_like(rgb[:, :1])], -1).reshape(cameras.height, cameras.width, 4)
    return (rgba * 255).round().to(torch.uint8)


def views(lens: list[float], size: int = 80) -> PosedImages:
    cams = orbit_cameras(sphere_views(3, 2.0), size, fov_deg=70.0, near=0.1, far=5.0)
    cams = dataclasses.replace(cams, cx=cams.cx + torch.tensor([0.0, 3.0, -2.0]), height=size - 16,
                               cy=cams.cy - 8, distortion=torch.tensor(lens))
    images = torch.stack([paint(cams, i) for i in range(len(cams))])
    return PosedImages(cams, images, [f"v{i}" for i in range(len(cams))], (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), False)


@pytest.mark.parametrize("lens", LENSES)
def test_resampled_pixels_hold_their_pinhole_ray(lens):
    data = views(LENSES[lens])
    out = undistorted(data)
    assert not out.cameras.distorted and out.images.shape == data.images.shape
    expected = torch.stack([paint(out.cameras, i) for i in range(len(out))]).float()
    error = (out.images.float() - expected).abs()[..., :3] / 255
    assert float(error.mean()) < 0.004 and float(error.max()) < 0.05
    lens_blind = (data.images.float() - expected).abs()[..., :3] / 255  # the captured images read as pinholes
    assert float(lens_blind.mean()) > 5 * float(error.mean())
    torch.testing.assert_close(out.cameras.c2w, data.cameras.c2w)


@pytest.mark.parametrize("lens", LENSES)
def test_pinhole_view_lies_inside_the_captured_image(lens):
    """Every pinhole pixel edge projects through the lens into the captured image (no blank pixels),
    and the view is not needlessly cropped: some edge touches the captured image's border."""
    cams = views(LENSES[lens]).cameras
    fx, fy, cx, cy = pinhole_intrinsics(cams)
    pinholes = dataclasses.replace(cams, fx=fx, fy=fy, cx=cx, cy=cy, distortion=None)
    w, h = cams.width, cams.height
    s = torch.linspace(0, 1, 200)
    edge_u = torch.cat([torch.zeros_like(s), torch.ones_like(s), s, s]) * w - 0.5  # `rays` adds the half pixel
    edge_v = torch.cat([s, s, torch.zeros_like(s), torch.ones_like(s)]) * h - 0.5
    for i in range(len(cams)):
        rays = pinholes.rays(torch.full_like(edge_u, i, dtype=torch.long), edge_u, edge_v)
        uv, z = cams.project(rays.origins + 2.0 * rays.directions, i)
        assert bool((z > 0).all())
        assert bool((uv[:, 0] >= -1e-3).all() and (uv[:, 0] <= w + 1e-3).all())
        assert bool((uv[:, 1] >= -1e-3).all() and (uv[:, 1] <= h + 1e-3).all())
        gap = torch.stack([uv[:, 0], w - uv[:, 0], uv[:, 1], h - uv[:, 1]]).min(-1).values  # per side
        assert float(gap.min()) < 0.05 and float(gap.max()) < 0.2 * w


def test_pinhole_data_is_returned_as_is():
    data = views([0.0, 0.0, 0.0, 0.0])
    assert undistorted(data) is data
