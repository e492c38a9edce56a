"""Where a fit's marched samples lie: one fox fit (135x240, the trainer's defaults, visibility pass
off so every marched sample is trained) probed after each budget. 4096 random training rays are
marched through the grid; for each sample the transmittance T in front of it is computed in float64
from the field's density. Prints the samples per ray, the shares behind a surface (T < 1e-4: the
render's early stop gives them weight 0), behind 99 % opacity (T < 1e-2), faint but visible
(alpha < 0.01, T > 0.01) and the grid's occupied share.

    python bench_hidden_samples.py [--minutes 1 2 3 5]
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch
from common import finish

from onefield.app.demo import DEMO_FIELD
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.trainer import TrainerConfig
from onefield.renderers import march


@torch.no_grad()
def probe(trainer, n_rays: int = 4096) -> dict[str, float]:
    trainer.model.eval()
    rays_o, rays_d, *_ = trainer._batch(n_rays)
    s = march(rays_o, rays_d, trainer.grid, **trainer._march_options(trainer.cameras.near, trainer.cameras.far))
    x, _ = s.midpoints(rays_o, rays_d)
    tau = trainer.model.density(x).double() * (s.t_ends - s.t_starts).double()  # [S] optical depth
    trans = torch.exp(-s.sum_before(tau))
    alpha = 1.0 - torch.exp(-tau)
    trainer.model.train()
    share = lambda mask: round(float(mask.double().mean()), 4)  # noqa: E731
    return {"steps": trainer.state.step, "samples_per_ray": round(s.n_samples / n_rays, 2),
            "behind_surface": share(trans < 1e-4), "behind_99pct": share(trans < 1e-2),
            "faint_visible": share((alpha < 1e-2) & (trans > 1e-2)),
            "occupied": round(trainer.grid.occupied_fraction(), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    args = parser.parse_args()
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainerConfig(steps=10**7, minutes=max(args.minutes), eval_every=0, checkpoint_every=0,
                               visibility=False)
        job = FitJob.create(DataSpec(str(data_root / "ingp-fox"), downscale=8), "hashgrid", DEMO_FIELD, config,
                            Path(tmp) / "runs")
        rows = []
        for minutes in sorted(args.minutes):
            while job.trainer.state.seconds < 60.0 * minutes:
                job.trainer.step()
            rows.append({"minutes": minutes, **probe(job.trainer)})
            print(rows[-1], flush=True)
    finish("hidden_samples", {"fox": rows})


if __name__ == "__main__":
    main()
