"""The GUI's View page on this machine: seconds per orbit frame of a fitted hashgrid run.

Target (issue 14): a 128x128 orbit frame (rgb) in at most 0.3 s on a CPU. Each scene is fitted
first through the same `FitJob` the CLI uses (`onefield fit DATA --minutes M --hashgrid.log2-table-size 17
--hashgrid.max-resolution 512`), then opened once with `open_view` and rendered with
`RunView.render` while the azimuth turns 18 degrees a frame (each frame a new pose, as while
dragging): the median over the frames, at 128 px (rgb and depth) and at the 64-px preview.

Scenes (default: both):
- shapes: the built-in procedural scene, 64 train / 16 held-out views at 100x100;
- fox: instant-ngp fox at 135x240 (downscale 8, 3 cascades; frames 72x128), from $ONEFIELD_DATA
  (default ../shared/data), skipped when absent.
"""

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import finish

from onefield.app.demo import DEMO_FIELD
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec
from onefield.app.trainer import TrainerConfig
from onefield.app.view import PREVIEW_SIZE, open_view
from onefield.scenes import make_shapes_scene

TARGET_SECONDS = 0.3


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_view(run_dir: Path, frames: int, device: str) -> dict[str, object]:
    start = time.perf_counter()
    view = open_view(run_dir, device)
    open_seconds = time.perf_counter() - start
    orbit = view.default_orbit()
    view.render(orbit, 32)  # warm-up: first-call allocations and kernel selection
    result: dict[str, object] = {"open_s": round(open_seconds, 3)}
    for name, size, output in (("rgb_128", 128, "rgb"), ("depth_128", 128, "depth"), ("preview_64", PREVIEW_SIZE, "rgb")):
        times = []
        for k in range(frames):
            pose = dataclasses.replace(orbit, azimuth=18.0 * k)
            _sync(device)
            t = time.perf_counter()
            image = view.render(pose, size, output)  # type: ignore[arg-type]
            _sync(device)
            times.append(time.perf_counter() - t)
        result[f"{name}_s"] = round(statistics.median(times), 4)
        result[f"{name}_max_s"] = round(max(times), 4)
        result[f"{name}_shape"] = list(image.shape)
    # beside it, in the same run: the same frames marched with the training step (the exact render)
    times, samples = [], []
    for k in range(frames):
        camera = view.camera(dataclasses.replace(orbit, azimuth=18.0 * k), 128)
        _sync(device)
        t = time.perf_counter()
        out = view.trainer.render_view(camera, 0)
        _sync(device)
        times.append(time.perf_counter() - t)
        samples.append(float(out["samples_per_ray"].float().mean()))
    result["exact_rgb_128_s"] = round(statistics.median(times), 4)
    result["exact_samples_per_ray"] = round(statistics.mean(samples), 2)
    result["pass"] = result["rgb_128_s"] <= TARGET_SECONDS  # type: ignore[operator]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget of each fit")
    parser.add_argument("--frames", type=int, default=20, help="orbit frames timed per output")
    parser.add_argument("--scenes", nargs="+", default=["shapes", "fox"], choices=["shapes", "fox"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    figures: dict[str, object] = {"target_s": TARGET_SECONDS, "minutes": args.minutes, "device": args.device,
                                  "load_average_at_start": os.getloadavg()[0]}  # other processes skew CPU timings
    with tempfile.TemporaryDirectory() as tmp:
        for scene in args.scenes:
            if scene == "fox" and not (data_root / "ingp-fox").is_dir():
                print(f"fox: skipped, no {data_root / 'ingp-fox'} (set ONEFIELD_DATA)", flush=True)
                continue
            data = (DataSpec(str(make_shapes_scene(Path(tmp) / "shapes", 64, 16, 100).root)) if scene == "shapes"
                    else DataSpec(str(data_root / "ingp-fox"), downscale=8))
            trainer = TrainerConfig(minutes=args.minutes, steps=1_000_000, eval_every=0, checkpoint_every=0)
            job = FitJob.create(data, "hashgrid", DEMO_FIELD, trainer, Path(tmp) / "runs", device=args.device)
            state = job.run()
            row = time_view(job.run_dir, args.frames, args.device)
            row |= {"steps": state.step, "psnr": round(job.final_eval.mean_psnr, 2) if job.final_eval else None}
            figures[scene] = row
            print(f"{scene:6s} ({row['steps']} steps, held-out PSNR {row['psnr']} dB): "
                  f"128 px rgb {row['rgb_128_s']:.3f} s/frame (median of {args.frames}, max {row['rgb_128_max_s']:.3f}), "
                  f"marched with the training step {row['exact_rgb_128_s']:.3f} s "
                  f"({row['exact_samples_per_ray']:.1f} samples/ray), "
                  f"depth {row['depth_128_s']:.3f} s, {PREVIEW_SIZE}-px preview {row['preview_64_s']:.3f} s, "
                  f"open {row['open_s']:.2f} s -> {'PASS' if row['pass'] else 'FAIL'} "
                  f"(target {TARGET_SECONDS} s at 128 px)", flush=True)
    figures["load_average_at_end"] = os.getloadavg()[0]
    finish("view", figures)


if __name__ == "__main__":
    main()
