"""Distillation on one scene and one machine: teachers fitted for --teacher-minutes, then every backend
as a student of each for --minutes (held-out PSNR of student and teacher, student vs teacher on
random views, size), beside the same backend trained from scratch for the same minutes; and a
PSNR-versus-time curve of hashgrid -> mlp against mlp from scratch (held-out PSNR at --marks seconds
of training time, evaluation not counted).

Scene: NeRF-Synthetic mic at 100x100 (100 train views, the 50 present val views on white). Every run
goes through the same jobs as the CLI:

    onefield fit DATA --field T --minutes 5 --downscale 8          # each teacher
    onefield distill TEACHER_RUN --to S --minutes 2                  # each cell
    onefield fit DATA --field S --minutes 2 --downscale 8          # each from-scratch row

with each backend's default configuration, except hashgrid, which uses the CPU demo size (log2 table
17, max resolution 512; see bench_fit.py). Teacher runs are kept in --work and reused when present.
"""

import argparse
import json
import os
from pathlib import Path

import torch
from common import finish

from onefield import fields
from onefield.app.demo import DEMO_FIELD
from onefield.app.distill import DistillJob
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.slim import parameter_count
from onefield.app.trainer import TrainerConfig


def field_config(name: str):
    return DEMO_FIELD if name == "hashgrid" else {}


def budget(minutes: float) -> TrainerConfig:
    return TrainerConfig(minutes=minutes, steps=1_000_000, eval_every=0, checkpoint_every=0)


def teacher(spec: DataSpec, name: str, minutes: float, work: Path) -> tuple[Path, dict]:
    """A fitted run of backend `name` (reused from an earlier run of this benchmark when one is recorded)."""
    record = work / f"teacher-{name}-{minutes:g}.json"
    if record.is_file():
        row = json.loads(record.read_text())
        return Path(row["run"]), row
    job = FitJob.create(spec, name, field_config(name), budget(minutes), work / "teachers")
    state = job.run()
    row = {"teacher": name, "minutes": minutes, "run": str(job.run_dir), "steps": state.step,
           "psnr": round(job.final_eval.mean_psnr, 3), "megabytes": round(parameter_count(job.trainer.model) * 4 / 2**20, 2)}
    record.write_text(json.dumps(row))
    return job.run_dir, row


def measured(job, state, extra: dict) -> dict:
    n = parameter_count(job.trainer.model)
    return {**extra, "steps": state.step, "psnr": round(job.final_eval.mean_psnr, 3),
            "ssim": round(job.final_eval.mean_ssim, 4), "megabytes": round(n * 4 / 2**20, 2)}


