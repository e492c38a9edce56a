"""Splat rendering around the kernels: the SH basis (against gsplat's), the camera convention (against
`Cameras.project`), and what one Gaussian looks like."""

import math

import pytest
import torch

from onefield.cuda_ext import splat
from onefield.cuda_ext.splat_reference import sh_basis
from onefield.renderers.splatting import camera_for, rasterize_gaussians, rgb_to_sh0
from onefield.scenes import Cameras


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_basis_matches_gsplat(degree):
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    dirs = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    k = (degree + 1) ** 2
    torch.testing.assert_close(sh_basis(dirs, degree), _eval_sh_bases_fast(k, dirs), rtol=1e-5, atol=1e-6)


def test_sh_colour_of_the_dc_term_is_view_independent():
    rgb = torch.rand(10, 3)
    sh = torch.zeros(10, 16, 3)
    sh[:, 0] = rgb_to_sh0(rgb)
    for _ in range(3):
        torch.testing.assert_close(splat.sh_colors(torch.randn(10, 3), sh, torch.randn(3), 3), rgb)


def _rotated_camera() -> Cameras:
    angle = 0.4
    rot = torch.tensor([[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0],
                        [-math.sin(angle), 0.0, math.cos(angle)]])
    c2w = torch.cat([rot, torch.tensor([[0.3], [-0.2], [-4.0]])], 1)[None]
    return Cameras(c2w, fx=50.0, fy=52.0, cx=31.5, cy=24.0, width=64, height=48)


def test_gaussians_land_where_the_cameras_project_their_means():
    cams = _rotated_camera()
    means = torch.randn(50, 3) * 0.5
    cam = camera_for(cams.c2w[0], 50.0, 52.0, 31.5, 24.0, 64, 48)
    out = rasterize_gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(50, 1), torch.full((50, 3), 0.01),
                              torch.full((50,), 0.5), torch.zeros(50, 1, 3), cam, torch.ones(3), 0)
    uv, depth = cams.project(means, 0)
    seen = (out.radii > 0).all(1)
    assert int(seen.sum()) > 30
    torch.testing.assert_close(out.means2d[seen], uv[seen], rtol=0, atol=1e-3)


def test_one_gaussian_renders_its_colour_opacity_and_depth():
    cams = _rotated_camera()
    centre = cams.c2w[0, :, 3] + 3.0 * cams.c2w[0, :, 2]  # on the optical axis, 3 units ahead
    cam = camera_for(cams.c2w[0], 50.0, 52.0, 31.5, 24.0, 64, 48)
    colour = torch.tensor([[0.9, 0.2, 0.1]])
    out = rasterize_gaussians(centre[None], torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), 0.1),
                              torch.tensor([0.8]), rgb_to_sh0(colour)[:, None], cam, torch.zeros(3), 0)
    v, u = divmod(int(out.opacity.argmax()), 64)
    assert (u, v) in ((31, 23), (31, 24))  # the pixel around the principal point (31.5, 24.0)
    peak = out.opacity[v, u]
    assert 0.75 < float(peak) <= 0.8  # the opacity, times exp(-sigma) of half a pixel off centre
    torch.testing.assert_close(out.rgb[v, u], colour[0] * peak)  # on black: colour times alpha
    torch.testing.assert_close(out.depth[v, u] / peak, torch.tensor(3.0), rtol=1e-5, atol=1e-5)
    sd = math.sqrt((50.0 * 0.1 / 3.0) ** 2 + 0.3)  # pixels
    assert float(out.opacity[v, u + 2 * round(sd)]) < 0.2 * float(peak)  # two sigma away: exp(-2) of it
    assert (out.opacity[:, :2] == 0).all()  # beyond the opacity-aware box: nothing
