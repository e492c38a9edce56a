"""`onefield demo`: render a built-in procedural scene through the real occupancy grid, marcher
and volume renderer, and write the images."""

import time
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from onefield.cuda_ext import backend_for
from onefield.renderers import OccupancyGrid, render_image
from onefield.scenes import SCENES, orbit_pose, pinhole_rays


@dataclass
class DemoResult:
    rgb_path: Path
    depth_path: Path
    seconds: float
    samples_per_ray: float
    occupied_fraction: float
    kernels: str


def _to_png(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def run_demo(out_dir: Path, scene_name: str = "orbs", size: int = 256, device: str = "cpu") -> DemoResult:
    if scene_name not in SCENES:
        raise ValueError(f"unknown scene {scene_name!r}; choose one of {sorted(SCENES)}")
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    scene = SCENES[scene_name]()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    step = 2.0 * 3**0.5 / 512  # 512 steps across the box diagonal
    grid = OccupancyGrid(scene.aabb, resolution=64).to(device)
    for _ in range(3):  # a few EMA rounds, as during training warm-up
        grid.update(scene.density, step_size=step)

    c2w = orbit_pose(azimuth_deg=-60.0, elevation_deg=25.0, radius=3.2)
    focal = size * 1.2
    rays_o, rays_d = pinhole_rays(c2w, focal, focal, size / 2, size / 2, size, size)
    background = torch.tensor(scene.background, device=device)
    out = render_image(rays_o.to(device), rays_d.to(device), grid, scene.rgb_sigma, step_size=step,
                       background=background, chunk=8192)
    seconds = time.perf_counter() - start

    rgb_path, depth_path = out_dir / f"{scene_name}_rgb.png", out_dir / f"{scene_name}_depth.png"
    iio.imwrite(rgb_path, _to_png(out["rgb"]))
    depth = out["depth"] / out["opacity"].clamp(min=1e-6)
    hit = out["opacity"] > 0.5
    near, far = (float(depth[hit].min()), float(depth[hit].max())) if bool(hit.any()) else (0.0, 1.0)
    depth_img = torch.where(hit, 1.0 - (depth - near) / max(far - near, 1e-6), torch.zeros_like(depth))
    iio.imwrite(depth_path, _to_png(depth_img))
    return DemoResult(rgb_path, depth_path, seconds, float(out["samples_per_ray"].float().mean()),
                      grid.occupied_fraction(), backend_for(device))
