"""The `splats` backend's own contract: density / colour as a volume (against a brute-force sum),
renders that agree with the volume view, densification that keeps the optimizer consistent, and
checkpoints of a grown model."""

import math

import pytest
import torch

from onefield import fields
from onefield.app.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec, RunConfig
from onefield.app.splat_strategy import ADC, MCMC, _edit
from onefield.app.trainer import TrainerConfig
from onefield.cuda_ext.splat_reference import sh_basis
from onefield.errors import UserError
from onefield.fields.splats import BOX_SIGMAS, GaussianSplats, SplatsConfig, quat_rotation
from onefield.scenes import Cameras
from onefield.scenes.rays import look_at


def random_splats(n: int = 300, seed: int = 0, **config) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    model = GaussianSplats(SplatsConfig(**config), [-1.0] * 3 + [1.0] * 3)
    model.initialise(torch.rand(n, 3, generator=g) * 1.6 - 0.8, torch.rand(n, 3, generator=g))
    with torch.no_grad():
        model.log_scales.data = (torch.rand(n, 3, generator=g) * 0.08 + 0.01).log()
        model.quats.data = torch.randn(n, 4, generator=g)
        model.opacity_logits.data = torch.randn(n, generator=g)
        model.shN.data = torch.randn_like(model.shN) * 0.2
    return model


