import sys
from pathlib import Path

import pytest
import torch

import onefield.renderers
from onefield.cuda_ext import ops
from onefield.renderers import Deferred, OccupancyGrid, march, march_visible, render, render_image, render_rays
from onefield.renderers.marching import FIRST_ROUND
from onefield.scenes import Cameras, orbit_pose, sphere

STEP = 2 * 3**0.5 / 256


def sphere_setup(device, res=32, size=48):
    scene = sphere(radius=0.5, density=200.0)
    grid = OccupancyGrid(scene.aabb, resolution=res).to(device)
    for seed in range(8):  # boundary cells are probed at random points: a few rounds find them all
        grid.update(scene.density, step_size=STEP, generator=torch.Generator(device).manual_seed(seed))
    c2w = orbit_pose(30.0, 20.0, 3.0)
    focal = size * 1.5
    rays = Cameras(c2w[None], focal, focal, size / 2, size / 2, size, size).image_rays(0)
    return scene, grid, rays.origins.to(device), rays.directions.to(device)


def test_sphere_silhouette_matches_geometry(device):
    scene, grid, rays_o, rays_d = sphere_setup(device)
    out = render_image(rays_o, rays_d, grid, scene.rgb_sigma, step_size=STEP, chunk=1000)
    opacity = out["opacity"].cpu()
    o, d = rays_o.cpu(), rays_d.cpu()
    # distance from the sphere centre (origin) to each ray
    closest = torch.linalg.cross(o, d).norm(dim=-1)
    chord = 2 * torch.sqrt((0.25 - closest**2).clamp(min=0))
    expected = 1 - torch.exp(-200.0 * chord)
    inside, outside = closest < 0.5 - 2 * STEP, closest > 0.5 + STEP
    assert inside.sum() > 300 and outside.sum() > 300
    assert torch.all(opacity[outside] == 0)
    assert (opacity[inside] - expected[inside]).abs().max() < 0.05
    # Depth of opaque pixels is the distance to the sphere's front surface, to within a step, when
    # no cell is skipped (a cell the grid missed may hide a sliver of the surface: a grid property).
    out = render_image(rays_o, rays_d, grid.fill_(True), scene.rgb_sigma, step_size=STEP, chunk=1000)
    depth = out["depth"].cpu() / out["opacity"].cpu().clamp(min=1e-6)
    t_hit = (o * -d).sum(-1) - torch.sqrt((0.25 - closest**2).clamp(min=0))
    core = closest < 0.4
    assert (depth[core] - t_hit[core]).abs().max() < 1.5 * STEP


def test_chunked_rendering_equals_one_batch(device):
    scene, grid, rays_o, rays_d = sphere_setup(device, size=24)
    rays_o, rays_d = rays_o.view(24, 24, 3), rays_d.view(24, 24, 3)  # any leading shape works
    small = render_image(rays_o, rays_d, grid, scene.rgb_sigma, step_size=STEP, chunk=37)
    whole = render_image(rays_o, rays_d, grid, scene.rgb_sigma, step_size=STEP, chunk=10**6)
    for key in small:
        assert small[key].shape == whole[key].shape == rays_o.shape[:-1] + small[key].shape[2:]
        torch.testing.assert_close(small[key], whole[key], rtol=0, atol=1e-6)


