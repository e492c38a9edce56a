"""Jobs on a finished (or checkpointed) run: `eval` (metrics per view and mean, side-by-side
images) and `render` (held-out views and a turntable video)."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import torch
from torch import Tensor

from onefield.errors import UserError
from onefield.scenes import Cameras, PosedImages
from onefield.scenes.rays import orbit_up

from .checkpoint import find_checkpoint, load_progress, load_weights
from .runs import RunConfig, build_model, make_trainer, torch_device
from .trainer import Trainer
from .view import default_orbit, to_uint8, write_video


def run_renderer(run_dir: Path, device: str | None) -> tuple[RunConfig, Trainer, PosedImages, PosedImages | None, str | None]:
    """A trainer around the run's newest checkpoint: its weights, and its state (step, seconds...)
    where the checkpoint has one. Only its rendering and evaluation are used."""
    config = RunConfig.load(run_dir)
    device = torch_device(device or config.device)
    checkpoint = find_checkpoint(run_dir)
    model, grid = build_model(config, device)
    train, held_out, split = config.data.load()
    trainer = make_trainer(model, grid, train, config.trainer_config(), held_out, device)
    load_weights(trainer, checkpoint)
    load_progress(trainer, checkpoint)
    return config, trainer, train, held_out, split


def evaluate_run(run_dir: Path, device: str | None = None) -> dict:
    """Write `<run>/eval/metrics.json` (per view and mean PSNR/SSIM on white) and side-by-side
    images (render | ground truth | 4x absolute error) under `<run>/eval/`; return the metrics."""
    run_dir = Path(run_dir)
    config, trainer, _, held_out, split = run_renderer(run_dir, device)
    if held_out is None:
        raise UserError(f"{config.data.path}: no held-out views to evaluate on (the run was made with eval_split 'none')")
    result = trainer.evaluate(held_out)
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    views = []
    for name, p, s, pred, target in zip(held_out.names, result.psnr, result.ssim, result.images, result.targets):
        error = ((pred - target).abs() * 4).clamp(0, 1)
        iio.imwrite(out / f"{Path(name).stem}.png", to_uint8(torch.cat([pred, target, error], 1)))
        views.append({"view": name, "psnr": p, "ssim": s})
    metrics = {"run": str(run_dir), "split": split, "background": "white",
               "views": views, "mean": {"psnr": result.mean_psnr, "ssim": result.mean_ssim},
               "seconds_per_view": result.seconds_per_view, "field": config.field, "step": trainer.state.step,
               "seconds": trainer.state.seconds, "appearance": result.appearance}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def turntable_cameras(train: Cameras, center: Tensor, n_frames: int) -> Cameras:
    """Cameras circling `center` [3] at the training cameras' median distance and mean elevation,
    about their mean up direction (`view.default_orbit` turned by 360/n_frames degrees a frame),
    with the first training camera's intrinsics."""
    up, start = orbit_up(train), default_orbit(train, center)
    c2ws = [dataclasses.replace(start, azimuth=360.0 * k / n_frames).c2w(center, up) for k in range(n_frames)]
    return Cameras(torch.stack(c2ws), train.fx[0], train.fy[0], train.cx[0], train.cy[0], train.width, train.height,
                   train.near, train.far)


@dataclass
class RenderOutputs:
    views: list[Path]
    video: Path


def render_run(run_dir: Path, n_frames: int = 60, fps: int = 30, device: str | None = None) -> RenderOutputs:
    """Held-out views to `<run>/renders/views/` and a turntable to `<run>/renders/turntable.mp4`."""
    if n_frames < 1 or fps < 1:
        raise UserError(f"the turntable needs frames >= 1 and fps >= 1, got frames={n_frames}, fps={fps}")
    run_dir = Path(run_dir)
    config, trainer, train, held_out, _ = run_renderer(run_dir, device)
    out = run_dir / "renders"
    (out / "views").mkdir(parents=True, exist_ok=True)
    views = []
    if held_out is not None:
        cameras = trainer.refined(held_out.cameras)
        for i, name in enumerate(held_out.names):
            path = out / "views" / f"{Path(name).stem}.png"
            iio.imwrite(path, to_uint8(trainer.render_view(cameras, i)["rgb"]))
            views.append(path)
    aabb = torch.tensor(config.aabb)
    cams = turntable_cameras(train.cameras, (aabb[:3] + aabb[3:]) / 2, n_frames)
    frames = [to_uint8(trainer.render_view(cams, k)["rgb"]) for k in range(n_frames)]
    return RenderOutputs(views, write_video(frames, out / "turntable.mp4", fps))
