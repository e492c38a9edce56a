"""The distill job: a fitted run (the teacher) converted into another backend (the student) by
progressive volume distillation (PVD, "One is All", AAAI 2023), volumes and splats both ways.

`DistillJob` is a `FitJob` whose trainer learns from the teacher (`app.distillers`): it writes an
ordinary run folder (eval, render, export, slim, resume and a further distill take it), whose
config.json records the teacher under `distill`, and it ends with a quality report
(RUN/distill.json): the student's held-out PSNR beside the teacher's, and the PSNR between the two
on random views (how faithful the copy is).
"""

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from onefield import fields
from onefield.errors import UserError
from onefield.renderers import OccupancyGrid
from onefield.scenes import PosedImages
from onefield.scenes.views import random_cameras

from .checkpoint import find_checkpoint, load_checkpoint, load_progress, load_weights
from .distill_config import DistillConfig
from .distillers import SplatDistiller, VolumeDistiller, view_mode
from .fit import FitJob
from .metrics import psnr
from .runs import RunConfig, build_model, check_output_folder, make_trainer, new_run_dir, torch_device
from .trainer import Trainer, TrainerConfig
from .view import checkpoint_key

REPORT = "distill.json"
REPORT_SEED = 1_000_000_007  # the report's random views: never the ones the student trained on


@dataclass
class Teacher:
    """A fitted run, loaded to teach: its trainer renders views; `step` is the checkpoint's."""

    run_dir: Path
    config: RunConfig
    trainer: Trainer
    step: int | None

    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model

    @property
    def kind(self) -> str:
        return getattr(self.model, "kind", "volume")


def load_teacher(run_dir: Path, device: str, data: tuple[PosedImages, PosedImages | None] | None = None) -> Teacher:
    """The run's newest checkpoint with everything it learned, in eval mode; `data` (train, held-out)
    saves loading its dataset again."""
    run_dir = Path(run_dir).resolve()
    config = RunConfig.load(run_dir)
    train, held_out = data if data is not None else config.data.load()[:2]
    model, grid = build_model(config, device)
    trainer = make_trainer(model, grid, train, config.trainer_config(), held_out, device)
    folder = find_checkpoint(run_dir)
    load_weights(trainer, folder)
    load_progress(trainer, folder)
    model.eval()
    return Teacher(run_dir, config, trainer, checkpoint_key(folder)[0])


def student_trainer(teacher: TrainerConfig, distill: DistillConfig, steps: int | None,
                    minutes: float | None) -> TrainerConfig:
    """The student's loop settings: the teacher's (seed, marching, schedule), with the given budget
    (none: the teacher's), the distillation's batch size, the grid as sampler, and nothing that learns
    from photos alone (pose and colour corrections, the distortion loss, coarse images, carving)."""
    if steps is None and minutes is None:
        steps, minutes = teacher.steps, teacher.minutes
    return replace(teacher, steps=steps or 1_000_000, minutes=minutes, target_samples=distill.samples,
                   init_rays=min(teacher.init_rays, distill.samples), sampler="grid", refine_poses=False,
                   appearance=False, distortion=0.0, coarse_images=0.0, carve=False)


def make_distiller(model: torch.nn.Module, grid: OccupancyGrid, train: PosedImages, config: TrainerConfig,
                   held_out: PosedImages | None, device: str, teacher: Teacher, distill: DistillConfig) -> Trainer:
    """The distiller of the student's kind, its grid a copy of the teacher's (a splat teacher's refreshed
    first: runs saved before `refresh_grid` counted the cells holding Gaussians lack thin ones)."""
    if teacher.kind == "splats":
        teacher.trainer.refresh_grid()
    grid.load_state_dict(teacher.trainer.grid.state_dict())
    cls = SplatDistiller if getattr(model, "kind", "volume") == "splats" else VolumeDistiller
    return cls(model, grid, train, config, held_out, device, teacher, distill)


