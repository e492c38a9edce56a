"""The GUI's View and Compare back end on a fitted run of the tiny shapes scene: orbits reproduce
the training frame and held-out cameras, every output renders what it should, turntables, the
Compare table, and the cache of open runs."""

import copy
import dataclasses
import json
import math
import shutil

import imageio.v2 as imageio_v2
import numpy as np
import pytest
import torch

from onefield.app.evaluate import evaluate_run, turntable_cameras
from onefield.app.fit import FitJob
from onefield.app.metrics import psnr
from onefield.app.runs import DataSpec
from onefield.app.trainer import TrainerConfig
from onefield.app.view import (Orbit, RunView, colorize_depth, compare_runs, open_view, run_summary, side_by_side,
                               to_uint8, turbo)
from onefield.errors import UserError
from onefield.scenes.rays import look_at

from conftest import SHAPES_FIELD, SHAPES_TRAINER


def fit(scene, out, steps: int):
    torch.manual_seed(0)
    job = FitJob.create(DataSpec(str(scene.root)), "hashgrid", SHAPES_FIELD, TrainerConfig(steps=steps, **SHAPES_TRAINER), out)
    job.run()
    return job.run_dir


@pytest.fixture(scope="module")
def fitted_run(fitted_shapes):
    return fitted_shapes.run_dir


@pytest.fixture
def view(fitted_run) -> RunView:
    return open_view(fitted_run)


def as_float(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).float() / 255


