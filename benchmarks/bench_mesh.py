"""Mesh quality against ground truth: fit a known-geometry scene, export with every method, score.

Scenes:
- spot: `common-3d-meshes/spot.obj` rendered by `onefield mesh-scene` (UV checker, 100 train + 20
  test views at --size px; cached under ~/.cache/onefield/mesh-scenes);
- shapes: the built-in procedural demo scene (64 train / 16 test views at 100x100).
Each (scene, backend, budget) is one fit of --minutes through the same `FitJob` as `onefield fit`
(hashgrid at the CPU demo size): held-out PSNR, model size (and Gaussian count), render time per view;
after the longest budget, `onefield export mesh RUN --method M` for mc, tsdf and poisson (default
options: 256 lattice points / voxels along the occupied box, cleanup on), scored by `onefield
eval-mesh` against the scene's ground truth. Also times 256^3 and 512^3 mc exports on their own.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import trimesh
from common import finish

from onefield.app.demo import DEMO_FIELD
from onefield.app.export import export_mesh
from onefield.app.fit import FitJob
from onefield.app.mesh_config import MeshExportConfig
from onefield.app.mesh_metrics import score_mesh
from onefield.app.runs import DataSpec
from onefield.app.slim import parameter_count
from onefield.app.trainer import TrainerConfig
from onefield.scenes import make_shapes_scene
from onefield.scenes.mesh_scene import make_mesh_scene

METHODS = ("mc", "tsdf", "poisson")


def scene(name: str, size: int, data_root: Path, cache: Path) -> tuple[Path, Path]:
    """(dataset folder, ground-truth mesh) of a benchmark scene, made once and cached."""
    root = cache / f"{name}-{size}"
    if not (root / "mesh.ply").is_file():
        if name == "spot":
            make_mesh_scene(data_root / "common-3d-meshes" / "spot.obj", root, n_train=100, n_test=20, size=size)
        else:
            make_shapes_scene(root, n_train=64, n_test=16, size=size)
    return root, root / "mesh.ply"


def fit(root: Path, backend: str, minutes: float, out: Path) -> FitJob:
    trainer = TrainerConfig(minutes=minutes, steps=1_000_000, eval_every=0, checkpoint_every=0)
    job = FitJob.create(DataSpec(str(root)), backend, DEMO_FIELD if backend == "hashgrid" else {}, trainer, out)
    job.run()
    return job


def job_figures(job: FitJob) -> dict:
    state, result, n = job.trainer.state, job.final_eval, parameter_count(job.trainer.model)
    return {"minutes": job.trainer.config.minutes, "steps": state.step, "psnr": round(result.mean_psnr, 3),
            "ssim": round(result.mean_ssim, 4), "megabytes": round(n * 4 / 2**20, 2), "gaussians": state.gaussians,
            "render_ms_per_view": round(1000 * result.seconds_per_view, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["spot", "shapes"], choices=["spot", "shapes"])
    parser.add_argument("--backends", nargs="+", default=["hashgrid", "tensorf-vm"])
    parser.add_argument("--minutes", type=float, nargs="+", default=[3.0], help="budgets; meshes from the longest")
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    data_root = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    cache = Path(os.environ.get("ONEFIELD_CACHE", Path.home() / ".cache" / "onefield")) / "mesh-scenes"
    rows, fits, mc_seconds = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for scene_name in args.scenes:
            root, gt_path = scene(scene_name, args.size, data_root, cache)
            gt = trimesh.load(gt_path)
            for backend in args.backends:
                for minutes in sorted(args.minutes):
                    job = fit(root, backend, minutes, Path(tmp))
                    fits.append({"scene": scene_name, "backend": backend, **job_figures(job)})
                    print(f"{scene_name:6s} {backend:10s} {minutes:4.1f} min  {fits[-1]['psnr']:5.2f} dB  "
                          f"{fits[-1]['steps']:6d} steps  {fits[-1]['megabytes']:6.2f} MB  "
                          f"{fits[-1]['gaussians']:6d} Gaussians  render {fits[-1]['render_ms_per_view']:.0f} ms/view",
                          flush=True)
                psnr = job.final_eval.mean_psnr
                for method in METHODS:
                    export = export_mesh(job.run_dir, MeshExportConfig(method=method))
                    score = score_mesh(trimesh.load(export.path, process=False), gt)
                    row = {"scene": scene_name, "backend": backend, "psnr": round(psnr, 2), "method": method,
                           "chamfer": round(score.chamfer, 5), "f1": round(score.fscore["1%"], 4),
                           "f05": round(score.fscore["0.5%"], 4), "precision1": round(score.precision["1%"], 4),
                           "recall1": round(score.recall["1%"], 4), "normal_consistency": round(score.normal_consistency, 4),
                           "faces_raw": export.stages[0][1], "faces": export.faces,
                           "export_s": round(export.seconds["total"], 1)}
                    rows.append(row)
                    print(f"{scene_name:6s} {backend:10s} {psnr:5.2f} dB  {method:8s} Chamfer {row['chamfer']:.5f}  "
                          f"F@1% {row['f1']:.4f} (P {row['precision1']:.3f} R {row['recall1']:.3f})  "
                          f"F@0.5% {row['f05']:.4f}  NC {row['normal_consistency']:.4f}  "
                          f"faces {row['faces_raw']:,} -> {row['faces']:,}  {row['export_s']:.1f} s", flush=True)
                if backend == args.backends[0] and scene_name == args.scenes[0]:
                    for resolution in (256, 512):
                        start = time.perf_counter()
                        mc = export_mesh(job.run_dir, MeshExportConfig(method="mc", resolution=resolution, colors="none"))
                        mc_seconds[resolution] = round(time.perf_counter() - start, 1)
                        print(f"{resolution}^3 mc export (no colours, default cleanup): {mc_seconds[resolution]:.1f} s, "
                              f"{mc.stages[0][1]:,} -> {mc.faces:,} faces", flush=True)
    finish("mesh", {"minutes": args.minutes, "size": args.size, "fits": fits, "rows": rows, "mc_seconds": mc_seconds})


if __name__ == "__main__":
    main()