def test_native_and_reference_pipelines_agree(device, monkeypatch):
    scene, grid, rays_o, rays_d = sphere_setup(device, size=16)
    kwargs = dict(step_size=STEP, background=torch.ones(3, device=device))
    native = render_rays(rays_o.view(-1, 3), rays_d.view(-1, 3), grid, scene.rgb_sigma, **kwargs)
    monkeypatch.setenv("ONEFIELD_KERNELS", "torch")
    ref = render_rays(rays_o.view(-1, 3), rays_d.view(-1, 3), grid, scene.rgb_sigma, **kwargs)
    assert torch.equal(native.samples.t_starts, ref.samples.t_starts)
    torch.testing.assert_close(native.rgb, ref.rgb, rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_field(device):
    _, grid, rays_o, rays_d = sphere_setup(device, size=8)
    density = torch.tensor(5.0, device=device, requires_grad=True)
    color = torch.tensor([0.1, 0.5, 0.9], device=device, requires_grad=True)

    def rgb_sigma(x, d):
        inside = (x.norm(dim=-1) < 0.5).float()
        return color.expand(x.shape[0], 3), density * inside

    out = render_rays(rays_o.view(-1, 3), rays_d.view(-1, 3), grid, rgb_sigma, step_size=STEP,
                      background=torch.zeros(3, device=device))
    out.rgb.sum().backward()
    assert density.grad > 0  # denser sphere, more of its colour over a black background
    assert torch.all(color.grad > 0)


def test_empty_grid_renders_background(device):
    scene, grid, rays_o, rays_d = sphere_setup(device, size=8)
    grid.fill_(False)
    bg = torch.tensor([0.2, 0.3, 0.4], device=device)
    out = render_image(rays_o, rays_d, grid, scene.rgb_sigma, step_size=STEP, background=bg)
    assert torch.all(out["opacity"] == 0) and torch.all(out["samples_per_ray"] == 0)
    assert torch.allclose(out["rgb"], bg.expand_as(out["rgb"]))


def test_cascaded_grid_reaches_far_content(device):
    """A ball outside the base box is still found through the second cascade."""
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, levels=2).to(device)
    density = lambda x: 50.0 * ((x - torch.tensor([1.5, 0.0, 0.0], device=x.device)).norm(dim=-1) < 0.3).float()  # noqa: E731
    for seed in range(8):
        grid.update(density, step_size=0.01, generator=torch.Generator(device).manual_seed(seed))
    o = torch.tensor([[1.5, 0.0, -5.0]], device=device)
    d = torch.tensor([[0.0, 0.0, 1.0]], device=device)
    samples = march(o, d, grid, step_size=0.01)
    assert samples.n_samples > 0
    t_mid = (samples.t_starts + samples.t_ends) / 2
    assert torch.all((t_mid > 4.5) & (t_mid < 5.5))  # only around the ball (cell-sized slack)
    res = render(samples, o, d, lambda x, dd: (torch.ones_like(x), density(x)))
    assert res.opacity.item() > 0.99


def test_wrong_shapes_are_clear_errors(device):
    scene, grid, rays_o, rays_d = sphere_setup(device, size=8)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        march(rays_o.view(8, 8, 3), rays_d.view(8, 8, 3), grid, step_size=STEP)  # [H, W, 3] instead of [N, 3]
    samples = march(rays_o.view(-1, 3), rays_d.view(-1, 3), grid, step_size=STEP)
    with pytest.raises(ValueError, match="rgb_sigma_fn"):
        render(samples, rays_o.view(-1, 3), rays_d.view(-1, 3), lambda x, d: (x, x))
    with pytest.raises(ValueError, match="step_size"):
        march(rays_o.view(-1, 3), rays_d.view(-1, 3), grid, step_size=0.0)


def test_march_respects_near_far_and_max_samples(device):
    scene, grid, rays_o, rays_d = sphere_setup(device, size=8)
    o, d = rays_o.view(-1, 3), rays_d.view(-1, 3)
    s = march(o, d, grid, step_size=STEP, near=2.8, far=3.0, max_samples=5)
    assert torch.all(s.t_starts >= 2.8) and torch.all(s.t_starts < 3.0)
    assert s.packed_info[:, 1].max() <= 5 and s.n_samples > 0


def test_deferred_shading_matches_one_pass_and_shades_only_what_shows(device):
    """Deferred: density everywhere, colour only where the weight exceeds the threshold. The image
    equals the one-pass render to within the skipped weight, far fewer samples are shaded, and
    gradients reach both the density and the colour parameters."""
    scene = sphere(radius=0.5, density=200.0)
    _, grid, rays_o, rays_d = sphere_setup(device, size=32)
    samples = march(rays_o, rays_d, grid.fill_(True), step_size=STEP)
    scale = torch.ones(2, device=device, requires_grad=True)  # [density scale, colour scale]
    shaded = []

    def sigma_fn(x):  # the sphere in a faint fog whose samples weigh less than the threshold
        return (scene.density(x) + 0.005) * scale[0]

    def rgb_fn(x, d):
        shaded.append(x.shape[0])
        return (0.5 + 0.5 * scene.rgb_sigma(x, d)[0]) * scale[1]  # grey where the sphere is not

    def rgb_sigma(x, d):
        return rgb_fn(x, d), sigma_fn(x)

    whole = render(samples, rays_o, rays_d, rgb_sigma)
    deferred = render(samples, rays_o, rays_d, Deferred(sigma_fn, rgb_fn, weight_thresh=1e-4))
    assert shaded[0] == samples.n_samples and 0 < shaded[1] < samples.n_samples / 3
    torch.testing.assert_close(deferred.opacity, whole.opacity, rtol=0, atol=1e-6)
    skipped = (whole.weights * (whole.weights <= 1e-4)).view(-1)
    bound = torch.zeros(rays_o.shape[0], device=device).index_add_(0, samples.ray_indices.long(), skipped)
    assert torch.all((deferred.rgb - whole.rgb).abs().amax(-1) <= bound + 1e-6)
    assert (deferred.rgb - whole.rgb).abs().max() > 1e-5  # the fog was skipped, not shaded
    deferred.rgb.sum().backward()
    assert scale.grad is not None and torch.all(scale.grad.abs() > 0)


