"""Fit quality against training time on this machine: held-out PSNR/SSIM after fixed budgets of
training time, training throughput (rays/s, field points/s) and the render time of one view.

Scenes (default: mic and shapes):
- mic: NeRF-Synthetic mic at 100x100 (its 100 train views; the 50 present val views, on white);
- shapes: the built-in procedural scene (64 train / 16 held-out views at 100x100);
- fern: LLFF fern at 252x189 (images_16; every 8th view held out);
- fox: instant-ngp fox at 135x240 (downscale 8, OPENCV distortion; every 8th view held out);
- castle: sceaux-castle after `onefield process` (photos at 1000 px, then downscale 8 to 125x94;
  every 8th view held out).
One fresh run per budget and variant, through the same `FitJob` the CLI uses, equivalent to

    onefield fit DATA --minutes M --downscale K --hashgrid.log2-table-size 17 --hashgrid.max-resolution 512 \
        [the variant's --trainer.* options]

Variants (`--variants`, default: default): `default` (the trainer's defaults), or named option sets
from VARIANTS, or a JSON object of TrainerConfig options (key `backend`: another field backend than
the hash grid, e.g. `splats`, at its defaults; keys `field.NAME`: options of the backend). `--main DIR` also runs DIR's own copy of this script (a checkout of another commit, e.g.
today's main in a git worktree, with its extension built) on the same scenes and budgets first, in
the same process tree and machine state, so its rows compare side by side.

Each budget counts training time only (evaluation excluded). Points/s counts the samples the
sampler places in training steps (the occupancy-grid probes and proposal samples come on top); samples
per ray (those the sampler places: a full march through the grid) are given over the whole run (the
warm-up's unpruned grid included) and over its last 5 % of steps; "evaluated" counts only those the
field computed a density at (the visibility pass marches in rounds up to each ray's stop), "trained"
only those it was trained on (`TrainerConfig.visibility`). Each row
also lists the PSNR of every held-out view and the mean PSNR of up to 16 training views (fit versus
generalisation).
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import finish

from onefield.app.demo import DEMO_FIELD
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.trainer import TrainerConfig
from onefield.scenes import make_shapes_scene
from onefield.scenes.sfm import ProcessConfig, process


VARIANTS: dict[str, dict] = {
    "default": {},
    "grid": {"sampler": "grid", "distortion": 0.0},
    "grid+distortion": {"sampler": "grid", "distortion": 0.002},
    "proposal": {"sampler": "proposal", "distortion": 0.002},
    "default+poses+appearance": {"refine_poses": True, "appearance": True},
    "grid+distortion+poses": {"sampler": "grid", "distortion": 0.002, "refine_poses": True},
    "grid+distortion+appearance": {"sampler": "grid", "distortion": 0.002, "appearance": True},
    "grid+distortion+poses+appearance": {"sampler": "grid", "distortion": 0.002, "refine_poses": True,
                                         "appearance": True},
    "proposal+poses+appearance": {"sampler": "proposal", "distortion": 0.002, "refine_poses": True,
                                  "appearance": True},
    "coarse-images": {"coarse_images": 0.25},
    "coarse-to-fine": {"field.coarse_to_fine": 0.3},
    "splats": {"backend": "splats"},
}


def variant_options(name: str) -> dict:
    return json.loads(name) if name.startswith("{") else VARIANTS[name]


def run_main(checkout: Path, scenes: list[str], minutes: list[float], device: str) -> dict:
    """The figures of `checkout`'s own bench_fit.py, run on its own package: PYTHONPATH is a folder
    made beside it whose `onefield/` links what setup.py's package_dir maps (the package root's files
    and every top-level package folder), so nothing is imported from this checkout."""
    link_root = checkout.parent / f"{checkout.name}-pythonpath"
    package = link_root / "onefield"
    package.mkdir(parents=True, exist_ok=True)
    for item in [*(checkout / "onefield").iterdir(), *(p for p in checkout.iterdir() if (p / "__init__.py").is_file())]:
        if not (package / item.name).exists():
            (package / item.name).symlink_to(item.resolve())
    env = {**os.environ, "PYTHONPATH": str(link_root)}
    cmd = [sys.executable, str(checkout / "benchmarks" / "bench_fit.py"), "--scenes", *scenes,
           "--minutes", *map(str, minutes), "--device", device]
    done = subprocess.run(cmd, env=env, cwd=checkout / "benchmarks", capture_output=True, text=True, check=True)
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            print(f"main: {line}", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_once(data: DataSpec, minutes: float, out: Path, device: str, options: dict | None = None) -> dict[str, float]:
    options = dict(options or {})
    backend = options.pop("backend", "hashgrid")
    field = {k.removeprefix("field."): v for k, v in options.items() if k.startswith("field.")}
    trainer = TrainerConfig(minutes=minutes, steps=1_000_000, eval_every=0, checkpoint_every=0,
                            **{k: v for k, v in options.items() if not k.startswith("field.")})
    field_config = dataclasses.replace(DEMO_FIELD, **field) if backend == "hashgrid" else field
    job = FitJob.create(data, backend, field_config, trainer, out, device=device)
    # running totals after every step: the run's last 5 % say where the grid ended
    per_step: list[tuple[int, int, int, int]] = []
    state = job.run(on_step=lambda s: per_step.append((s.total_samples, s.total_unmarched, s.total_hidden, s.total_rays)))
    n = len(per_step)
    last = [b - a for a, b in zip(per_step[n - max(n // 20, 1) - 1] if n > 1 else (0, 0, 0, 0), per_step[-1])]
    result = job.final_eval
    assert result is not None
    train_views = job.trainer.evaluate(job.trainer.train_data, max_views=16)  # diagnosis: fit vs generalisation
    return {"psnr_per_view": [round(p, 2) for p in result.psnr], "train_views_psnr": round(train_views.mean_psnr, 3),
            "minutes": minutes, "steps": state.step, "train_seconds": round(state.seconds, 2),
            "psnr": round(result.mean_psnr, 3), "ssim": round(result.mean_ssim, 4),
            "rays_per_s": round(state.total_rays / state.seconds), "points_per_s": round(state.total_samples / state.seconds),
            "samples_per_ray": round(state.total_samples / state.total_rays, 2),
            "samples_per_ray_last_5pct": round(last[0] / last[3], 2),
            "evaluated_per_ray": round((state.total_samples - state.total_unmarched) / state.total_rays, 2),
            "evaluated_per_ray_last_5pct": round((last[0] - last[1]) / last[3], 2),
            "trained_per_ray": round((state.total_samples - state.total_hidden) / state.total_rays, 2),
            "render_ms_per_view": round(1000 * result.seconds_per_view, 1), "views": len(result.psnr),
            "gaussians": state.gaussians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--scenes", nargs="+", default=["mic", "shapes"], choices=["mic", "shapes", "fern", "fox", "castle"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mic-downscale", type=int, default=8, help="8: 100x100 (CPU); 1: 800x800 (GPU)")
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help=f"trainer option sets: {', '.join(VARIANTS)}, or JSON objects of TrainerConfig options")
    parser.add_argument("--main", type=Path, default=None,
                        help="a checkout of another commit (extension built) whose bench_fit.py runs first, same scenes")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    if args.main is not None:
        figures["main"] = run_main(args.main, args.scenes, args.minutes, args.device)
    torch.manual_seed(0)
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        makers = {
            "mic": lambda: DataSpec(str(data_root / "nerf-synthetic-mic"), downscale=args.mic_downscale, eval_split="val"),
            "shapes": lambda: DataSpec(str(make_shapes_scene(Path(tmp) / "shapes", 64, 16, 100).root)),
            "fern": lambda: DataSpec(str(data_root / "llff-fern"), downscale=16),
            "fox": lambda: DataSpec(str(data_root / "ingp-fox"), downscale=8),
            "castle": lambda: DataSpec(str(process(data_root / "sceaux-castle" / "images", Path(tmp) / "castle",
                                                   ProcessConfig(max_side=1000)).out), downscale=8),
        }
        specs = {name: makers[name]() for name in args.scenes}
        for name, spec in specs.items():
            rows = []
            for minutes in args.minutes:
                for variant in args.variants:
                    row = fit_once(spec, minutes, Path(tmp) / "runs", args.device, variant_options(variant))
                    rows.append({"variant": variant, **row})
                    print(f"{name:7s} {minutes:4.1f} min {variant:34s} PSNR {row['psnr']:6.2f} dB (train views "
                          f"{row['train_views_psnr']:5.2f})  SSIM {row['ssim']:.4f}  {row['steps']:6d} steps  "
                          f"{row['rays_per_s']:8d} rays/s  {row['samples_per_ray']:6.1f} samples/ray "
                          f"({row['samples_per_ray_last_5pct']:.1f} in the last 5 % of steps; "
                          f"{row['evaluated_per_ray']:.1f} ({row['evaluated_per_ray_last_5pct']:.1f}) evaluated, "
                          f"{row['trained_per_ray']:.1f} trained)  "
                          f"render {row['render_ms_per_view']:.0f} ms/view ({row['views']} views)", flush=True)
            figures[name] = rows
    finish("fit", figures | {"device": args.device})


if __name__ == "__main__":
    main()
