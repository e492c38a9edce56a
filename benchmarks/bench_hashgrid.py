"""Multiresolution hash encoding, forward + backward: native kernels vs the torch reference.

Instant-NGP's configuration: 16 levels x 2 features, 2^19 entries per level, base resolution 16,
finest 2048. Backward computes the table gradient (what NeRF training needs), and in the "d/dx"
timing the points' gradient too (what pose refinement needs: its rays' positions carry gradients).
Two point sets: uniform random points (every lookup a cache miss: the worst case) and samples along
camera rays (the coherent access pattern of real training).
"""

import argparse
import math

import torch
from common import finish, interleaved_medians

from onefield.cuda_ext import hash_encode, hash_grid_levels


def ray_points(n: int, seed: int) -> torch.Tensor:
    """n points on 64-sample segments of random rays through the unit cube."""
    g = torch.Generator().manual_seed(seed)
    n_rays = n // 64
    o = torch.rand(n_rays, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=g), dim=-1)
    t = torch.linspace(0, 0.5, 64)
    return (o[:, None] + d[:, None] * t[None, :, None]).reshape(-1, 3).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=2**16)
    parser.add_argument("--levels", type=int, default=16)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--log2-table", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    per_level = math.exp(math.log(2048 / 16) / (args.levels - 1))
    scales, res = hash_grid_levels(args.levels, 16, per_level)
    g = torch.Generator().manual_seed(0)
    table = ((torch.rand(args.levels, 2**args.log2_table, args.features, generator=g) * 2 - 1) * 1e-4)
    table = table.to(args.device).requires_grad_()
    point_sets = {"uniform": torch.rand(args.points, 3, generator=g), "rays": ray_points(args.points, 1)}

    figures: dict[str, object] = {"points": args.points, "levels": args.levels, "features": args.features,
                                  "log2_table": args.log2_table, "device": args.device}
    for set_name, x in point_sets.items():
        x = x.to(args.device)
        grad = torch.randn(x.shape[0], args.levels * args.features, generator=g).to(args.device)

        def step() -> None:
            table.grad = None
            hash_encode(x, table, scales, res).backward(grad)

        def step_dx() -> None:
            table.grad = None
            hash_encode(x.detach().requires_grad_(), table, scales, res).backward(grad)

        def forward() -> None:
            with torch.no_grad():
                hash_encode(x, table, scales, res)

        seconds = interleaved_medians({"native": ("", step), "reference": ("torch", step),
                                       "native_forward": ("", forward), "reference_forward": ("torch", forward),
                                       "native_dx": ("", step_dx)},
                                      args.repeats)
        timings = {}
        for name in ("native", "reference"):
            total, fwd = seconds[name], seconds[f"{name}_forward"]
            timings[name] = {"seconds": total, "forward_seconds": fwd, "points_per_s": x.shape[0] / total}
            print(f"{set_name:7s} {name:9s}: fwd+bwd {total * 1e3:8.1f} ms ({x.shape[0] / total:11.0f} points/s), "
                  f"fwd {fwd * 1e3:7.1f} ms")
        speedup = timings["reference"]["seconds"] / timings["native"]["seconds"]
        dx = seconds["native_dx"]
        print(f"{set_name:7s} native / reference: {speedup:.1f}x; native fwd+bwd with d/dx {dx * 1e3:.1f} ms "
              f"({dx / timings['native']['seconds']:.2f}x the table gradient alone)")
        figures[set_name] = {**timings, "speedup": round(speedup, 2), "native_dx_seconds": dx}
    finish("hashgrid", figures)


if __name__ == "__main__":
    main()
