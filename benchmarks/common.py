"""Shared helpers for the benchmark scripts: timing, kernel selection, the result line."""

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from onefield.app.info import machine_info


@contextmanager
def kernels(name: str):
    """Run the block with ONEFIELD_KERNELS=name ('torch' for the reference, '' for native)."""
    old = os.environ.get("ONEFIELD_KERNELS")
    os.environ["ONEFIELD_KERNELS"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ONEFIELD_KERNELS")
        else:
            os.environ["ONEFIELD_KERNELS"] = old


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def finish(name: str, figures: dict[str, object]) -> None:
    """Print the closing JSON line: figures, machine, versions and the command."""
    result = {"benchmark": name, **figures, "machine": machine_info(),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    print(json.dumps(result))
