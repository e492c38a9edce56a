"""Tensor-factor samplers, native against the torch reference, forward + backward:

- plane_sample: TensoRF-VM's hot path, one 300x300 plane of 48 components (channels last) sampled
  at 32768 points (the reference is torch's grid_sample, the pre-native TensoRF path);
- trivec_sample: Strivec's gather, 8 slots per point over 5000 local tensors of 16 texels x 32
  components at 32768 points.
"""

import argparse

import torch
from common import finish, interleaved_medians

from onefield.cuda_ext import plane_sample, trivec_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1 << 15)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    n, dev = args.points, args.device
    plane = torch.randn(300, 300, 48, generator=g).to(dev).requires_grad_()
    uv = (torch.rand(n, 2, generator=g) * 2 - 1).to(dev)
    vectors = torch.randn(3, 5000, 16, 32, generator=g).to(dev).requires_grad_()
    ids = torch.randint(-1, 5000, (n, 8), generator=g).to(dev)
    local = (torch.rand(n, 8, 3, generator=g) * 2 - 1).to(dev)
    weights = torch.rand(n, 8, generator=g).to(dev)

    def plane_step() -> None:
        plane.grad = None
        plane_sample(plane, uv).sum().backward()

    def trivec_step() -> None:
        vectors.grad = None
        trivec_sample(vectors, ids, local, weights).sum().backward()

    figures: dict[str, object] = {"points": n, "device": dev}
    for name, fn in (("plane", plane_step), ("trivec", trivec_step)):
        seconds = interleaved_medians({"native": ("", fn), "reference": ("torch", fn)}, args.repeats)
        speedup = seconds["reference"] / seconds["native"]
        print(f"{name:7s} fwd+bwd: native {seconds['native'] * 1e3:7.2f} ms, reference {seconds['reference'] * 1e3:7.2f} ms, "
              f"native / reference {speedup:.1f}x", flush=True)
        figures[name] = {"native_seconds": seconds["native"], "reference_seconds": seconds["reference"],
                         "speedup": round(speedup, 2)}
    finish("factors", figures)


if __name__ == "__main__":
    main()
