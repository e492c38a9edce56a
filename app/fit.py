"""The fit job: a run folder around a `Trainer` — config, metrics log, periodic checkpoints, the
final evaluation, and a checkpoint on Ctrl-C or divergence so no finished work is lost."""

import json
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from onefield import fields
from onefield.errors import UserError

from .checkpoint import load_checkpoint, save_checkpoint
from .jobs import JobStopped
from .runs import (DataSpec, RunConfig, build_model, check_output_folder, make_trainer, new_run_dir, scene_name,
                   torch_device)
from .trainer import EvalResult, Trainer, TrainerConfig, TrainingDiverged, TrainState


def finite(x: float | None) -> float | None:
    """x, or None where it is missing or not finite (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else float(x)


class FitJob:
    def __init__(self, run_dir: Path, config: RunConfig, trainer: Trainer):
        self.run_dir, self.config, self.trainer = run_dir, config, trainer
        self.final_eval: EvalResult | None = None

    @classmethod
    def create(cls, data: DataSpec, field: str, field_config: Any, trainer_config: TrainerConfig,
               out: Path = Path("runs"), device: str = "cpu", grid_resolution: int | None = None,
               name: str | None = None) -> "FitJob":
        """A new run under `out/<scene>/<field>/` (named `name`, else by the time)."""
        trainer_config.check()
        check_output_folder(out)  # before the data is read: fail in a second, not after a minute
        device = torch_device(device)
        if fields.field_class(field).pinhole_only:
            data = replace(data, undistort=True)
        train, held_out, _ = data.load()
        if field_config is None or isinstance(field_config, dict):
            field_config = fields.make_config(field, field_config)  # validates the options, names unknown ones
        fc = asdict(field_config)
        trainer_config = trainer_config.resolved(train, fields.field_class(field).kind)  # config.json: what ran, not "auto"
        config = RunConfig(scene_name(data.path), data, field, fc, list(train.aabb),
                           grid_resolution or trainer_config.grid_resolution, asdict(trainer_config), device,
                           train.cascades)
        model, grid = build_model(config, device)
        run_dir = new_run_dir(out, config.scene, field, name)
        config.save(run_dir)
        return cls(run_dir, config, make_trainer(model, grid, train, trainer_config, held_out, device))

    @classmethod
    def resume(cls, run_dir: Path, device: str | None = None, steps: int | None = None,
               minutes: float | None = None) -> "FitJob":
        """Continue a run from its latest checkpoint; `steps` / `minutes` raise its budget."""
        run_dir = Path(run_dir)
        config = RunConfig.load(run_dir)
        if config.distill is not None:
            raise UserError(f"{run_dir} is a distillation: continue it with DistillJob.resume (`onefield resume` "
                            "chooses it)")
        config.raise_budget(steps, minutes)
        device = torch_device(device or config.device)
        train, held_out, _ = config.data.load()
        model, grid = build_model(config, device)
        trainer = make_trainer(model, grid, train, config.trainer_config(), held_out, device)
        load_checkpoint(run_dir, trainer)
        config.save(run_dir)
        return cls(run_dir, config, trainer)

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log_eval(self, kind: str, result: EvalResult) -> None:
        self._log({"event": kind, "step": self.trainer.state.step, "seconds": round(self.trainer.state.seconds, 3),
                   "psnr": result.mean_psnr, "ssim": result.mean_ssim, "views": len(result.psnr),
                   "appearance": result.appearance})

    def run(self, on_step: Callable[[TrainState], None] | None = None) -> TrainState:
        """Train to the end of the budget, then evaluate on all held-out views. Ctrl-C, a stop from
        the job queue (`on_step` raising JobStopped) or a divergence the guard cannot fix saves a
        checkpoint before the exception propagates."""
        trainer, c = self.trainer, self.trainer.config
        last_eval_step = None
        try:
            for state in trainer.iterate():
                if state.step % 50 == 0:
                    self._log({"event": "train", "step": state.step, "seconds": round(state.seconds, 3),
                               "loss": finite(state.loss), "psnr": finite(state.train_psnr), "rays": state.rays,
                               "samples_per_ray": state.samples_per_ray})
                if state.eval_psnr is not None and trainer.last_eval_step != last_eval_step:
                    last_eval_step = trainer.last_eval_step
                    self._log({"event": "eval", "step": state.step, "seconds": round(state.seconds, 3),
                               "psnr": state.eval_psnr, "ssim": state.eval_ssim})
                if c.checkpoint_every and state.step % c.checkpoint_every == 0:
                    save_checkpoint(self.run_dir, trainer)
                if on_step is not None:
                    on_step(state)
        except (KeyboardInterrupt, JobStopped, TrainingDiverged):
            save_checkpoint(self.run_dir, trainer)
            raise
        save_checkpoint(self.run_dir, trainer)
        if trainer.held_out is not None:
            self.final_eval = trainer.evaluate()
            self._log_eval("final_eval", self.final_eval)
        return trainer.state