def curve(job, marks: list[float], views: int | None) -> list[dict]:
    """Train `job` (a FitJob or DistillJob) to its budget, evaluating on `views` held-out views (None: all)
    each time its training time passes a mark; the job's own final evaluation (all views) closes it."""
    trainer, points, pending = job.trainer, [], sorted(marks)

    def on_step(state) -> None:
        while pending and state.seconds >= pending[0]:
            pending.pop(0)
            result = trainer.evaluate(max_views=views)
            points.append({"seconds": round(state.seconds, 1), "steps": state.step, "psnr": round(result.mean_psnr, 3)})
            print(f"  {state.seconds:6.1f} s  step {state.step:6d}  PSNR {result.mean_psnr:6.2f} dB "
                  f"({len(result.psnr)} views)", flush=True)

    state = job.run(on_step)
    final = job.final_eval
    points.append({"seconds": round(state.seconds, 1), "steps": state.step, "psnr": round(final.mean_psnr, 3)})
    print(f"  {state.seconds:6.1f} s  step {state.step:6d}  PSNR {final.mean_psnr:6.2f} dB (final, {len(final.psnr)} "
          "views)", flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", nargs="*", default=["hashgrid", "tensorf-cp", "splats"], choices=fields.names())
    parser.add_argument("--students", nargs="*", default=fields.names(), choices=fields.names())
    parser.add_argument("--teacher-minutes", type=float, default=5.0)
    parser.add_argument("--minutes", type=float, default=2.0, help="budget of each student and from-scratch run")
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch rows")
    parser.add_argument("--curve-minutes", type=float, nargs=2, default=[2.0, 10.0], metavar=("DISTILL", "SCRATCH"),
                        help="budgets of the hashgrid -> mlp curve and of mlp from scratch (0 0: no curve)")
    parser.add_argument("--marks", type=float, nargs="+", default=[15, 30, 60, 300])
    parser.add_argument("--curve-views", type=int, default=0, help="held-out views per curve point (0: all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/onefield-bench-distill"))
    args = parser.parse_args()
    torch.manual_seed(0)
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    spec = DataSpec(str(data_root / "nerf-synthetic-mic"), downscale=8, eval_split="val")
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "runs"
    figures: dict = {"scene": "mic 100x100, 50 val views", "teachers": [], "scratch": [], "cells": [], "curves": {}}

    teachers = {}
    for name in args.teachers:
        teachers[name], row = teacher(spec, name, args.teacher_minutes, args.work)
        figures["teachers"].append(row)
        print(f"teacher {name:11s} {args.teacher_minutes:g} min: PSNR {row['psnr']:6.2f} dB, {row['megabytes']:.2f} MB",
              flush=True)

    if not args.no_scratch:
        for name in args.students:
            job = FitJob.create(spec, name, field_config(name), budget(args.minutes), out)
            row = measured(job, job.run(), {"student": name, "minutes": args.minutes})
            figures["scratch"].append(row)
            print(f"scratch {name:11s} {args.minutes:g} min: PSNR {row['psnr']:6.2f} dB  {row['steps']:6d} steps", flush=True)

    distill_minutes, scratch_minutes = args.curve_minutes
    views = args.curve_views or None
    if distill_minutes > 0 and "hashgrid" in teachers:
        print("curve: hashgrid -> mlp", flush=True)
        job = DistillJob.create(teachers["hashgrid"], "mlp", None, None, minutes=distill_minutes, out=out)
        figures["curves"]["hashgrid->mlp"] = curve(job, [m for m in args.marks if m < 60 * distill_minutes], views)
        if distill_minutes == args.minutes and "mlp" in args.students:  # the matrix's cell too
            figures["cells"].append(cell(job, "hashgrid", "mlp", args.minutes))
    if scratch_minutes > 0:
        print("curve: mlp from scratch", flush=True)
        job = FitJob.create(spec, "mlp", None, budget(scratch_minutes), out)
        figures["curves"]["mlp"] = curve(job, [m for m in args.marks if m < 60 * scratch_minutes], views)

    for t_name, run in teachers.items():
        for s_name in args.students:
            if any(c["teacher"] == t_name and c["student"] == s_name for c in figures["cells"]):
                continue
            job = DistillJob.create(run, s_name, field_config(s_name), None, minutes=args.minutes, out=out)
            job.run()
            figures["cells"].append(cell(job, t_name, s_name, args.minutes))
    finish("distill", figures)


def cell(job: DistillJob, teacher_name: str, student: str, minutes: float) -> dict:
    """The figures of a finished distillation, printed."""
    row = measured(job, job.trainer.state, {"teacher": teacher_name, "student": student, "minutes": minutes})
    row |= {"teacher_psnr": round(job.report["teacher_psnr"], 3), "fidelity_psnr": round(job.report["fidelity_psnr"], 3)}
    print(f"{teacher_name:11s} -> {student:11s}: student {row['psnr']:6.2f} dB (teacher {row['teacher_psnr']:6.2f}, "
          f"vs teacher {row['fidelity_psnr']:6.2f})  {row['megabytes']:7.2f} MB  {row['steps']:6d} steps", flush=True)
    return row


if __name__ == "__main__":
    main()