def brute_force(model: GaussianSplats, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every Gaussian against every point, masked to the 3-sigma boxes."""
    rot, s = quat_rotation(model.quats), model.scales
    cov = rot @ torch.diag_embed(s * s) @ rot.transpose(1, 2)
    delta = x[:, None] - model.means[None]  # [M, N, 3]
    # |S^-1 R^T delta|^2 in float64, no inverse: a covariance of scales 1e-3 and 1 loses its thin axis in float32
    local = torch.einsum("mni,nij->mnj", delta.double(), rot.double()) / s.double()[None]
    q = (local * local).sum(-1).float()
    half = BOX_SIGMAS * torch.diagonal(cov, dim1=1, dim2=2).sqrt()
    torch.testing.assert_close(half, model._boxes()[1])
    # the box test in the model's own float operations: a point on a face must not fall on the other side
    # through rounding (a thin Gaussian seen edge-on is still dense there)
    half = model._boxes()[1]
    inside = ((x[:, None] >= (model.means - half)[None]) & (x[:, None] <= (model.means + half)[None])).all(-1)
    peak = -torch.log(1 - model.opacities.clamp(max=0.99)) / (math.sqrt(2 * math.pi) * s.amin(-1))
    w = peak * torch.exp(-0.5 * q) * inside
    basis = sh_basis(d, model.config.sh_degree)  # [M, K]: every Gaussian seen along the query's direction
    rgb = (torch.einsum("mk,nkc->mnc", basis, model.sh) + 0.5).clamp(min=0)
    return w.sum(1), ((w[..., None] * rgb).sum(1) / w.sum(1).clamp(min=1e-10)[:, None]).clamp(0, 1)


def test_density_and_colour_equal_the_sum_over_every_gaussian():
    model = random_splats()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 3, generator=g) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(400, 3, generator=g), dim=-1)
    with torch.no_grad():
        sigma, rgb = model(x, d)
        expected_sigma, expected_rgb = brute_force(model, x, d)
    assert int((expected_sigma > 0).sum()) > 100  # most points lie in some box
    torch.testing.assert_close(sigma, expected_sigma, rtol=1e-4, atol=1e-5)
    hit = expected_sigma > 1e-3
    torch.testing.assert_close(rgb[hit], expected_rgb[hit], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.density(x), sigma)
    torch.testing.assert_close(model.color_at(x, d), rgb)


def test_density_is_differentiable_for_distillation():
    model = random_splats(50)
    x = model.means.detach()[:20] + 0.01
    model.density(x).sum().backward()
    for name in ("means", "log_scales", "quats", "opacity_logits"):
        assert getattr(model, name).grad.abs().sum() > 0, name


def test_a_thin_gaussian_seen_face_on_renders_its_opacity_as_a_volume():
    """The density's scale: a ray along the thinnest axis through the centre collects -log(1 - opacity), but
    for the tails beyond the 3-sigma box."""
    model = GaussianSplats(SplatsConfig(sh_degree=0), [-1.0] * 3 + [1.0] * 3)
    model.initialise(torch.zeros(1, 3), torch.full((1, 3), 0.8), opacity=0.7)
    model.log_scales.data = torch.tensor([[0.2, 0.3, 0.01]]).log()
    t = torch.linspace(-0.05, 0.05, 2001)
    x = torch.stack([torch.zeros_like(t), torch.zeros_like(t), t], -1)
    with torch.no_grad():
        optical_depth = float(torch.trapezoid(model.density(x), t))
    assert optical_depth == pytest.approx(-math.log(1 - 0.7) * math.erf(BOX_SIGMAS / math.sqrt(2)), rel=1e-4)


def test_render_agrees_with_the_volume_view():
    """One opaque Gaussian in front of the camera: the rasterized opacity, colour and depth at its centre
    pixel (its mean projects onto that pixel's centre) match its opacity, colour and distance."""
    model = GaussianSplats(SplatsConfig(sh_degree=0), [-1.0] * 3 + [1.0] * 3)
    model.initialise(torch.tensor([[0.1, 0.0, 0.0]]), torch.tensor([[0.2, 0.6, 0.9]]), opacity=0.9)
    model.log_scales.data = torch.full((1, 3), 0.1).log()
    c2w = look_at([0.1, 3.0, 0.0], [0.1, 0.0, 0.0])[None]
    cams = Cameras(c2w, torch.tensor([60.0]), torch.tensor([60.0]), torch.tensor([32.5]), torch.tensor([32.5]), 64, 64)
    with torch.no_grad():
        out = model.render(cams, 0, torch.ones(3))
    assert float(out.opacity[32, 32]) == pytest.approx(0.9, abs=1e-3)
    torch.testing.assert_close(out.rgb[32, 32], torch.tensor([0.2, 0.6, 0.9]) * 0.9 + 0.1, atol=2e-3, rtol=0)
    assert float(out.depth[32, 32] / out.opacity[32, 32]) == pytest.approx(3.0, abs=1e-3)


def _optimized(model: GaussianSplats) -> torch.optim.Adam:
    opt = torch.optim.Adam(model.param_groups())
    loss = sum(getattr(model, n).square().sum() for n in GaussianSplats.PARAMETERS)
    loss.backward()
    opt.step()
    return opt


def test_edits_keep_adams_moments_aligned_with_their_gaussians():
    model = random_splats(10)
    opt = _optimized(model)
    before = opt.state[model.means]["exp_avg"].clone()
    keep = torch.tensor([True, False] * 5)
    new = {n: getattr(model, n).data[:2].clone() for n in GaussianSplats.PARAMETERS}
    _edit(model, opt, keep, new, zero=torch.tensor([0]))
    assert len(model) == 7
    for name in GaussianSplats.PARAMETERS:
        assert opt.state[getattr(model, name)]["exp_avg"].shape == getattr(model, name).shape
    moments = opt.state[model.means]["exp_avg"]
    assert torch.equal(moments[0], torch.zeros(3)) and torch.equal(moments[1:5], before[0::2][1:])
    assert torch.equal(moments[5:], torch.zeros(2, 3))
    _optimized(model)  # Adam steps on the edited tensors


def test_mcmc_relocation_keeps_the_opacity_of_the_copies_together():
    """N copies of opacity o' stacked composite to the original o: 1 - (1 - o')^N = o; one copy is itself."""
    mcmc = MCMC(SplatsConfig())
    o = torch.tensor([0.3, 0.6, 0.9, 0.5])
    s = torch.rand(4, 3) + 0.1
    copies = torch.tensor([1, 2, 3, 8])
    new_o, new_s = mcmc._relocation(o, s, copies)
    torch.testing.assert_close(1 - (1 - new_o) ** copies, o)
    torch.testing.assert_close(new_o[0], o[0])
    torch.testing.assert_close(new_s[0], s[0])
    assert bool((new_s[1:] < s[1:]).all())  # the copies shrink


def test_mcmc_grows_by_five_percent_up_to_the_budget_and_moves_dead_gaussians():
    model = random_splats(100, max_gaussians=103)
    opt = _optimized(model)
    model.opacity_logits.data[:10] = -20.0  # dead
    g = torch.Generator().manual_seed(0)
    assert MCMC(model.config).after_step(model, opt, 100, True, 1e-4, g)
    assert len(model) == 103
    assert float(model.opacities.detach().min()) >= model.config.prune_opacity
    for name in GaussianSplats.PARAMETERS:
        assert opt.state[getattr(model, name)]["exp_avg"].shape == getattr(model, name).shape


def test_adc_clones_small_splits_large_and_prunes_faint():
    model = random_splats(6, grow_scale3d=0.05)
    model.set_extent(1.0)
    opt = _optimized(model)
    model.log_scales.data[:3] = math.log(0.01)  # small: cloned
    model.log_scales.data[3:] = math.log(0.2)  # large: split
    model.opacity_logits.data[:] = 2.0
    model.opacity_logits.data[5] = -10.0  # faint: pruned (after its split copies are made, they are faint too)
    adc = ADC(model.config)
    means2d = torch.zeros(6, 2, requires_grad=True)
    (means2d * torch.tensor([1.0, 0.0])).sum().backward()  # |grad| = 1 / (W / 2) for every Gaussian
    adc.after_backward(model, means2d, torch.ones(6, 2, dtype=torch.int32), 2, 2)
    g = torch.Generator().manual_seed(0)
    means = model.means.data.clone()
    assert adc.after_step(model, opt, 100, True, 1e-4, g)
    # 3 small kept + 3 clones, 2 large split into 4 (originals removed), the faint one's copies pruned
    assert len(model) == 3 + 3 + 4
    torch.testing.assert_close(model.means.data[:3], means[:3])
    torch.testing.assert_close(model.scales[-4:], torch.full((4, 3), 0.2 / 1.6))
    assert adc.grad2d.shape == (10,) and float(adc.grad2d.sum()) == 0


@pytest.mark.parametrize("strategy", ["mcmc", "adc"])
def test_a_grown_model_checkpoints_and_resumes(strategy, shapes_scene, tmp_path):
    config = TrainerConfig(steps=24, eval_every=0, checkpoint_every=0)
    splats = {"init_count": 300, "max_gaussians": 2000, "refine_start": 4, "refine_every": 4, "strategy": strategy,
              "grow_grad2d": 1e-6, "sh_degree": 1, "sh_degree_every": 8}
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "splats", splats, config, tmp_path)
    for _ in job.trainer.iterate():
        pass
    trained = job.trainer
    assert len(trained.model) != 300  # the strategy changed the count
    save_checkpoint(job.run_dir, trained)
    resumed = FitJob.resume(job.run_dir, steps=30).trainer
    assert len(resumed.model) == len(trained.model) and resumed.state.step == 24
    for name in GaussianSplats.PARAMETERS:
        assert torch.equal(getattr(resumed.model, name), getattr(trained.model, name))
        assert torch.equal(resumed.optimizer.state[getattr(resumed.model, name)]["exp_avg_sq"],
                           trained.optimizer.state[getattr(trained.model, name)]["exp_avg_sq"])
    for key, value in trained.strategy.state_dict().items():
        assert torch.equal(resumed.strategy.state_dict()[key], value)
    assert torch.equal(resumed.generator.get_state(), trained.generator.get_state())
    assert torch.equal(resumed.grid.bitfield, trained.grid.bitfield)
    for _ in resumed.iterate():
        pass
    assert resumed.state.step == 30 and resumed.sh_degree == 1


def test_splats_refuse_what_the_rasterizer_cannot_do(shapes_scene, tmp_path):
    with pytest.raises(UserError, match="refine camera poses"):
        FitJob.create(DataSpec(str(shapes_scene.root)), "splats", {}, TrainerConfig(refine_poses=True), tmp_path)
    with pytest.raises(UserError, match="--trainer.sampler proposal does not apply"):
        FitJob.create(DataSpec(str(shapes_scene.root)), "splats", {}, TrainerConfig(sampler="proposal"), tmp_path)
    with pytest.raises(UserError, match="sh_degree"):
        fields.build("splats", [-1.0] * 3 + [1.0] * 3, {"sh_degree": 4})


def test_photos_with_lens_distortion_are_resampled_for_splats(data_root, tmp_path):
    """instant-ngp's fox has OPENCV distortion: a splat run loads its photos resampled to pinholes and
    records it in config.json, so eval, render and export reload the same images; volumes keep the lens."""
    spec = DataSpec(str(data_root / "ingp-fox"), downscale=16)
    job = FitJob.create(spec, "splats", {}, TrainerConfig(steps=1), tmp_path)
    train, held_out = job.trainer.train_data, job.trainer.held_out
    assert job.config.data.undistort and not train.cameras.distorted and not held_out.cameras.distorted
    reloaded, reloaded_held_out, _ = RunConfig.load(job.run_dir).data.load()
    assert torch.equal(reloaded.images, train.images) and torch.equal(reloaded_held_out.images, held_out.images)
    raw, _, _ = spec.load()
    assert raw.cameras.distorted and not torch.equal(raw.images, train.images)
    assert float((raw.cameras.fx - train.cameras.fx).abs().max()) > 0.1  # the pinholes see a cropped view


def test_gaussians_start_on_a_fitted_volume(fitted_shapes, shapes_scene, tmp_path):
    """init_from: points drawn from a hash-grid run's density lie on the scene's surfaces (random points in
    its box do not), coloured by its field; the first step trains from them."""
    import trimesh

    splats = {"init_from": str(fitted_shapes.run_dir), "init_count": 2000}
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "splats", splats, TrainerConfig(steps=2, eval_every=0), tmp_path)
    points, colors = job.trainer.initial_points()
    assert points.shape == (2000, 3) and colors.shape == (2000, 3)
    from scipy.spatial import cKDTree

    surface = trimesh.load(shapes_scene.mesh_path)
    diagonal = float(torch.tensor(surface.extents).norm())
    tree = cKDTree(trimesh.sample.sample_surface(surface, 200_000)[0])
    near = lambda p: float(torch.tensor(tree.query(p.numpy())[0]).median())  # noqa: E731  median distance
    assert near(points) < 0.02 * diagonal
    assert near(torch.rand(2000, 3) * 2.4 - 1.2) > 2 * near(points)
    assert float(colors.std(0).mean()) > 0.05  # the shapes' colours, not one grey
    job.trainer.step()
    assert len(job.trainer.model) == 2000
    save_checkpoint(job.run_dir, job.trainer)
    other = FitJob.create(DataSpec(str(shapes_scene.root)), "splats", {"init_from": str(job.run_dir)},
                          TrainerConfig(steps=1), tmp_path)
    with pytest.raises(UserError, match="takes a volumetric run"):
        other.trainer.initial_points()


