"""Structure-from-motion (`onefield process`, pycolmap on the CPU) on the shared photo sets.

- strecha-Herz-Jesus-P8: registered/total, wall time, and pose accuracy against the ground-truth
  cameras after a similarity alignment of the camera centres (Umeyama): median rotation error in
  degrees, and median camera-centre error relative to the scene size (the largest distance
  between two ground-truth camera centres).
- sceaux-castle: registered/total and wall time.
- hloc-sacre-coeur (internet photos, unknown mixed cameras): registered/total.

Default options (`camera_mode=auto`: one shared camera when all photos share size and EXIF camera,
else one per image; principal point refined when 8+ photos share a camera).
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from common import finish

from onefield.scenes.calibrated import read_strecha_camera
from onefield.scenes.colmap import read_model
from onefield.scenes.sfm import ProcessConfig, process


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 over points [N, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(xd.T @ xs / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    s = float(np.trace(np.diag(sigma) @ d) / xs.var(0).sum())
    return s, r, mu_d - s * r @ mu_s


def pose_errors(model_dir: Path, gt_dir: Path) -> dict[str, float]:
    model = read_model(model_dir)
    est, gt = [], []
    for im in model.images.values():
        est.append(im.c2w())
        gt.append(read_strecha_camera(gt_dir / f"{Path(im.name).stem}.jpg.camera")[2])
    est_c2w, gt_c2w = np.stack(est), np.stack(gt)
    s, r, t = umeyama(est_c2w[:, :, 3], gt_c2w[:, :, 3])
    rot_err = []
    for e, g in zip(est_c2w, gt_c2w):
        rel = g[:, :3].T @ (r @ e[:, :3])
        rot_err.append(np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1.0, 1.0))))
    aligned = (s * (r @ est_c2w[:, :, 3].T)).T + t
    centres = gt_c2w[:, :, 3]
    size = max(np.linalg.norm(a - b) for a in centres for b in centres)
    centre_err = np.linalg.norm(aligned - centres, axis=1) / size
    return {"median_rotation_deg": round(float(np.median(rot_err)), 4), "max_rotation_deg": round(float(np.max(rot_err)), 4),
            "median_centre_error_rel": round(float(np.median(centre_err)), 5), "scene_size": round(float(size), 3)}


def run(name: str, source: Path, out: Path, config: ProcessConfig) -> dict:
    result = process(source, out / name, config)
    row = {"registered": len(result.registered), "total": result.total, "seconds": round(result.seconds, 1),
           "failed": result.failed}
    print(f"{name:18s} registered {len(result.registered):3d} / {result.total:3d}  {result.seconds:6.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-side", type=int, default=1600)
    args = parser.parse_args()
    data = Path(os.environ.get("ONEFIELD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    config = ProcessConfig(max_side=args.max_side)
    figures: dict[str, object] = {"max_side": args.max_side}
    with tempfile.TemporaryDirectory() as tmp:
        herz = data / "strecha-Herz-Jesus-P8"
        figures["herz_jesus"] = row = run("herz-jesus-p8", herz / "images", Path(tmp), config)
        row.update(pose_errors(Path(tmp) / "herz-jesus-p8" / "sparse" / "0", herz / "gt_dense_cameras"))
        print(f"{'':18s} median rotation error {row['median_rotation_deg']:.3f} deg, median centre error "
              f"{100 * row['median_centre_error_rel']:.3f}% of the scene size", flush=True)
        figures["sceaux_castle"] = run("sceaux-castle", data / "sceaux-castle" / "images", Path(tmp), config)
        figures["sacre_coeur"] = run("hloc-sacre-coeur", data / "hloc-sacre-coeur" / "mapping", Path(tmp), config)
    finish("sfm", figures)


if __name__ == "__main__":
    main()
