"""Marching + volume rendering, forward and backward: native kernels vs the torch reference.

4096 rays from random viewpoints through a 128^3 occupancy grid with 30% of its cells occupied
(a thresholded smooth random field, so occupancy is spatially coherent like a real scene),
Instant-NGP's step (1024 steps across the box diagonal). Per iteration: march, render the packed
samples, backpropagate a loss on color, depth and opacity into per-sample sigma and rgb.
"""

import argparse

import torch
from common import finish, interleaved_medians

from onefield.cuda_ext import grid_pack_bits
from onefield.renderers import OccupancyGrid, march
from onefield.renderers.volume import render


def coherent_grid(res: int, fraction: float, seed: int) -> OccupancyGrid:
    g = torch.Generator().manual_seed(seed)
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=res)
    centers = torch.rand(40, 3, generator=g) * 2 - 1
    widths = torch.rand(40, generator=g) * 0.25 + 0.05
    pts = grid.cell_points(torch.arange(grid.n_cells), torch.full((grid.n_cells, 3), 0.5))
    field = torch.zeros(grid.n_cells)
    for c, w in zip(centers, widths):
        field += torch.exp(-((pts - c) ** 2).sum(-1) / (2 * w * w))
    threshold = torch.quantile(field[torch.randperm(grid.n_cells, generator=g)[:100000]], 1 - fraction)
    grid.occs.copy_(field)
    grid.bitfield = grid_pack_bits(field, float(threshold))
    return grid


def rays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3.0
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.8
    return o, torch.nn.functional.normalize(target - o, dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--occupancy", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    grid = coherent_grid(args.resolution, args.occupancy, seed=0).to(args.device)
    rays_o, rays_d = (t.to(args.device) for t in rays(args.rays, seed=1))
    step = 2 * 3**0.5 / 1024

    def iteration() -> int:
        samples = march(rays_o, rays_d, grid, step_size=step, max_samples=1024)
        s = samples.n_samples
        sigma = torch.full((s,), 2.0, device=args.device, requires_grad=True)
        rgb = torch.full((s, 3), 0.5, device=args.device, requires_grad=True)
        out = render(samples, rays_o, rays_d, lambda x, d: (rgb, sigma))
        (out.rgb.sum() + out.depth.sum() + out.opacity.sum()).backward()
        return s

    def march_only() -> None:
        march(rays_o, rays_d, grid, step_size=step, max_samples=1024)

    n_samples = iteration()
    seconds = interleaved_medians({"native": ("", iteration), "reference": ("torch", iteration),
                                   "native_march": ("", march_only), "reference_march": ("torch", march_only)},
                                  args.repeats)
    results = {}
    for name in ("native", "reference"):
        total, marching = seconds[name], seconds[f"{name}_march"]
        results[name] = {"seconds": total, "march_seconds": marching, "samples": n_samples,
                         "rays_per_s": args.rays / total, "samples_per_s": n_samples / total}
        print(f"{name:9s}: {total * 1e3:8.1f} ms/iter (march {marching * 1e3:7.1f} ms)  "
              f"{args.rays / total:10.0f} rays/s  {n_samples / total:12.0f} samples/s  ({n_samples} samples)")
    speedup = results["reference"]["seconds"] / results["native"]["seconds"]
    march_speedup = results["reference"]["march_seconds"] / results["native"]["march_seconds"]
    print(f"native / reference: {speedup:.1f}x (marching alone {march_speedup:.1f}x); "
          f"grid occupancy {grid.occupied_fraction():.3f}")
    finish("march_render", {"rays": args.rays, "resolution": args.resolution,
                            "occupancy": round(grid.occupied_fraction(), 4), "device": args.device,
                            "native": results["native"], "reference": results["reference"],
                            "speedup": round(speedup, 2), "march_speedup": round(march_speedup, 2)})


if __name__ == "__main__":
    main()