def old_turntable_c2w(train, center, n_frames):
    """evaluate.turntable_cameras before it went through Orbit (copied), the reference for its poses."""
    eyes = train.c2w[:, :, 3]
    up = torch.nn.functional.normalize(-train.c2w[:, :, 1].mean(0), dim=0)
    offsets = eyes - center
    radius = float(offsets.norm(dim=-1).median())
    height = float((offsets @ up).mean())
    ring = math.sqrt(max(radius**2 - height**2, 1e-6))
    a = torch.nn.functional.normalize(torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0]))
                                      if abs(float(up[0])) < 0.9 else torch.linalg.cross(up, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    b = torch.linalg.cross(up, a)
    c2ws = []
    for k in range(n_frames):
        phi = 2 * math.pi * k / n_frames
        eye = center + up * height + ring * (math.cos(phi) * a + math.sin(phi) * b)
        c2ws.append(look_at(eye, center, up))
    return torch.stack(c2ws)


def test_default_orbit_is_the_turntables_first_frame(view):
    train, center = view.train_cameras, view.center
    old = old_turntable_c2w(train, center, 8)
    assert torch.allclose(turntable_cameras(train, center, 8).c2w, old, atol=1e-5)
    orbit = view.default_orbit()
    assert torch.allclose(orbit.c2w(view.center, view.up), old[0], atol=1e-5)
    assert torch.allclose(dataclasses.replace(orbit, azimuth=90.0).c2w(view.center, view.up), old[2], atol=1e-5)
    # median distance and mean elevation of the training cameras, their vertical field of view
    offsets = train.c2w[:, :, 3] - center
    assert orbit.distance == pytest.approx(float(offsets.norm(dim=-1).median()), rel=1e-5)
    assert orbit.fov == pytest.approx(2 * math.degrees(math.atan(train.height / 2 / float(train.fy[0]))))
    camera = view.camera(orbit, train.width)
    assert torch.allclose(camera.fy, train.fy[:1]) and camera.near == train.near and camera.far == train.far


def test_orbit_of_a_held_out_camera_renders_that_view(view):
    held = view.held_out_cameras
    assert held is not None
    for i in range(len(held)):
        orbit = view.orbit_of(held, i)
        c2w = orbit.c2w(view.center, view.up)
        assert torch.allclose(c2w[:, 3], held.c2w[i, :, 3], atol=1e-4)  # the same eye
        assert float(c2w[:, 2] @ held.c2w[i, :, 2]) > 0.9999  # the same gaze (the shapes' views aim at the centre)
        ours = as_float(view.render(orbit, held.width))
        reference = view.trainer.render_view(held, i)["rgb"].clamp(0, 1)
        # the orbit keeps `up` upright, the views were made with z up: a roll of ~2 degrees remains
        assert psnr(ours, reference) > 24


def test_view_steps_one_pixel_footprint_and_matches_the_exact_render(view):
    """The view marches with dt >= t / focal: fewer samples at a low resolution, the same image."""
    camera = view.camera(view.default_orbit(), 128)
    exact = view.trainer.render_view(camera, 0)
    coarse = view.trainer.render_view(camera, 0, cone_angle=1.0 / float(camera.fy[0]))
    assert float(coarse["samples_per_ray"].float().mean()) < 0.8 * float(exact["samples_per_ray"].float().mean())
    ours = as_float(view.render_camera(camera))
    assert torch.equal(ours, as_float(to_uint8(coarse["rgb"])))  # the view renders with the footprint step
    assert psnr(ours, exact["rgb"].clamp(0, 1)) > 40


def test_render_shape_aspect_and_content(view):
    orbit = view.default_orbit()
    image = view.render(orbit, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image.std() > 20  # colourful shapes on white, not a blank frame
    assert view.preview(orbit).shape == (64, 64, 3)
    wide = copy.copy(view)  # the same run seen as if its views were 80x40: the aspect follows them
    wide.train_cameras = dataclasses.replace(view.train_cameras, width=80)
    assert wide.render(orbit, 32).shape == (16, 32, 3) and wide.image_size(32) == (32, 16)
    with pytest.raises(UserError, match="output must be one of"):
        view.render(orbit, 32, "normals")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="elevation"):
        Orbit(0.0, 90.0, 3.0, 40.0)


def test_depth_and_opacity_outputs(view):
    orbit = view.default_orbit()
    rgb, depth, opacity = (view.render(orbit, 32, out) for out in ("rgb", "depth", "opacity"))
    assert depth.shape == opacity.shape == (32, 32, 3)
    assert np.array_equal(opacity[..., 0], opacity[..., 2])  # grey
    empty, solid = opacity[..., 0] < 3, opacity[..., 0] > 250
    assert empty.mean() > 0.2 and solid.mean() > 0.1  # the view shows both
    assert depth[empty].max() <= 3  # empty space is dark in the depth map (white in rgb)
    assert rgb[empty].min() > 240
    assert np.abs(depth.astype(float) - rgb).mean() > 50
    assert depth[solid].std() > 10  # the shapes lie at different depths


def test_colorize_depth_spans_near_to_the_99th_percentile():
    depth = np.linspace(2.0, 6.0, 101).reshape(1, 101)
    opacity = np.ones_like(depth)
    opacity[0, 50] = 0.0
    image = colorize_depth(depth, opacity, near=2.0)
    assert np.array_equal(image[0, 50], [0, 0, 0])
    expected_low, expected_high = [(turbo(np.array(v)) * 255 + 0.5).astype(np.uint8) for v in (0.0, 1.0)]
    assert np.array_equal(image[0, 0], expected_low)
    far = np.percentile(np.delete(depth[0], 50), 99)  # the transparent pixel does not count
    assert np.array_equal(image[0, depth[0] >= far][0], expected_high)
    assert np.array_equal(image[0, -1], expected_high)  # beyond the percentile: saturated


def test_azimuth_changes_the_image(view):
    orbit = view.default_orbit()
    a = view.render(orbit, 32).astype(float)
    b = view.render(dataclasses.replace(orbit, azimuth=90.0), 32).astype(float)
    assert np.abs(a - b).mean() > 10
    closer = view.render(dataclasses.replace(orbit, distance=orbit.distance * 0.7), 32, "opacity")
    assert (closer > 128).mean() > (view.render(orbit, 32, "opacity") > 128).mean() * 1.3  # the shapes fill more


def test_turntable_writes_the_frames(view, tmp_path):
    orbit = dataclasses.replace(view.default_orbit(), azimuth=30.0)
    path = view.turntable(orbit, 32, frames=5, fps=5, path=tmp_path / "videos" / "turn.mp4")
    assert path == tmp_path / "videos" / "turn.mp4"
    with imageio_v2.get_reader(path) as reader:
        frames = [f for f in reader]
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3)
    # the video starts at the given orbit and turns: frame 0 is close to its render (lossy codec), frame 1 is not
    first = view.render(orbit, 32).astype(float)
    assert np.abs(frames[0] - first).mean() < 8 and np.abs(frames[1] - first).mean() > 12