class DistillJob(FitJob):
    """A distillation in a run folder: `FitJob`'s loop, checkpoints and final evaluation, then the report."""

    kind = "distill"

    def __init__(self, run_dir: Path, config: RunConfig, trainer: Trainer, teacher: Teacher):
        super().__init__(run_dir, config, trainer)
        self.teacher = teacher
        self.report: dict[str, Any] | None = None

    @classmethod
    def create(cls, teacher_run: Path, field: str, field_config: Any = None, distill: DistillConfig | None = None,
               steps: int | None = None, minutes: float | None = None, out: Path = Path("runs"),
               device: str | None = None, name: str | None = None) -> "DistillJob":
        """A new run of backend `field` (config: its dataclass, a dict or None) taught by `teacher_run`,
        under `out/<scene>/<field>/` (named `name`, else by the time); the budget is `steps` / `minutes`
        (none: the teacher's)."""
        distill = distill or DistillConfig()
        distill.check()
        check_output_folder(out)
        teacher_config = RunConfig.load(teacher_run)
        device = torch_device(device or teacher_config.device)
        if field_config is None or isinstance(field_config, dict):
            field_config = fields.make_config(field, field_config)
        trainer_config = student_trainer(teacher_config.trainer_config(), distill, steps, minutes)
        trainer_config.check()
        data = teacher_config.data
        if fields.field_class(field).pinhole_only:
            data = replace(data, undistort=True)
        train, held_out, _ = data.load()
        teacher_data = (train, held_out) if data == teacher_config.data else None
        teacher = load_teacher(teacher_run, device, teacher_data)
        config = RunConfig(teacher_config.scene, data, field, dataclasses.asdict(field_config), list(teacher_config.aabb),
                           teacher_config.grid_resolution, dataclasses.asdict(trainer_config), device,
                           teacher_config.grid_levels, distill=cls._record(teacher, distill))
        model, grid = build_model(config, device)
        run_dir = new_run_dir(out, config.scene, field, name)
        config.save(run_dir)
        trainer = make_distiller(model, grid, train, trainer_config, held_out, device, teacher, distill)
        return cls(run_dir, config, trainer, teacher)

    @staticmethod
    def _record(teacher: Teacher, distill: DistillConfig) -> dict[str, Any]:
        return {"teacher": str(teacher.run_dir), "teacher_field": teacher.config.field, "teacher_step": teacher.step,
                **dataclasses.asdict(distill)}

    @classmethod
    def resume(cls, run_dir: Path, device: str | None = None, steps: int | None = None,
               minutes: float | None = None) -> "DistillJob":
        """Continue a distillation from its latest checkpoint (the teacher read again from its run)."""
        run_dir = Path(run_dir)
        config = RunConfig.load(run_dir)
        if config.distill is None:
            raise UserError(f"{run_dir}: a fit, not a distillation; resume it with FitJob.resume")
        record = dict(config.distill)
        teacher_run = Path(record.pop("teacher"))
        field, teacher_step = record.pop("teacher_field"), record.pop("teacher_step")
        distill = fields.registry.config_from_dict(DistillConfig, record, f"{run_dir}/config.json distill")
        if not (teacher_run / "config.json").is_file():
            raise UserError(f"{run_dir} was distilled from {teacher_run}, which is gone: the run renders and exports "
                            "as it is, but its distillation cannot continue")
        config.raise_budget(steps, minutes)
        device = torch_device(device or config.device)
        train, held_out, _ = config.data.load()
        teacher = load_teacher(teacher_run, device)
        if teacher.config.field != field or teacher.step != teacher_step:
            warnings.warn(f"the teacher {teacher_run} changed since this distillation began (then {field} at step "
                          f"{teacher_step}, now {teacher.config.field} at step {teacher.step}); continuing from it as "
                          "it is now", stacklevel=2)
        model, grid = build_model(config, device)
        trainer = make_distiller(model, grid, train, config.trainer_config(), held_out, device, teacher, distill)
        load_checkpoint(run_dir, trainer)
        config.save(run_dir)
        return cls(run_dir, config, trainer, teacher)

    def run(self, on_step=None):
        state = super().run(on_step)
        self.report = self.quality_report()
        (self.run_dir / REPORT).write_text(json.dumps(self.report, indent=1))
        self._log({"event": "distill_report", **self.report})
        return state

    @torch.no_grad()
    def quality_report(self) -> dict[str, Any]:
        """Student and teacher on the held-out views, and the student against the teacher on random views."""
        student, teacher = self.trainer, self.teacher.trainer
        start = time.perf_counter()
        report: dict[str, Any] = {"teacher": str(self.teacher.run_dir), "teacher_field": self.teacher.config.field,
                                  "student_field": self.config.field, "steps": student.state.step,
                                  "seconds": round(student.state.seconds, 3)}
        if self.final_eval is not None and student.held_out is not None:
            teacher_eval = teacher.evaluate(student.held_out)
            report |= {"student_psnr": self.final_eval.mean_psnr, "student_ssim": self.final_eval.mean_ssim,
                       "teacher_psnr": teacher_eval.mean_psnr, "teacher_ssim": teacher_eval.mean_ssim,
                       "held_out_views": len(teacher_eval.psnr)}
        generator = torch.Generator(device=student.device).manual_seed(REPORT_SEED)
        cams = random_cameras(student.cameras.pinhole(), self.trainer.distill.report_views,
                              view_mode(student.grid, self.trainer.distill), student.grid.center, generator)
        fidelity = [psnr(student.render_view(cams, i)["rgb"].clamp(0, 1), teacher.render_view(cams, i)["rgb"].clamp(0, 1))
                    for i in range(len(cams))]
        report |= {"fidelity_psnr": sum(fidelity) / len(fidelity), "fidelity_views": len(fidelity),
                   "report_seconds": round(time.perf_counter() - start, 3)}
        return report


def resume_run(run_dir: Path, device: str | None = None, steps: int | None = None,
               minutes: float | None = None) -> FitJob:
    """The job that continues a run: a distillation where the run is one, else its fit."""
    if RunConfig.load(run_dir).distill is not None:
        return DistillJob.resume(run_dir, device, steps, minutes)
    return FitJob.resume(run_dir, device, steps, minutes)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report for a terminal."""
    lines = []
    if "student_psnr" in report:
        lines.append(f"held-out PSNR: student ({report['student_field']}) {report['student_psnr']:.2f} dB, teacher "
                     f"({report['teacher_field']}) {report['teacher_psnr']:.2f} dB over {report['held_out_views']} views")
    lines.append(f"student vs teacher on {report['fidelity_views']} random views: {report['fidelity_psnr']:.2f} dB")
    return lines
