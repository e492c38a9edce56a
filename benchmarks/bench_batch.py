"""Batch reconstruction of every shared scene x three backends: wall time through the local pool against
the same plan as tasks of a one-node Ray cluster on the same machine, side by side in one run.

Scenes: mic (NeRF-Synthetic, downscale 8, val views held out), fern (LLFF, downscale 16), fox (instant-ngp,
downscale 8), spot (`common-3d-meshes/spot.obj` rendered by `onefield mesh-scene`, 100 + 20 views at 100 px,
cached under $ONEFIELD_CACHE/mesh-scenes) and the demo shapes scene (64 + 16 views at 100 px); every cell
is trained for --minutes, evaluated and meshed (marching cubes at 128^3, F-score where a ground truth
exists). The Ray cluster is started here (`ray start --head --node-ip-address 127.0.0.1 --num-cpus CORES`)
and stopped at the end; both runs use the same layout (jobs x threads = cores).

    python benchmarks/bench_batch.py [--minutes 0.5] [--fields hashgrid tensorf-vm splats] [--keep DIR]

Overhead per cell: Ray's wall time of the cell minus the local pool's (load, train, evaluate, mesh: the
training budget is equal), and the batch's total wall time through Ray against the local pool.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import finish

from onefield.app.batch import make_plan, run_batch
from onefield.app.runs import DataSpec
from onefield.scenes import make_shapes_scene
from onefield.scenes.mesh_scene import make_mesh_scene

BIN = Path(sys.executable).parent


def scenes(data_root: Path, cache: Path) -> list[dict]:
    spot, shapes = cache / "mesh-scenes" / "spot-100", cache / "batch-scenes" / "shapes-100"
    if not (spot / "mesh.ply").is_file():
        make_mesh_scene(data_root / "common-3d-meshes" / "spot.obj", spot, n_train=100, n_test=20, size=100)
    if not (shapes / "mesh.ply").is_file():
        make_shapes_scene(shapes, n_train=64, n_test=16, size=100)
    return [{"path": str(data_root / "nerf-synthetic-mic"), "downscale": 8, "eval_split": "val"},
            {"path": str(data_root / "llff-fern"), "downscale": 16},
            {"path": str(data_root / "ingp-fox"), "downscale": 8},
            {"path": str(spot)}, {"path": str(shapes)}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_batch(raw: dict, **options) -> tuple[float, dict[str, dict]]:
    start = time.perf_counter()
    batch = run_batch(make_plan(raw), **options)
    wall = time.perf_counter() - start
    return wall, {s.cell.key: s.record for s in batch.states.values()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=0.5)
    parser.add_argument("--fields", nargs="+", default=["hashgrid", "tensorf-vm", "splats"])
    parser.add_argument("--keep", type=Path, help="keep the two batch folders (local/, ray/) here")
    args = parser.parse_args()
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    cache = Path(os.environ.get("ONEFIELD_CACHE", Path.home() / ".cache" / "onefield"))
    cores = len(os.sched_getaffinity(0))
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    raw = {"minutes": args.minutes, "scenes": scenes(data_root, cache), "fields": args.fields, "export": ["mesh"],
           "mesh": {"resolution": 128}}
    for name in ("local", "ray"):
        shutil.rmtree(out / name, ignore_errors=True)
    for spec in raw["scenes"]:  # the downscaled copies cached before either run is timed
        DataSpec(**spec).load()

    local_wall, local = timed_batch(raw | {"out": str(out / "local")})
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", str(cores), "--disable-usage-stats", "--include-dashboard=false",
                    f"--temp-dir={temp}"], check=True, capture_output=True)
    try:
        ray_wall, ray = timed_batch(raw | {"out": str(out / "ray")}, ray=f"127.0.0.1:{port}")
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)

    cells = []
    print(f"{'cell':28s} {'local s':>8s} {'ray s':>8s} {'ray-local':>9s} {'PSNR local':>10s} {'PSNR ray':>9s} "
          f"{'F@1%':>6s}")
    for key, a in local.items():
        b = ray[key]
        row = {"cell": key, "status": [a["status"], b["status"]], "local_s": round(a.get("wall_seconds", 0), 1),
               "ray_s": round(b.get("wall_seconds", 0), 1), "psnr": [a.get("psnr"), b.get("psnr")],
               "steps": [a.get("steps"), b.get("steps")], "fscore": (a.get("fscore") or {}).get("1%"),
               "error": a.get("error") or b.get("error")}
        cells.append(row)
        psnr = [f"{p:.2f}" if p is not None else "-" for p in row["psnr"]]
        print(f"{key:28s} {row['local_s']:8.1f} {row['ray_s']:8.1f} {row['ray_s'] - row['local_s']:+9.1f} "
              f"{psnr[0]:>10s} {psnr[1]:>9s} {row['fscore'] or float('nan'):6.3f}"
              + (f"  {row['error'].splitlines()[0]}" if row["error"] else ""), flush=True)
    per_cell = sum(c["ray_s"] - c["local_s"] for c in cells) / len(cells)
    overhead = ray_wall / local_wall - 1
    print(f"batch wall time: local {local_wall:.0f} s, ray {ray_wall:.0f} s: Ray overhead {100 * overhead:+.1f} % "
          f"(target < 5 %); per cell {per_cell:+.1f} s; reports: {out}/local/report.html, {out}/ray/report.html")
    finish("batch", {"minutes": args.minutes, "fields": args.fields, "cells": len(cells), "cores": cores,
                     "local_wall_s": round(local_wall, 1), "ray_wall_s": round(ray_wall, 1),
                     "ray_overhead": round(overhead, 4), "ray_overhead_per_cell_s": round(per_cell, 2),
                     "rows": cells})
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
