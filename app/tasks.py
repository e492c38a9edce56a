"""The engine's long jobs behind the queue's `Job` protocol (app/jobs.py): a fit and a distillation
(created or resumed) and structure-from-motion. Each adapter only relays the engine's own progress; the work
itself stays in `FitJob` and `process`. (Renders and exports take seconds: the GUI runs them in
the request, behind gradio's queue.)"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onefield.scenes.sfm import ProcessConfig, process

from .distill import DistillJob, report_lines, resume_run
from .fit import FitJob, finite
from .jobs import Control
from .trainer import TrainState
from .view import to_uint8

PREVIEW_SIDE = 160  # px, longest side of the live preview: a few hundred ms on a CPU
HISTORY_EVERY = 10  # steps between the points of the live loss / PSNR curves


@dataclass
class FitTask:
    """A fit in the background: the live curves, and a held-out view beside its ground truth every
    `preview_every` seconds. A pause or stop saves a checkpoint (FitJob.run); `resumed()` goes on
    from it."""

    open_job: Callable[[], FitJob]  # FitJob.create or FitJob.resume; runs in the worker (it reads the data)
    title: str
    preview_every: float = 5.0
    kind: str = field(default="fit", init=False)
    run_dir: Path | None = field(default=None, init=False)

    def run(self, control: Control) -> Path:
        job = self.open_job()
        self.run_dir = job.run_dir
        control.update(message=f"run {job.run_dir}", run=str(job.run_dir))
        history: list[dict[str, Any]] = control.state.info.setdefault("history", [])  # kept across a pause
        last_preview = -math.inf

        def on_step(s: TrainState) -> None:
            nonlocal last_preview
            evaluated = job.trainer.last_eval_step == s.step  # a held-out point only where one was measured
            if s.step % HISTORY_EVERY == 0 or evaluated:
                history.append({"step": s.step, "seconds": round(s.seconds, 2), "loss": finite(s.loss),
                                "psnr": finite(s.train_psnr), "eval_psnr": finite(s.eval_psnr) if evaluated else None})
            info: dict[str, Any] = {"step": s.step, "loss": finite(s.loss), "psnr": finite(s.train_psnr),
                                    "eval_psnr": finite(s.eval_psnr), "samples_per_ray": s.samples_per_ray,
                                    "rays_per_second": s.rays_per_second, "eta_seconds": s.eta_seconds}
            if time.monotonic() - last_preview >= self.preview_every:
                info["preview"] = self.preview(job)
                last_preview = time.monotonic()
            control.report(job.trainer.progress(), f"step {s.step}", **info)

        job.run(on_step)
        final = job.final_eval
        control.update(1.0, self.final_message(job), preview=self.preview(job),
                       final_psnr=None if final is None else final.mean_psnr,
                       final_ssim=None if final is None else final.mean_ssim, **self.final_info(job))
        return job.run_dir

    @staticmethod
    def final_message(job: FitJob) -> str:
        final = job.final_eval
        return "done" if final is None else f"held-out PSNR {final.mean_psnr:.2f} dB"

    @staticmethod
    def final_info(job: FitJob) -> dict[str, Any]:
        return {}

    def resumed(self) -> "FitTask":
        """The continuation after a pause: the run from its checkpoint (or, paused before the run
        was made, the same start)."""
        if self.run_dir is None:
            return type(self)(self.open_job, self.title, self.preview_every)
        run_dir = self.run_dir
        return type(self)(lambda: resume_run(run_dir), self.title, self.preview_every)

    @staticmethod
    def preview(job: FitJob) -> np.ndarray:
        """The first held-out view (a training view without any) beside its ground truth, [h, 2w, 3] uint8."""
        trainer = job.trainer
        data = trainer.held_out if trainer.held_out is not None else trainer.train_data
        cams = trainer.refined(data.cameras).subset([0])
        factor = min(1.0, PREVIEW_SIDE / max(cams.width, cams.height))
        color_view = 0 if data is trainer.train_data else None
        pred = trainer.render_view(cams.scaled(factor), 0, color_view=color_view)["rgb"].cpu()  # [h, w, 3]
        target = data.composite(0, torch.ones(3)).permute(2, 0, 1)[None]  # [1, 3, H, W]
        target = torch.nn.functional.interpolate(target, size=pred.shape[:2], mode="area")[0].permute(1, 2, 0)
        return to_uint8(torch.cat([pred, target], 1))


@dataclass
class DistillTask(FitTask):
    """A distillation in the background (`DistillJob`), shown like a fit; its result adds the quality
    report (student and teacher held-out PSNR, student vs teacher on random views)."""

    open_job: Callable[[], DistillJob]  # DistillJob.create or DistillJob.resume
    kind: str = field(default="distill", init=False)

    @staticmethod
    def final_message(job: FitJob) -> str:
        report = getattr(job, "report", None)
        return "done" if report is None else "; ".join(report_lines(report))

    @staticmethod
    def final_info(job: FitJob) -> dict[str, Any]:
        return {"report": getattr(job, "report", None)}


@dataclass
class ProcessTask:
    """Structure-from-motion on an upload; the result names the registered and the other images."""

    source: Path
    out: Path
    config: ProcessConfig = field(default_factory=ProcessConfig)
    kind: str = field(default="process", init=False)

    @property
    def title(self) -> str:
        return f"process {self.source.name}"

    def run(self, control: Control) -> dict[str, Any]:
        result = process(self.source, self.out, self.config, progress=lambda f, message: control.report(f, message))
        return {"dataset": str(result.out), "registered": result.registered, "failed": result.failed,
                "total": result.total, "seconds": result.seconds}
