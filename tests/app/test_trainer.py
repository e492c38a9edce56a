import dataclasses
import json
import math

import pytest
import torch

from onefield import fields
from onefield.errors import UserError
from onefield.app.checkpoint import load_checkpoint, model_tensors, save_checkpoint
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec, RunConfig, load_trained
from onefield.app.trainer import VISIBILITY_PAYS, Trainer, TrainerConfig, TrainingDiverged
from onefield.renderers import OccupancyGrid, march
from onefield.scenes import read_blender

from conftest import SHAPES_FIELD as TINY_FIELD, SHAPES_TRAINER as TINY_TRAINER


def make_trainer(scene, steps=600, **overrides) -> Trainer:
    train = read_blender(scene.root, "train")
    test = read_blender(scene.root, "test")
    model = fields.build("hashgrid", train.aabb, TINY_FIELD)
    config = TrainerConfig(steps=steps, **{**TINY_TRAINER, **overrides})
    return Trainer(model, OccupancyGrid(train.aabb, 64), train, config, test)


def test_tiny_scene_is_learned(shapes_scene, fitted_shapes):
    """600 steps (about 20 s on 2 cores) take the held-out views from a blank field to > 24.5 dB
    (26.1 dB measured with carving): fails if marching, rendering, the loss or the optimizer breaks."""
    assert make_trainer(shapes_scene).evaluate().mean_psnr < 15  # the same trainer before its first step
    trainer = fitted_shapes.trainer
    after = trainer.evaluate()
    assert after.mean_psnr > 24.5, after.psnr
    assert after.mean_ssim > 0.8
    s = trainer.state
    assert s.done and s.step == 600 and s.total_rays > 600 * 64
    assert 0.01 < s.occupied_fraction < 0.5  # the grid pruned empty space
    assert after.images[0].shape == (40, 40, 3) and s.preview is not None


def test_coarse_images_come_first_then_full_resolution(shapes_scene):
    """Until `coarse_images` of the budget a ray passes through the centre of a half-resolution pixel and
    its target is the mean of the 2x2 pixels there; afterwards through full-resolution pixel centres."""
    trainer = make_trainer(shapes_scene, steps=100, coarse_images=0.5, random_background=False)
    rgba = trainer.images.float() / 255.0  # [N, 40, 40, 4] premultiplied
    for step, factor in ((49, 2), (50, 1)):
        trainer.state.step = step
        origins, directions, _, target, image = trainer._batch(200)
        uv = torch.cat([trainer.cameras.project((origins + directions)[k:k + 1], int(image[k]))[0] for k in range(200)])
        pixel = torch.floor(uv / factor).long()  # [R, 2] in the images of this phase
        torch.testing.assert_close(uv, (pixel + 0.5) * factor, rtol=0, atol=1e-3)  # through its centre
        blocks = torch.stack([rgba[i, v * factor:(v + 1) * factor, u * factor:(u + 1) * factor].mean((0, 1))
                              for i, (u, v) in zip(image.tolist(), pixel.tolist())])  # [R, 4]
        expected = blocks[:, :3] + 1.0 - blocks[:, 3:]  # on white
        torch.testing.assert_close(target, expected, rtol=0, atol=1.5 / 255)  # the half images are uint8 too
    with pytest.raises(UserError, match="coarse_images"):
        make_trainer(shapes_scene, coarse_images=1.0)


