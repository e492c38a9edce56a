"""The `onefield` command line."""

import argparse
import sys
from pathlib import Path

from .demo import run_demo
from .info import format_info, machine_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onefield", description="Neural fields: fit, view, convert, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices and active kernel implementations")
    demo = sub.add_parser("demo", help="render a built-in procedural scene through the marcher and renderer")
    demo.add_argument("--scene", default="orbs", help="built-in scene (orbs, sphere)")
    demo.add_argument("--size", type=int, default=256, help="image width and height in pixels")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    if args.command == "info":
        print(format_info(machine_info()))
        return 0
    try:
        result = run_demo(args.out, args.scene, args.size, args.device)
    except (ValueError, OSError) as error:
        print(f"onefield demo: {error}", file=sys.stderr)
        return 2
    print(f"rendered {args.scene} at {args.size}x{args.size} in {result.seconds:.2f} s "
          f"({result.samples_per_ray:.1f} samples/ray, {100 * result.occupied_fraction:.1f}% of cells occupied, "
          f"{result.kernels} kernels)")
    print(f"image: {result.rgb_path.resolve()}")
    print(f"depth: {result.depth_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
