"""`onefield info`: versions, devices and which kernel implementation each device uses."""

import importlib.util
import os
import platform

import torch

import onefield
from onefield.cuda_ext import LOAD_ERROR, backend_for
from onefield.machine import cpu_has_bf16, cpu_name


def machine_info() -> dict[str, object]:
    """Plain data describing this machine and build; benchmarks embed it in their results."""
    info: dict[str, object] = {
        "onefield": onefield.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cpu": cpu_name(),
        "cpu_bf16": cpu_has_bf16(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "kernels_cpu": backend_for("cpu"),
        "kernels_cuda": backend_for("cuda") if torch.cuda.is_available() else None,
        "kernel_override": os.environ.get("ONEFIELD_KERNELS") or None,
        "extension_error": LOAD_ERROR,
    }
    for optional in ("tinycudann", "nerfacc", "gsplat"):
        info[optional] = importlib.util.find_spec(optional) is not None
    return info


def format_info(info: dict[str, object]) -> str:
    names = {"cpp": "native C++ (at::parallel_for)", "cuda": "native CUDA", "torch": "pure-torch reference"}
    lines = [
        f"onefield {info['onefield']}  (python {info['python']}, torch {info['torch']}, CUDA build {info['torch_cuda']})",
        f"cpu: {info['cpu']}, {info['cpu_threads']} threads, "
        + ("bf16 products (the MLPs run in bfloat16)" if info["cpu_bf16"] else "no bf16 products (the MLPs run in float32)"),
        f"gpu: {info['gpu'] or 'none'}",
        f"kernels on cpu: {names[str(info['kernels_cpu'])]}",
    ]
    if info["kernels_cuda"] is not None:
        lines.append(f"kernels on cuda: {names[str(info['kernels_cuda'])]}")
    if info["kernel_override"]:
        lines.append(f"ONEFIELD_KERNELS={info['kernel_override']}")
    if info["extension_error"]:
        lines.append(f"native extension not loaded: {info['extension_error']}")
    lines.append("optional: " + ", ".join(f"{k} {'yes' if info[k] else 'no'}" for k in ("tinycudann", "nerfacc", "gsplat")))
    return "\n".join(lines)
