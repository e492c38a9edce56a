"""Gaussian-splat rasterizer, forward + backward, native kernels against the torch twin.

Random Gaussians in front of one camera (the kind of scene a mic fit grows: overlapping, most of
them small), images of 100x100 and 400x400, 10^4 and 10^5 Gaussians. One step is what a training
step runs: SH colour (degree 3), projection, binning, compositing with the depth channel, and
the backward pass of an L1 loss. Prints ms per step and (pixels x Gaussians) per second, native and
reference timed round-robin, and their ratio.

    python benchmarks/bench_splat.py [--sizes 100 400] [--counts 10000 100000] [--repeats 5]
"""

import argparse

import torch
from common import finish, interleaved_medians

from onefield.renderers.splatting import camera_for, rasterize_gaussians


def scene(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * 2 + 3
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * 0.4
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.rand(n, 3, generator=g) * 2 - 5.5 + 0.5 * torch.log(torch.tensor(1e5 / n))
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    sh = torch.randn(n, 16, 3, generator=g) * 0.2
    return [t.requires_grad_() for t in (means, quats, log_scales, opacities, sh)]


def step_fn(params, size: int):
    means, quats, log_scales, opacities, sh = params
    cam = camera_for(torch.eye(4)[:3], size * 1.1, size * 1.1, size / 2, size / 2, size, size)
    target = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(1))
    background = torch.ones(3)

    def run():
        out = rasterize_gaussians(means, quats, log_scales.exp(), opacities, sh, cam, background, 3)
        (out.rgb - target).abs().mean().backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for n in args.counts:
            params = scene(n)
            fn = step_fn(params, size)
            times = interleaved_medians({"native": ("", fn), "reference": ("torch", fn)}, args.repeats)
            row = {"size": size, "gaussians": n, "native_ms": round(1000 * times["native"], 2),
                   "reference_ms": round(1000 * times["reference"], 2),
                   "speedup": round(times["reference"] / times["native"], 1),
                   "native_pixel_gaussians_per_s": round(size * size * n / times["native"])}
            rows.append(row)
            print(f"{size}x{size} {n:7d} Gaussians: native {row['native_ms']:9.2f} ms  reference "
                  f"{row['reference_ms']:9.2f} ms  ({row['speedup']}x)", flush=True)
    finish("splat", {"rows": rows})


if __name__ == "__main__":
    main()