def test_run_summary_reads_the_evaluation_and_the_checkpoint(fitted_run, shapes_scene, view, tmp_path):
    records = [json.loads(line) for line in (fitted_run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r["event"] == "final_eval"][-1]
    row = run_summary(fitted_run)
    assert row["psnr"] == final["psnr"] and row["ssim"] == final["ssim"] and row["eval_step"] == 600
    assert row["run"] == str(fitted_run) and row["scene"] == shapes_scene.root.name and row["field"] == "hashgrid"
    assert row["steps"] == 600 and row["seconds"] > 0
    weights = fitted_run / "checkpoints" / "latest" / "model.safetensors"
    assert row["size_mb"] == weights.stat().st_size / 1e6 > 0
    n_params = sum(p.numel() for p in view.trainer.model.parameters())
    assert 0 <= row["parameters"] - n_params <= 16  # plus the 6-value box

    run = shutil.copytree(fitted_run, tmp_path / "run")
    metrics = evaluate_run(run)
    (run / "metrics.jsonl").unlink()
    row = run_summary(run)
    assert row["psnr"] == metrics["mean"]["psnr"] and row["ssim"] == metrics["mean"]["ssim"]
    shutil.rmtree(run / "eval")
    assert run_summary(run)["psnr"] is None


def test_compare_renders_the_same_camera_for_each_run(fitted_run, shapes_scene, tmp_path, view):
    weak = fit(shapes_scene, tmp_path, 40)
    orbit = dataclasses.replace(view.default_orbit(), azimuth=45.0)
    rows, images = compare_runs([fitted_run, weak], orbit, 32, "rgb")
    assert [r["run"] for r in rows] == [str(fitted_run), str(weak)] and [r["steps"] for r in rows] == [600, 40]
    assert len(images) == 2 and images[0].shape == images[1].shape == (32, 32, 3)
    assert np.array_equal(images[0], view.render(orbit, 32))
    assert np.array_equal(images[1], open_view(weak).render(orbit, 32))
    assert not np.array_equal(images[0], images[1])
    _, default = compare_runs([fitted_run, weak], None, 24, "depth")
    assert np.array_equal(default[1], open_view(weak).render(view.default_orbit(), 24, "depth"))

    tiled = side_by_side(images)
    assert tiled.shape == (32, 66, 3)
    assert np.array_equal(tiled[:, :32], images[0]) and np.array_equal(tiled[:, 34:], images[1])
    assert (tiled[:, 32:34] == 128).all()
    labelled = side_by_side(images, ["600 steps", "40 steps"])
    assert labelled.shape == tiled.shape and not np.array_equal(labelled[:12], tiled[:12])
    assert np.array_equal(labelled[20:], tiled[20:])  # the labels stay in the top rows


def test_open_view_caches_and_reloads_a_newer_checkpoint(fitted_run, tmp_path):
    run = shutil.copytree(fitted_run, tmp_path / "run")
    first = open_view(run)
    assert open_view(run) is first and open_view(str(run / ".." / "run")) is first
    assert first.step == 600
    assert first.trainer.images.untyped_storage().nbytes() == 4  # poses kept, the training pixels not
    evaluate_run(run)  # eval/metrics.json at step 600, then the run goes on
    FitJob.resume(run, steps=610).run()
    again = open_view(run)
    assert again is not first and again.step == 610
    assert open_view(run) is again
    # the newest evaluation wins over the now stale eval/metrics.json
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["event"] == "final_eval" and final["step"] == 610
    assert run_summary(run)["psnr"] == final["psnr"] and run_summary(run)["eval_step"] == 610
