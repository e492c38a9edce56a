"""The trainer's schedules: learning-rate warm-up and decay, the dynamic ray batch, and training a
multi-cascade (contracted, cone-stepped) scene."""

import math

import pytest
import torch

from onefield import fields
from onefield.app.trainer import Trainer, TrainerConfig
from onefield.renderers import OccupancyGrid, march
from onefield.scenes import read_blender

FIELD = {"n_levels": 8, "log2_table_size": 13, "max_resolution": 128}
TRAINER = dict(render_steps=128, eval_every=0, checkpoint_every=0)


def make_trainer(scene, steps: int, cascades: int = 1, **overrides) -> Trainer:
    train, test = read_blender(scene.root, "train"), read_blender(scene.root, "test")
    model = fields.build("hashgrid", train.aabb, FIELD, cascades=cascades, seed=0)
    grid = OccupancyGrid(train.aabb, 32, levels=cascades)
    return Trainer(model, grid, train, TrainerConfig(steps=steps, **{**TRAINER, **overrides}), test)


def test_learning_rate_warms_up_linearly_then_decays_exponentially(shapes_scene):
    trainer = make_trainer(shapes_scene, steps=200, lr_warmup_steps=20, lr_final_ratio=0.1)
    base = [g["base_lr"] for g in trainer.optimizer.param_groups]
    for step in (0, 9, 19, 50, 100, 199):
        trainer.state.step = step
        trainer._set_lr()
        expected = min(1.0, (step + 1) / 20) * 0.1 ** (step / 200)
        for g, b in zip(trainer.optimizer.param_groups, base):
            assert g["lr"] == pytest.approx(b * expected, rel=1e-12)
    trainer.state.step, trainer.state.lr_scale = 50, 0.5  # a divergence recovery halves it on top
    trainer._set_lr()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(base[0] * 0.5 * 0.1 ** 0.25)


def test_a_time_budget_drives_the_decay(shapes_scene):
    trainer = make_trainer(shapes_scene, steps=10_000, minutes=1.0, lr_warmup_steps=1, lr_final_ratio=0.1)
    trainer.state.step, trainer.state.seconds = 10, 30.0  # half the minute, 0.1 % of the steps
    trainer._set_lr()
    g = trainer.optimizer.param_groups[0]
    assert g["lr"] == pytest.approx(g["base_lr"] * 0.1 ** 0.5)


def test_the_ray_batch_follows_the_sample_budget(shapes_scene):
    target = 4096
    trainer = make_trainer(shapes_scene, steps=60, target_samples=target, init_rays=64, max_rays=1 << 14)
    history = []
    for _ in range(60):
        s = trainer.step()
        history.append((s.rays, s.rays * s.samples_per_ray))
    for (rays, samples), (next_rays, _) in zip(history, history[1:]):  # the update rule, step by step
        expected = min(max(rays * min(target / samples, 4.0), 64.0), float(1 << 14))
        assert abs(next_rays - expected) <= 1.0
    assert history[0][0] == 64 and max(r for r, _ in history) > 4 * 64  # it grew as the grid pruned
    late = [samples for _, samples in history[-20:]]
    assert 0.6 * target < sum(late) / len(late) < 1.5 * target

    capped = make_trainer(shapes_scene, steps=30, target_samples=1 << 16, init_rays=64, max_rays=300)
    assert max(capped.step().rays for _ in range(30)) == 300


def test_multi_cascade_training_contracts_and_steps_with_the_cone(shapes_scene):
    trainer = make_trainer(shapes_scene, steps=400, cascades=3, target_samples=1 << 13, grid_warmup_steps=32)
    assert trainer.cone_angle == max(1 / 256, 1 / float(trainer.cameras.fx.mean()))
    assert make_trainer(shapes_scene, steps=1).cone_angle == 0.0  # one cascade: a bounded scene, constant steps
    # a ray through the whole scene: steps grow with distance once t * cone_angle exceeds the base step
    o, d = trainer.cameras.c2w[:1, :, 3], torch.nn.functional.normalize(-trainer.cameras.c2w[:1, :, 3], dim=-1)
    s = march(o, d, trainer.grid, step_size=trainer.step_size, cone_angle=trainer.cone_angle, max_samples=100_000)
    dt = s.t_ends - s.t_starts
    expected = torch.clamp(s.t_starts * trainer.cone_angle, min=trainer.step_size)
    torch.testing.assert_close(dt, expected, rtol=1e-5, atol=1e-7)
    assert float(dt.max()) > 2 * trainer.step_size and float(s.t_ends.max()) > 2 * float(o.norm())  # beyond the box
    before = trainer.evaluate().mean_psnr
    for _ in trainer.iterate():
        pass
    after = trainer.evaluate().mean_psnr
    assert before < 15 and after > 20, (before, after)
    outer = trainer.grid.binary()[1:]  # the outer cascades were pruned too, not left all occupied
    assert float(outer.float().mean()) < 0.5
    assert math.isfinite(trainer.state.loss)