@pytest.mark.parametrize("ratio", [1e9, 0.1])
def test_grid_refresh_probes_within_its_budget(shapes_scene, ratio):
    """Past the full refreshes, one probes min(1/16 of the cells, grid_probes_per_sample / 2 per sample
    the steps since the last refresh aim for) uniform cells, and as many occupied ones."""
    trainer = make_trainer(shapes_scene, carve=False, grid_probes_per_sample=ratio)
    c = trainer.config
    probed = []
    density = trainer.model.density
    trainer.model.density = lambda x: (probed.append(x.shape[0]), density(x))[1]
    trainer.state.step = c.grid_warmup_steps + 2 * trainer.grid_update_every  # the first partial refresh
    trainer._update_grid()
    uniform = min(trainer.grid.n_cells // 16, int(ratio / 2 * c.grid_update_every * c.target_samples))
    assert sum(probed) == 2 * uniform  # every cell is occupied in a new grid: as many occupied draws
    assert uniform == (16384 if ratio > 1 else 6553)
    # a carved grid (half of it excluded) draws twice as many uniform cells for the same cost
    trainer.grid.exclude_(torch.arange(trainer.grid.n_cells) % 2 == 0)
    probed.clear()
    occupied = int(trainer.grid.binary().sum())
    trainer._update_grid()
    drawn = min(trainer.grid.n_cells // 16, int(ratio / 2 * c.grid_update_every * c.target_samples / 0.5))
    assert drawn == (16384 if ratio > 1 else 13107)
    assert abs(sum(probed) - (drawn / 2 + min(drawn, occupied))) < 0.05 * drawn  # ~half the uniform draws land


def test_training_starts_from_the_visual_hull_of_the_masks(shapes_scene):
    carved, whole = make_trainer(shapes_scene, steps=10), make_trainer(shapes_scene, steps=10, carve=False)
    carved.step()
    whole.step()
    assert whole.grid.excluded_fraction() == 0.0 and whole.state.occupied_fraction == 1.0
    assert 0.5 < carved.grid.excluded_fraction() < 1.0
    assert carved.state.samples_per_ray < whole.state.samples_per_ray / 3
    # no training ray that shows the object lost its samples
    images, cams = carved.train_data.images, carved.train_data.cameras
    opaque = torch.nonzero(images[..., 3].flatten() > 127).flatten()
    n, h, w = images.shape[:3]
    rays = cams.rays(opaque // (h * w), opaque % w, (opaque // w) % h)
    samples = march(rays.origins, rays.directions, carved.grid, step_size=carved.step_size, near=cams.near, far=cams.far)
    assert bool((samples.packed_info[:, 1] > 0).all())


def test_masks_that_contradict_the_poses_warn_and_train_on_the_whole_box(shapes_scene):
    trainer = make_trainer(shapes_scene, steps=10)
    trainer.train_data.images[..., 3] = 0  # every view says "nothing here"
    trainer.images = trainer.train_data.images
    with pytest.warns(UserWarning, match="masks .* and the camera poses disagree"):
        trainer.step()
    assert trainer.grid.excluded_fraction() == 0.0


@pytest.mark.parametrize("options", [{}, {"sampler": "proposal", "refine_poses": True, "appearance": True}],
                         ids=["grid", "proposal-poses-colors"])
def test_resumed_training_matches_uninterrupted(shapes_scene, tmp_path, options):
    learned = {"proposal", "poses", "colors"} if options else {"occupancy"}
    options = {**options, "grid_warmup_steps": 16, "grid_update_every": 4}  # proposals refresh every 16
    straight = make_trainer(shapes_scene, steps=40, **options)
    for _ in range(20):
        straight.step()
    save_checkpoint(tmp_path, straight)
    expected = [straight.step().loss for _ in range(14)]  # steps 20..33 cross the grid refresh at 32

    resumed = make_trainer(shapes_scene, steps=40, **options)
    load_checkpoint(tmp_path, resumed)
    assert resumed.state.step == 20
    got = [resumed.step().loss for _ in range(14)]
    assert got == expected  # bit-exact: same rays, backgrounds, weights and Adam moments
    saved, restored = model_tensors(straight), model_tensors(resumed)
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert {k.split(".")[0] for k in saved} >= learned


def test_a_checkpoint_with_modules_the_config_lacks_is_refused(shapes_scene, tmp_path):
    trainer = make_trainer(shapes_scene, steps=4, sampler="proposal", refine_poses=True)
    trainer.step()
    save_checkpoint(tmp_path, trainer)
    with pytest.raises(UserError, match="holds poses, proposal weights that the trainer settings"):
        load_checkpoint(tmp_path, make_trainer(shapes_scene, steps=4))


def test_nan_loss_restores_the_last_good_state(shapes_scene):
    trainer = make_trainer(shapes_scene, steps=100, max_recoveries=1)
    for _ in range(5):
        trainer.step()
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._remember_good()
    with torch.no_grad():
        trainer.model.head.density_mlp[0].weight.fill_(float("nan"))
    trainer.step()
    assert trainer.state.recoveries == 1 and trainer.state.lr_scale == 0.5
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, good[k]), k
    trainer.step()
    assert math.isfinite(trainer.state.loss)
    with torch.no_grad():
        trainer.model.head.density_mlp[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="Lower the learning rates"):
        trainer.step()
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())


def test_interrupted_fit_keeps_a_checkpoint_and_resumes(shapes_scene, tmp_path):
    field = fields.make_config("hashgrid", TINY_FIELD)
    job = FitJob.create(DataSpec(str(shapes_scene.root)), "hashgrid", field,
                        TrainerConfig(steps=30, **TINY_TRAINER), tmp_path / "runs")

    def interrupt(state):
        if state.step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job.run(interrupt)
    run = job.run_dir
    assert run.parent.parent.parent == tmp_path / "runs" and run.parent.name == "hashgrid"
    config = RunConfig.load(run)
    assert config.field == "hashgrid" and config.field_config["log2_table_size"] == 15
    assert json.loads((run / "checkpoints" / "latest" / "trainer.json").read_text())["state"]["step"] == 12

    resumed = FitJob.resume(run)
    assert resumed.trainer.state.step == 12
    state = resumed.run()
    assert state.step == 30 and resumed.final_eval is not None
    events = [json.loads(line)["event"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[-1] == "final_eval"
    _, model, grid = load_trained(run)
    for a, b in zip(model.parameters(), resumed.trainer.model.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(grid.bitfield, resumed.trainer.grid.bitfield)


def test_broken_run_folders_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        RunConfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid onefield run config"):
        RunConfig.load(tmp_path)


def test_trainer_config_is_validated(shapes_scene):
    with pytest.raises(UserError, match="loss must be"):
        TrainerConfig(loss="l3").check()
    with pytest.raises(UserError, match="positive"):
        TrainerConfig(minutes=0).check()
    with pytest.raises(UserError, match="positive"):
        make_trainer(shapes_scene, steps=0)  # the trainer checks its config


def test_the_visibility_pass_changes_no_loss_or_gradient_and_runs_where_it_pays(shapes_scene):
    """Past the grid's warm-up many marched samples of the tiny scene lie behind its shapes. Marching
    in rounds up to each ray's stop with density alone and training on the samples before it
    (`visibility`) leaves one batch's loss and every parameter's gradient as a render of the full march
    gives, with densities at fewer samples; the trainer counts the full march's hidden share and the
    share the rounds evaluated. The pass runs on every 16th step and, between those, only while the
    hidden share is at least VISIBILITY_PAYS of the evaluated one."""
    trainer = make_trainer(shapes_scene, steps=300)
    for _ in range(208):
        trainer.step()
    results = []
    for on in (False, True):
        trainer.config = dataclasses.replace(trainer.config, visibility=on)
        trainer.generator.manual_seed(7)  # the same rays and backgrounds
        hidden, unmarched = trainer.state.total_hidden, trainer.state.total_unmarched
        loss, _, _, placed = trainer._batch_loss(1024)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
        results.append((loss.detach(), placed, trainer.state.total_hidden - hidden,
                        trainer.state.total_unmarched - unmarched, grads))
    (loss_all, placed_all, hidden_all, _, grads_all), (loss_vis, placed_vis, hidden_vis, unmarched, grads_vis) = results
    kept, evaluated = placed_all - hidden_vis, placed_all - unmarched  # trained on; given a density
    assert hidden_all == 0 and placed_vis == placed_all and 0.1 * placed_all < hidden_vis  # 14 %
    assert kept < evaluated < placed_all
    assert trainer.state.hidden_share == hidden_vis / placed_all
    assert trainer.state.evaluated_share == evaluated / placed_all
    assert trainer.state.hidden_share < VISIBILITY_PAYS * trainer.state.evaluated_share
    torch.testing.assert_close(loss_vis, loss_all, rtol=1e-5, atol=1e-7)
    assert len(grads_vis) == len(grads_all) > 0
    for g_vis, g_all in zip(grads_vis, grads_all):
        torch.testing.assert_close(g_vis, g_all, rtol=1e-3, atol=1e-4 * float(g_all.abs().max()))
    trainer.step()  # step 208 measured 14 % of 89 %: step 209 skips the pass, unless the share was higher
    hidden = trainer.state.total_hidden
    trainer.step()
    assert trainer.state.total_hidden == hidden
    s = trainer.state
    s.hidden_share = VISIBILITY_PAYS
    placed, unmarched = s.total_samples, s.total_unmarched
    trainer.step()  # the pass, between measurements: the full march's count estimated from the share
    assert s.total_hidden > hidden
    placed, evaluated = s.total_samples - placed, s.total_samples - placed - (s.total_unmarched - unmarched)
    assert placed == round(evaluated / s.evaluated_share) > evaluated