def test_density_holds_with_gaussians_of_every_size(monkeypatch):
    """Scales over three orders of magnitude (an unbounded capture: fine Gaussians on the object, huge
    ones far away), in small chunks of pairs: still the brute-force sum."""
    monkeypatch.setattr("onefield.fields.splats.PAIR_CHUNK", 4096)
    model = random_splats(200, seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model.log_scales.data = torch.rand(200, 3, generator=g) * math.log(1000) + math.log(1e-3)
    x = torch.rand(300, 3, generator=g) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1)
    with torch.no_grad():
        sigma, _ = model(x, d)
        expected, _ = brute_force(model, x, d)
    torch.testing.assert_close(sigma, expected, rtol=1e-4, atol=1e-5)


def test_the_grid_of_a_splat_run_is_their_density_at_the_cell_centres(shapes_scene, tmp_path, monkeypatch):
    """What the exporters read: every cell's estimate is sigma x step at its centre (a Gaussian larger
    than the whole box reaches every cell), at least 1 in the cells holding a visible Gaussian's mean and
    their neighbours (thin Gaussians have no density at a centre), in chunks of centres; excluded cells
    stay excluded."""
    monkeypatch.setattr("onefield.app.splat_trainer.REFRESH_CHUNK", 1000)
    config = TrainerConfig(steps=4, eval_every=0, checkpoint_every=0)
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "splats", {"init_count": 300}, config, tmp_path)
    for _ in job.trainer.iterate():
        pass
    trainer, grid = job.trainer, job.trainer.grid
    with torch.no_grad():
        trainer.model.log_scales.data[0] = torch.full((3,), math.log(5.0))
    excluded = grid.occs < 0
    trainer.refresh_grid()
    centres = grid.cell_points(torch.arange(grid.n_cells), torch.full((grid.n_cells, 3), 0.5))
    with torch.no_grad():
        expected = trainer.model.density(centres) * trainer.step_size
    assert float(expected.min()) > 0
    m = trainer.model
    held = grid.holding(m.means[m.opacities >= m.config.prune_opacity].detach()).flatten()
    assert 0 < float(held.float().mean()) < 1
    expected = torch.where(held, expected.clamp(min=1.0), expected)
    torch.testing.assert_close(grid.occs[~excluded], expected[~excluded])
    assert bool((grid.occs[excluded] < 0).all())
    assert 0 < trainer.state.occupied_fraction == grid.occupied_fraction()
