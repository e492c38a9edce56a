import math

import pytest
import torch

from onefield.scenes import Cameras, look_at, orbit_pose, sphere


def test_look_at_is_opencv_convention():
    c2w = look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    right, down, forward, eye = c2w.T
    assert forward.tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert right.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert down.tolist() == pytest.approx([0.0, 0.0, -1.0])  # image y points down, world z up
    assert eye.tolist() == [0.0, -3.0, 0.0]
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))


def test_rays_of_a_hand_computed_camera():
    # camera at (1, 2, 3): its x axis is world x, its y (down) world -z, its z (forward) world -y
    c2w = torch.tensor([[1.0, 0.0, 0.0, 1.0],
                        [0.0, 0.0, -1.0, 2.0],
                        [0.0, -1.0, 0.0, 3.0]])
    cams = Cameras(c2w[None], fx=100.0, fy=50.0, cx=20.0, cy=10.0, width=40, height=20, near=0.5, far=9.0)
    # pixel (u=29, v=4): its centre (29.5, 4.5) -> camera direction ((29.5-20)/100, (4.5-10)/50, 1)
    rays = cams.rays(torch.tensor([0]), torch.tensor([29]), torch.tensor([4]))
    d_cam = torch.tensor([0.095, -0.11, 1.0])
    expected = torch.tensor([d_cam[0], -d_cam[2], -d_cam[1]])  # world = R @ d_cam
    torch.testing.assert_close(rays.directions[0], expected / expected.norm())
    torch.testing.assert_close(rays.origins[0], torch.tensor([1.0, 2.0, 3.0]))
    assert rays.image_index.tolist() == [0] and (rays.near, rays.far) == (0.5, 9.0)


def test_image_rays_layout_and_scaling():
    c2w = orbit_pose(45.0, 30.0, 4.0)
    cams = Cameras(torch.stack([c2w, c2w]), 50.0, 50.0, 20.0, 15.0, 40, 30)
    rays = cams.image_rays(1)
    d = rays.directions.view(30, 40, 3)
    assert rays.image_index.unique().tolist() == [1]
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(30, 40))
    # the four pixels around the principal point straddle the optical axis (towards the target)
    centre = torch.nn.functional.normalize(d[14:16, 19:21].reshape(4, 3).mean(0), dim=0)
    torch.testing.assert_close(centre, -c2w[:, 3] / 4.0, atol=1e-4, rtol=0)
    assert float((d[15, 39] - d[15, 0]) @ c2w[:, 0]) > 0  # right in the image = camera +x
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (20, 15) and float(half.fx[0]) == 25.0 and float(half.cx[0]) == 10.0
    # the same physical ray: pixel (9, 7) at half size covers pixels (18..19, 14..15) at full size
    a = half.rays(torch.tensor([0]), torch.tensor([9]), torch.tensor([7])).directions
    b = cams.rays(torch.tensor([0]), torch.tensor([18.5]), torch.tensor([14.5])).directions
    torch.testing.assert_close(a, b)


def test_camera_validation():
    with pytest.raises(ValueError, match="c2w"):
        Cameras(torch.zeros(2, 4, 4), 1.0, 1.0, 0.0, 0.0, 4, 4)
    with pytest.raises(ValueError, match="fx"):
        Cameras(torch.zeros(2, 3, 4), torch.ones(3), 1.0, 0.0, 0.0, 4, 4)
    with pytest.raises(ValueError, match="size"):
        Cameras(torch.zeros(1, 3, 4), 1.0, 1.0, 0.0, 0.0, 0, 4)
    assert math.isclose(float(Cameras(torch.zeros(1, 3, 4), 2.0, 1.0, 0.0, 0.0, 4, 4).fx[0]), 2.0)


def test_procedural_sphere_density_is_hard_edged():
    scene = sphere(radius=0.5, density=7.0)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.49, 0.0, 0.0], [0.51, 0.0, 0.0]])
    assert scene.density(x).tolist() == [7.0, 7.0, 0.0]
    rgb, sigma = scene.rgb_sigma(x, torch.zeros_like(x))
    assert rgb.shape == (3, 3) and torch.all((rgb >= 0) & (rgb <= 1)) and sigma.tolist() == [7.0, 7.0, 0.0]


FOX_DISTORTION = torch.tensor([0.0578421, -0.0805099, -0.000980296, 0.00015575])  # ingp-fox k1 k2 p1 p2
WIDE_DISTORTION = torch.tensor([-0.25, 0.08, 0.001, -0.002])  # a wide-angle lens's barrel distortion


@pytest.mark.parametrize("coeffs", [FOX_DISTORTION, WIDE_DISTORTION])
def test_undistort_inverts_distort(coeffs):
    from onefield.scenes.cameras import distort, undistort

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1000, generator=g) * 0.8 - 0.4, torch.rand(1000, generator=g) * 1.2 - 0.6
    xd, yd = distort(x, y, coeffs.expand(1000, 4))
    assert float((xd - x).abs().max()) > 1e-3  # the model does bend these points
    xu, yu = undistort(xd, yd, coeffs.expand(1000, 4))
    torch.testing.assert_close(xu, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(yu, y, atol=1e-6, rtol=0)


def test_a_straight_line_stays_straight_after_undistortion():
    from onefield.scenes.cameras import distort

    c2w = look_at((0.0, -3.0, 0.5), (0.0, 0.0, 0.0))
    cams = Cameras(c2w[None], 540.0, 540.0, 270.0, 480.0, 540, 960, distortion=WIDE_DISTORTION)
    # a world segment seen across the whole frame, projected through the distorting lens
    s = torch.linspace(0, 1, 50)[:, None]
    points = torch.tensor([-1.0, 0.0, 1.8]) * (1 - s) + torch.tensor([1.0, 0.0, 1.8]) * s  # [50, 3], high in the view
    r, t = c2w[:, :3].T, -c2w[:, :3].T @ c2w[:, 3]
    p_cam = points @ r.T + t
    x, y = p_cam[:, 0] / p_cam[:, 2], p_cam[:, 1] / p_cam[:, 2]
    xd, yd = distort(x, y, WIDE_DISTORTION.expand(50, 4))
    u, v = xd * 540.0 + 270.0 - 0.5, yd * 540.0 + 480.0 - 0.5  # pixel indices (centres at +0.5)
    rays = cams.rays(torch.zeros(50, dtype=torch.long), u, v)
    # undistorted rays through the line's pixels all lie in the plane of the line and the camera centre
    normal = torch.nn.functional.normalize(torch.linalg.cross(points[0] - c2w[:, 3], points[-1] - c2w[:, 3]), dim=0)
    assert float((rays.directions @ normal).abs().max()) < 1e-5
    # while ignoring the distortion bends them out of it
    ideal = Cameras(c2w[None], 540.0, 540.0, 270.0, 480.0, 540, 960).rays(torch.zeros(50, dtype=torch.long), u, v)
    assert float((ideal.directions @ normal).abs().max()) > 1e-2
    # and distortion survives scaling and subsetting
    assert torch.equal(cams.scaled(0.5).subset([0]).distortion, WIDE_DISTORTION[None])
