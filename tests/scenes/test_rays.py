import pytest
import torch

from onefield.scenes import look_at, orbit_pose, pinhole_rays, sphere


def test_look_at_is_opencv_convention():
    c2w = look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    right, down, forward, eye = c2w.T
    assert forward.tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert right.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert down.tolist() == pytest.approx([0.0, 0.0, -1.0])  # image y points down, world z up
    assert eye.tolist() == [0.0, -3.0, 0.0]
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))


def test_pinhole_rays_geometry():
    c2w = orbit_pose(45.0, 30.0, 4.0)
    o, d = pinhole_rays(c2w, 50.0, 50.0, 20.0, 15.0, 40, 30)
    assert o.shape == d.shape == (30, 40, 3)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(30, 40))
    torch.testing.assert_close(o[0, 0], c2w[:, 3])
    # the centre of the image looks at the orbit target (the origin)
    centre = (d[14, 19] + d[14, 20] + d[15, 19] + d[15, 20]) / 4
    torch.testing.assert_close(torch.nn.functional.normalize(centre, dim=0), -c2w[:, 3] / 4.0, atol=1e-4, rtol=0)
    # moving right in the image moves along the camera's x axis
    assert float((d[15, 39] - d[15, 0]) @ c2w[:, 0]) > 0


def test_procedural_sphere_density_is_hard_edged():
    scene = sphere(radius=0.5, density=7.0)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.49, 0.0, 0.0], [0.51, 0.0, 0.0]])
    assert scene.density(x).tolist() == [7.0, 7.0, 0.0]
    rgb, sigma = scene.rgb_sigma(x, torch.zeros_like(x))
    assert rgb.shape == (3, 3) and torch.all((rgb >= 0) & (rgb <= 1)) and sigma.tolist() == [7.0, 7.0, 0.0]
