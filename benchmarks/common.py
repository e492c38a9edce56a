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


def _timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(cases: dict[str, tuple[str, Callable[[], object]]], repeats: int,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds of each case {name: (ONEFIELD_KERNELS value, fn)}, timed round-robin (one run
    of every case per round) so a noisy machine's slow drifts hit all cases alike."""
    for env, fn in cases.values():
        with kernels(env):
            for _ in range(warmup):
                fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (env, fn) in cases.items():
            with kernels(env):
                times[name].append(_timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def finish(name: str, figures: dict[str, object]) -> None:
    """Print the closing JSON line: figures, machine, versions and the command."""
    result = {"benchmark": name, **figures, "machine": machine_info(),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    print(json.dumps(result))
