"""splats on mic 100x100 after a long budget, with two Gaussian budgets side by side in one run:
held-out PSNR (50 val views on white), Gaussian count, size and render time.

    python benchmarks/bench_splats_budget.py --minutes 5 --max-gaussians 100000 40000
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch
from common import finish

from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.slim import parameter_count
from onefield.app.trainer import TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--max-gaussians", type=int, nargs="+", default=[100_000, 40_000])
    parser.add_argument("--strategy", default="mcmc", choices=["mcmc", "adc"])
    args = parser.parse_args()
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    spec = DataSpec(str(data_root / "nerf-synthetic-mic"), downscale=8, eval_split="val")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.max_gaussians:
            torch.manual_seed(0)
            trainer = TrainerConfig(minutes=args.minutes, steps=1_000_000, eval_every=0, checkpoint_every=0)
            job = FitJob.create(spec, "splats", {"max_gaussians": budget, "strategy": args.strategy}, trainer, Path(tmp))
            state = job.run()
            result = job.final_eval
            n = parameter_count(job.trainer.model)
            rows.append({"max_gaussians": budget, "strategy": args.strategy, "minutes": args.minutes, "steps": state.step,
                         "gaussians": state.gaussians, "psnr": round(result.mean_psnr, 3), "ssim": round(result.mean_ssim, 4),
                         "megabytes": round(n * 4 / 2**20, 2), "render_ms_per_view": round(1000 * result.seconds_per_view, 1)})
            print(rows[-1], flush=True)
    finish("splats_budget", {"scene": "mic 100x100, 50 val views", "runs": rows})


if __name__ == "__main__":
    main()