# Python calls that read a tensor's value on the host: each is a device sync on a GPU.
HOST_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")
CHECKED = tuple(str(Path(m.__file__).parent) + "/" for m in (ops, onefield.renderers))


def record_host_reads(monkeypatch) -> list[str]:
    """Wrap the host reads of torch.Tensor (and torch.equal); returns the list of 'file:line' of
    every call made from cuda_ext/ or renderers/ from now on (the test's own code is not counted)."""
    calls: list[str] = []

    def wrap(name, original):
        def wrapper(*args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(CHECKED):
                calls.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
            return original(*args, **kwargs)
        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch, "equal", wrap("equal", torch.equal))
    return calls


def training_step(grid, rays_o, rays_d, shade) -> None:
    samples = march(rays_o, rays_d, grid, step_size=STEP)
    render(samples, rays_o, rays_d, shade, background=torch.ones(3, device=rays_o.device)).rgb.sum().backward()


@pytest.mark.parametrize("kernels", ["", "torch"])
@pytest.mark.parametrize("deferred", [False, True])
def test_a_training_step_reads_no_tensor_on_the_host(device, monkeypatch, kernels, deferred):
    """march + render + backward, debug checks off: no .item(), int(), float(), bool(), .tolist() or
    torch.equal in cuda_ext/ or renderers/ (each would stall a GPU step); with ONEFIELD_DEBUG=1 the
    packed-layout check does read back, which shows the recorder sees them. On a GPU, rendering and
    its backward also run under CUDA's sync debug mode (marching syncs once by design: the number
    of samples sizes its output)."""
    monkeypatch.setenv("ONEFIELD_KERNELS", kernels)
    _, grid, rays_o, rays_d = sphere_setup(device, size=8)
    rays_o, rays_d = rays_o.view(-1, 3), rays_d.view(-1, 3)
    density = torch.tensor(200.0, device=device, requires_grad=True)

    def sigma_fn(x):  # the sphere, with no host-device copy of its own
        return (x.norm(dim=-1) < 0.5).to(x.dtype) * density

    def rgb_fn(x, d):
        return torch.sigmoid(x + d)

    shade = Deferred(sigma_fn, rgb_fn) if deferred else lambda x, d: (rgb_fn(x, d), sigma_fn(x))
    calls = record_host_reads(monkeypatch)
    training_step(grid, rays_o, rays_d, shade)
    assert calls == []
    monkeypatch.setenv("ONEFIELD_DEBUG", "1")
    training_step(grid, rays_o, rays_d, shade)
    assert any("ops.py" in c for c in calls)
    if device == "cuda" and not deferred and kernels == "":  # Deferred's nonzero syncs by design
        monkeypatch.delenv("ONEFIELD_DEBUG")
        samples = march(rays_o, rays_d, grid, step_size=STEP)
        torch.cuda.set_sync_debug_mode("error")
        try:
            render(samples, rays_o, rays_d, shade).rgb.sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_marching_on_from_a_sample_continues_one_long_march(device):
    """`t_start` at the t_end of each ray's last sample continues exactly where a longer march goes: the
    rounds of `render_image` see the samples of one march, bit for bit."""
    scene, grid, rays_o, rays_d = sphere_setup(device, size=16)
    whole = march(rays_o, rays_d, grid, step_size=STEP / 4)
    first = march(rays_o, rays_d, grid, step_size=STEP / 4, max_samples=5)
    last = first.packed_info[:, 0] + first.packed_info[:, 1] - 1
    t_start = torch.where(first.packed_info[:, 1] > 0, first.t_ends[last.clamp(min=0)], 1e10)
    rest = march(rays_o, rays_d, grid, step_size=STEP / 4, t_start=t_start)
    assert int(rest.packed_info[:, 1].sum()) > 0
    for r in torch.nonzero(first.packed_info[:, 1] == 5).squeeze(1).tolist():
        (a, b), (e, _), (f, g) = (p[r].tolist() for p in (whole.packed_info, first.packed_info, rest.packed_info))
        assert b == 5 + g
        for key in ("t_starts", "t_ends"):
            joined = torch.cat([getattr(first, key)[e:e + 5], getattr(rest, key)[f:f + g]])
            assert torch.equal(getattr(whole, key)[a:a + b], joined)


