"""The engine's jobs behind the queue's `Job` protocol (app/jobs.py): a fit (created or resumed),
structure-from-motion, and any one-shot piece of work (an export, a video, the demo scene). Each
adapter only relays the engine's own progress; the work itself stays in `FitJob`, `process` and
the exporters."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onefield.scenes.sfm import ProcessConfig, process

from .checkpoint import save_checkpoint
from .evaluate import to_uint8
from .fit import FitJob
from .jobs import Control
from .trainer import TrainState

PREVIEW_SIDE = 160  # px, longest side of the live preview: a few hundred ms on a CPU
HISTORY_EVERY = 10  # steps between the points of the live loss / PSNR curves


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class FitTask:
    """A fit in the background: the live curves, a held-out view beside its ground truth every
    `preview_every` seconds, and a checkpoint whenever it is paused or stopped."""

    open_job: Callable[[], FitJob]  # FitJob.create or FitJob.resume; runs in the worker (it reads the data)
    title: str
    preview_every: float = 5.0
    kind: str = field(default="fit", init=False)
    job: FitJob | None = field(default=None, init=False)

    def run(self, control: Control) -> Path:
        job = self.job = self.open_job()
        control.report(message=f"run {job.run_dir}", run=str(job.run_dir), history=[])
        control.on_pause = lambda: save_checkpoint(job.run_dir, job.trainer)
        history: list[dict[str, Any]] = control.state.info["history"]
        last_preview = -math.inf

        def on_step(s: TrainState) -> None:
            nonlocal last_preview
            evaluated = job.trainer.last_eval_step == s.step  # a held-out point only where one was measured
            if s.step % HISTORY_EVERY == 0 or evaluated:
                history.append({"step": s.step, "seconds": round(s.seconds, 2), "loss": _finite(s.loss),
                                "psnr": _finite(s.train_psnr), "eval_psnr": _finite(s.eval_psnr) if evaluated else None})
            info: dict[str, Any] = {"step": s.step, "loss": _finite(s.loss), "psnr": _finite(s.train_psnr),
                                    "eval_psnr": _finite(s.eval_psnr), "samples_per_ray": s.samples_per_ray,
                                    "rays_per_second": s.rays_per_second, "eta_seconds": s.eta_seconds}
            if time.monotonic() - last_preview >= self.preview_every:
                info["preview"] = self.preview(job)
                last_preview = time.monotonic()
            control.report(job.trainer.progress(), f"step {s.step}", **info)

        job.run(on_step)
        final = job.final_eval
        control.report(1.0, "done" if final is None else f"held-out PSNR {final.mean_psnr:.2f} dB",
                       preview=self.preview(job), final_psnr=None if final is None else final.mean_psnr,
                       final_ssim=None if final is None else final.mean_ssim)
        return job.run_dir

    @staticmethod
    def preview(job: FitJob) -> np.ndarray:
        """The first held-out view (a training view without any) beside its ground truth, [h, 2w, 3] uint8."""
        trainer = job.trainer
        data = trainer.held_out if trainer.held_out is not None else trainer.train_data
        cams = data.cameras.subset([0])
        factor = min(1.0, PREVIEW_SIDE / max(cams.width, cams.height))
        pred = trainer.render_view(cams.scaled(factor), 0)["rgb"].cpu()  # [h, w, 3]
        target = data.composite(0, torch.ones(3)).permute(2, 0, 1)[None]  # [1, 3, H, W]
        target = torch.nn.functional.interpolate(target, size=pred.shape[:2], mode="area")[0].permute(1, 2, 0)
        return to_uint8(torch.cat([pred, target], 1))


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


@dataclass
class CallTask:
    """One-shot work with no steps of its own (an export, a video, the demo scene)."""

    kind: str
    title: str
    call: Callable[[], Any]

    def run(self, control: Control) -> Any:
        control.report(0.0, self.title)
        return self.call()
