"""Every registered backend, through the same tests: CLI fit, learning a tiny scene, and a
save/load round trip (including fields whose tensors grew during training)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import trimesh

from onefield import fields
from onefield.app.checkpoint import save_checkpoint
from onefield.app.cli import main
from onefield.app.export import extract
from onefield.app.mesh_config import MeshExportConfig
from onefield.app.mesh_metrics import score_mesh
from onefield.app import runs
from onefield.app.runs import load_trained
from onefield.app.trainer import Trainer, TrainerConfig
from onefield.errors import UserError
from onefield.fields import base
from onefield.renderers import OccupancyGrid
from onefield.scenes import read_blender

from backend_configs import MESH_F_FLOOR, PSNR_FLOOR, SMALL, cli_options

TRAINER = dict(target_samples=1 << 12, render_steps=256, eval_every=0, checkpoint_every=0)


def make_trainer(scene, name: str, steps: int, **overrides) -> Trainer:
    train, test = read_blender(scene.root, "train"), read_blender(scene.root, "test")
    model = fields.build(name, train.aabb, SMALL[name])
    return runs.make_trainer(model, OccupancyGrid(train.aabb, 64), train,
                             TrainerConfig(steps=steps, **{**TRAINER, **overrides}), test)


def test_every_backend_has_a_small_config():
    assert set(SMALL) == set(fields.names()) == set(PSNR_FLOOR) == set(MESH_F_FLOOR)


@pytest.mark.parametrize("name", fields.names())
def test_cli_fits_every_backend(name, shapes_scene, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["fit", str(shapes_scene.root), "--field", name, "--steps", "6", "--out", str(out),
            "--trainer.target-samples", "4096", "--trainer.grid-warmup-steps", "2", "--trainer.grid-update-every", "2",
            *cli_options(name)]
    assert main(args) == 0, capsys.readouterr().err
    run = next((out / shapes_scene.root.name / name).iterdir())
    assert (run / "checkpoints" / "latest" / "model.safetensors").is_file()
    assert "held-out PSNR" in capsys.readouterr().out
    assert main(["eval", str(run)]) == 0


@pytest.mark.parametrize("name", fields.names())
def test_every_backend_learns_the_tiny_scene_and_exports_its_surface(name, shapes_scene):
    """600 steps of 4096 samples on 24 views at 40x40 (13-22 s each on 2 cores) from a blank field, then a 64^3
    marching-cubes mesh through the exporter, scored against the scene's ground truth."""
    torch.manual_seed(0)
    trainer = make_trainer(shapes_scene, name, 600)
    for _ in trainer.iterate():
        pass
    result = trainer.evaluate()
    assert result.mean_psnr > PSNR_FLOOR[name], result.psnr
    mesh, _ = extract(trainer, MeshExportConfig(resolution=64), {})
    surface = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles))
    score = score_mesh(surface, trimesh.load(shapes_scene.mesh_path), n_points=20_000)
    assert score.fscore["1%"] > MESH_F_FLOOR[name], score.fscore


@pytest.mark.parametrize("name", fields.names())
def test_save_load_round_trip(name, shapes_scene, tmp_path):
    """A checkpoint taken after the schedule upsampled / shrank / grew the rank loads into a freshly
    built field (from config.json alone) that answers exactly like the trained one."""
    from onefield.app.fit import FitJob
    from onefield.app.runs import DataSpec

    config = TrainerConfig(steps=40, grid_warmup_steps=8, grid_update_every=2, **TRAINER)  # grid read from step 24
    job = FitJob.create(DataSpec(str(shapes_scene.root)), name, SMALL[name], config, tmp_path)
    for _ in job.trainer.iterate():
        pass
    save_checkpoint(job.run_dir, job.trainer)
    _, model, grid = load_trained(job.run_dir)
    trained = job.trainer.model.eval()
    x = torch.rand(256, 3) * 2.4 - 1.2
    d = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1)
    with torch.no_grad():
        for a, b in zip(trained(x, d), model.eval()(x, d)):
            assert torch.equal(a, b)
    assert torch.equal(grid.bitfield, job.trainer.grid.bitfield)
    if hasattr(trained, "resolution"):  # shrunk to the object, then upsampled to resolution_final^3 voxels
        final = SMALL[name]["resolution_final"]
        assert model.resolution() == trained.resolution()
        assert float(trained.region[3:].sub(trained.region[:3]).prod()) < 0.9  # the box shrank...
        assert math.prod(trained.resolution()) > 0.8 * final**3  # ...and the factors grew
    if hasattr(trained, "n_tensors"):
        assert model.n_tensors() == trained.n_tensors() and trained.n_tensors()[1] > 0  # tensors were placed


VOLUMES = [name for name in fields.names() if fields.registry.field_class(name).kind == "volume"]


@pytest.mark.parametrize("name", VOLUMES)
def test_deferred_colour_equals_colour_of_raw_features(name):
    """`color_at` (the deferred-shading path) answers exactly like `color(raw(x)[1], d)`, and a random
    field's density equals exp of its raw logit inside the box."""
    torch.manual_seed(0)
    model = fields.build(name, [-1.0] * 3 + [1.0] * 3, SMALL[name]).eval()
    x = torch.rand(512, 3) * 1.8 - 0.9
    d = torch.nn.functional.normalize(torch.randn(512, 3), dim=-1)
    with torch.no_grad():
        logit, feat = model.raw(x)
        torch.testing.assert_close(model.color_at(x, d), model.color(feat, d), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.density(x), torch.exp(logit), rtol=1e-5, atol=0)


HEADED = [name for name in VOLUMES if any(f.name == "precision" for f in dataclasses.fields(fields.config_class(name)))]


@pytest.mark.parametrize("name", HEADED)
def test_bfloat16_products_stay_close_to_float32_and_auto_follows_the_cpu(name, monkeypatch):
    """The backends on `DensityColorHead` (found through the registry): bfloat16 products give float32
    outputs within bf16's rounding of float32's and gradients in the same direction; `auto` is bfloat16
    exactly on a CPU that multiplies bf16 natively and float32 exactly elsewhere."""
    assert {"hashgrid", "triplane", "finr"} <= set(HEADED)
    x = torch.rand(2001, 3) * 1.8 - 0.9  # not a padded size: bf16 rows are padded to 2048
    d = torch.nn.functional.normalize(torch.randn(2001, 3), dim=-1)

    def run(precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = fields.build(name, [-1.0] * 3 + [1.0] * 3, {**SMALL[name], "precision": precision})
        sigma, rgb = model(x, d)
        assert sigma.dtype == rgb.dtype == torch.float32
        (sigma.mean() + rgb.mean()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return sigma.detach(), rgb.detach(), grads

    sigma32, rgb32, grad32 = run("float32")
    sigma16, rgb16, grad16 = run("bfloat16")
    assert not torch.equal(rgb16, rgb32)  # the products did run in bf16
    torch.testing.assert_close(rgb16, rgb32, rtol=0, atol=1e-2)
    torch.testing.assert_close(sigma16.log(), sigma32.log(), rtol=0, atol=5e-2)
    assert float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)) > 0.99
    for native, same_as in ((True, rgb16), (False, rgb32)):
        monkeypatch.setattr(base, "cpu_has_bf16", lambda native=native: native)
        assert torch.equal(run("auto")[1], same_as)
    with pytest.raises(UserError, match="precision must be auto, float32 or bfloat16, got 'half'"):
        fields.build(name, [-1.0] * 3 + [1.0] * 3, {**SMALL[name], "precision": "half"})
