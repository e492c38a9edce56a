"""Every field backend on one scene and one machine: held-out PSNR after fixed training-time
budgets, model size, training throughput and render time, plus a PSNR-versus-size curve for each
slimmable backend (slimmed from its longest run, no retraining).

Scene: NeRF-Synthetic mic at 100x100 (its 100 train views; the 50 present val views, on white).
Each (backend, budget) is one fresh run through the same `FitJob` as

    onefield fit DATA --field NAME --minutes M --downscale 8

with the backend's default configuration, except hashgrid, which uses the CPU demo size
(log2 table 17, max resolution 512; see bench_fit.py). Budgets count training time only.
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch
from common import finish

from onefield import fields
from onefield.app.demo import DEMO_FIELD
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.slim import parameter_count, slim_run
from onefield.app.trainer import TrainerConfig
from onefield.fields.ranks import SlimmableField


def fit_once(data: DataSpec, name: str, minutes: float, out: Path) -> tuple[dict, FitJob]:
    trainer = TrainerConfig(minutes=minutes, steps=1_000_000, eval_every=0, checkpoint_every=0)
    job = FitJob.create(data, name, DEMO_FIELD if name == "hashgrid" else {}, trainer, out)
    state = job.run()
    result = job.final_eval
    assert result is not None
    n = parameter_count(job.trainer.model)
    return {"backend": name, "minutes": minutes, "steps": state.step, "psnr": round(result.mean_psnr, 3),
            "ssim": round(result.mean_ssim, 4), "parameters": n, "megabytes": round(n * 4 / 2**20, 2),
            "points_per_s": round(state.total_samples / state.seconds), "rays_per_s": round(state.total_rays / state.seconds),
            "render_ms_per_view": round(1000 * result.seconds_per_view, 1), "gaussians": state.gaussians}, job


def slim_ranks(full: int, count: int) -> list[int]:
    """`count` ranks from full down to about full / 8, evenly spaced."""
    return sorted({max(1, round(full * (1 - i * (1 - 1 / 8) / (count - 1)))) for i in range(count)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument("--backends", nargs="+", default=fields.names(), choices=fields.names())
    parser.add_argument("--slim-points", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    spec = DataSpec(str(data_root / "nerf-synthetic-mic"), downscale=8, eval_split="val")
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends:
            job = None
            for minutes in args.minutes:
                row, job = fit_once(spec, name, minutes, Path(tmp))
                rows.append(row)
                print(f"{name:11s} {minutes:5.1f} min: PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  "
                      f"{row['megabytes']:7.2f} MB  {row['steps']:6d} steps  {row['points_per_s']:9d} points/s  "
                      f"render {row['render_ms_per_view']:.0f} ms/view"
                      + (f"  {row['gaussians']} Gaussians" if row["gaussians"] else ""), flush=True)
            if args.slim_points > 1 and job is not None and isinstance(job.trainer.model, SlimmableField):
                curve = slim_run(job.run_dir, slim_ranks(job.trainer.model.rank, args.slim_points))
                curves[name] = [{k: row[k] for k in ("rank", "parameters", "megabytes", "psnr", "ssim")} for row in curve]
                for point in curves[name]:
                    print(f"{name:11s} slim rank {point['rank']:4d}: {point['megabytes']:7.3f} MB  "
                          f"PSNR {point['psnr']:6.2f} dB", flush=True)
    finish("backends", {"scene": "mic 100x100, 50 val views", "runs": rows, "slim_curves": curves})


if __name__ == "__main__":
    main()