@pytest.mark.parametrize("density", [200.0, 4.0])  # opaque: rays stop early; translucent: they cross it
def test_rounds_render_what_one_long_march_renders_with_fewer_samples(device, density):
    scene = sphere(radius=0.5, density=density)
    _, grid, rays_o, rays_d = sphere_setup(device)
    kwargs = dict(step_size=STEP / 2, background=torch.ones(3, device=device))
    long = render_rays(rays_o, rays_d, grid, scene.rgb_sigma, **kwargs)
    rounds = render_image(rays_o, rays_d, grid, scene.rgb_sigma, chunk=1000, **kwargs)
    # a round composites to its own stop: at most t_thresh (1e-4) of weight more than the long render
    torch.testing.assert_close(rounds["rgb"], long.rgb, rtol=0, atol=2e-4)
    torch.testing.assert_close(rounds["opacity"], long.opacity, rtol=0, atol=2e-4)
    torch.testing.assert_close(rounds["depth"], long.depth, rtol=0, atol=2e-4 * 4)
    marched, evaluated = long.samples.packed_info[:, 1], rounds["samples_per_ray"]
    assert torch.all(evaluated <= marched)
    if density == 200.0:  # the opaque sphere stops its rays a few samples in
        assert int(evaluated.sum()) < 0.5 * int(marched.sum())
    else:  # nothing stops: the rounds take every sample
        assert torch.equal(evaluated, marched)
    capped = render_image(rays_o, rays_d, grid, scene.rgb_sigma, chunk=1000, max_samples=11, **kwargs)
    assert int(capped["samples_per_ray"].max()) == 11


def test_the_visibility_pass_keeps_what_a_render_learns_from(device):
    """`march_visible` marches in rounds up to each ray's stop and keeps the samples of a full march
    that a render weighs, no more; what it drops lies behind the opaque sphere, its samples are the march's bit
    for bit, it evaluates a density at under half of the hidden ones, and the image and the gradients
    of the density and colour are those of the full march. A NaN density keeps the samples it reaches,
    so a broken field still reaches the loss."""
    scene = sphere(radius=0.5, density=200.0)
    _, grid, rays_o, rays_d = sphere_setup(device, size=24)
    rays_o, rays_d = rays_o.view(-1, 3), rays_d.view(-1, 3)
    samples = march(rays_o, rays_d, grid.fill_(True), step_size=STEP)
    scale = torch.ones(2, device=device, requires_grad=True)  # [density scale, colour scale]

    def sigma_fn(x):  # the sphere in a faint fog: every sample in front of it has some weight
        return (scene.density(x) + 0.05) * scale[0]

    def rgb_sigma(x, d):
        return (0.5 + 0.5 * scene.rgb_sigma(x, d)[0]) * scale[1], sigma_fn(x)

    rounds, evaluated = march_visible(rays_o, rays_d, grid, sigma_fn, step_size=STEP)
    key = lambda s: s.t_starts + 10 * s.ray_indices  # noqa: E731  [S] sorted: ray by ray, in t order
    in_march = torch.searchsorted(key(samples), key(rounds))
    assert torch.equal(samples.t_starts[in_march], rounds.t_starts) and torch.equal(samples.t_ends[in_march], rounds.t_ends)
    assert torch.equal(rounds.packed_info[:, 0], torch.cumsum(rounds.packed_info[:, 1], 0) - rounds.packed_info[:, 1])
    with torch.no_grad():
        weighed = render(samples, rays_o, rays_d, rgb_sigma).weights != 0  # [S] what a render learns from
    dropped = torch.ones(samples.n_samples, dtype=torch.bool, device=device)
    dropped[in_march] = False
    assert not torch.any(weighed & dropped)
    assert rounds.n_samples == int(weighed.sum()) < evaluated  # none past the global stop either
    hidden = samples.n_samples - int(weighed.sum())
    assert 0.1 * samples.n_samples < hidden and evaluated - int(weighed.sum()) < 0.5 * hidden  # 16 %; 38 %
    # what was dropped lies behind the sphere's front surface, on rays that hit it
    closest = torch.linalg.cross(rays_o, rays_d).norm(dim=-1)  # [N] distance of each ray from the centre
    t_hit = (rays_o * -rays_d).sum(-1) - torch.sqrt((0.25 - closest**2).clamp(min=0))
    ray = samples.ray_indices[dropped]
    assert torch.all(closest[ray] < 0.5) and torch.all(samples.t_starts[dropped] > t_hit[ray] - STEP)
    outputs = []
    for s in (samples, rounds):
        out = render(s, rays_o, rays_d, rgb_sigma, background=torch.ones(3, device=device))
        (grad,) = torch.autograd.grad(out.rgb.square().sum(), scale)
        outputs.append((out.rgb, out.opacity, grad))
    for whole, pruned in zip(*outputs):
        torch.testing.assert_close(pruned, whole, rtol=1e-5, atol=1e-6)
    nan = lambda x: torch.full_like(x[:, 0], float("nan"))  # noqa: E731
    broken, _ = march_visible(rays_o, rays_d, grid, nan, step_size=STEP)
    assert broken.n_samples == int((samples.packed_info[:, 1] > 0).sum()) * FIRST_ROUND  # the first round, all kept
