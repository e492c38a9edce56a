"""Encodings and layers shared by the backends: SH for view directions, NeRF's frequency encoding, MLPs."""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from onefield.errors import UserError

from .base import run_mlp

# Real spherical-harmonics constants, bands 0-3 (the basis Instant-NGP and Plenoxels use).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
       1.445305721320277, -0.5900435899266435)


def sh_encode(d: Tensor, degree: int = 4) -> Tensor:
    """Unit directions [N, 3] -> SH basis values [N, degree^2] (degree 1..4)."""
    if not 1 <= degree <= 4:
        raise UserError(f"SH degree must be 1..4, got {degree}")
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree > 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * xy * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy), _C3[5] * z * (xx - yy),
                _C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def positional_encoding(x: Tensor, n_freqs: int, include_input: bool = True) -> Tensor:
    """NeRF's frequency encoding [N, C] -> [N, C (+) 2 * C * n_freqs]: sin and cos of x * 2^k,
    k = 0..n_freqs-1, grouped by frequency."""
    if n_freqs == 0:
        return x if include_input else x[:, :0]
    scales = 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)  # [F]
    xs = (x[:, None, :] * scales[:, None]).flatten(1)  # [N, F * C]
    parts = [x] if include_input else []
    return torch.cat(parts + [torch.sin(xs), torch.cos(xs)], -1)


def mlp(sizes: "list[int] | tuple[int, ...]", output_bias: float | None = None) -> torch.nn.Sequential:
    """Linear layers with ReLU between them (none after the last); `output_bias` sets the last bias."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU(inplace=True))
    if output_bias is not None:
        torch.nn.init.constant_(layers[-1].bias, output_bias)
    return torch.nn.Sequential(*layers)


GEO_FEATURES = 15  # the Field contract's feature size


@dataclass
class HeadConfig:
    """The options of `DensityColorHead` (one block, mixed into the configs of the backends that use it)."""

    hidden: int = 64
    """width of the density MLP's hidden layer"""
    color_hidden: int = 64
    """width of the colour MLP's hidden layers"""
    color_layers: int = 2
    """hidden layers of the colour MLP"""
    sh_degree: int = 4
    """spherical-harmonics degree of the view-direction encoding (1-4)"""
    density_bias: float = -1.0
    """added to the density logit so a fresh field starts nearly transparent"""
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """arithmetic of the MLPs' matrix products: float32, or bfloat16 (autocast: the weights, the inputs and
    the outputs stay float32), as tiny-cuda-nn runs its MLPs in half precision on GPUs; about 2x faster on
    CPUs that multiply bf16 natively (AVX512-BF16, AMX). auto: bfloat16 on such CPUs, float32 elsewhere"""


class DensityColorHead(torch.nn.Module):
    """Instant-NGP's decoder, shared by the grid-feature backends: density MLP (encoding ->
    density logit + 15-d feature) and colour MLP (SH-encoded view direction + feature -> rgb)."""

    def __init__(self, in_dim: int, config: HeadConfig):
        super().__init__()
        if not 1 <= config.sh_degree <= 4:
            raise UserError(f"sh_degree must be 1..4, got {config.sh_degree}")
        if config.precision not in ("auto", "float32", "bfloat16"):
            raise UserError(f"precision must be auto, float32 or bfloat16, got {config.precision!r}")
        self.sh_degree, self.density_bias, self.precision = config.sh_degree, config.density_bias, config.precision
        self.density_mlp = mlp([in_dim, config.hidden, 1 + GEO_FEATURES])
        self.color_mlp = mlp([config.sh_degree**2 + GEO_FEATURES] + [config.color_hidden] * config.color_layers + [3])

    def raw(self, encoding: Tensor) -> tuple[Tensor, Tensor]:
        """(density logit [N], feature [N, 15]) from an encoding [N, in_dim]."""
        h = run_mlp(self.density_mlp, encoding, self.precision)  # [N, 16]
        return h[:, 0] + self.density_bias, h[:, 1:]

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return torch.sigmoid(run_mlp(self.color_mlp, torch.cat([sh_encode(d, self.sh_degree), feat], -1),
                                     self.precision))
