"""The multiresolution hash encoding as a module: our kernels everywhere, tiny-cuda-nn on CUDA
when it is installed.

tiny-cuda-nn is optional and never required. It keeps its parameters in its own layout and
indexes dense levels slightly differently (it wraps the grid's +1 border modulo the level size
where we clamp), so the two are different parameterizations of the same encoding: the choice is
made once, when the module is built, and recorded in `implementation`; it never changes under a
trained model. A checkpoint made with one does not load into the other (the parameter names
differ: `table` vs `tcnn.params`).
"""

import importlib.util
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from onefield.errors import UserError

from .ops import hash_encode, hash_grid_levels

IMPLEMENTATIONS = ("auto", "onefield", "tcnn")


@dataclass
class HashGridConfig:
    n_levels: int = 16
    """hash-grid levels"""
    n_features: int = 2
    """features per level"""
    log2_table_size: int = 19
    """log2 of the hash-table entries per level (Instant-NGP: 19; 16-17 train faster on a CPU at low resolution)"""
    base_resolution: int = 16
    """grid resolution of the coarsest level"""
    max_resolution: int = 2048
    """grid resolution of the finest level; levels grow geometrically in between"""

    @property
    def per_level_scale(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.n_levels - 1))

    def tcnn_config(self) -> dict[str, object]:
        return {"otype": "HashGrid", "n_levels": self.n_levels, "n_features_per_level": self.n_features,
                "log2_hashmap_size": self.log2_table_size, "base_resolution": self.base_resolution,
                "per_level_scale": self.per_level_scale}


def tcnn_installed() -> bool:
    return importlib.util.find_spec("tinycudann") is not None


def choose_implementation(device: torch.device | str, requested: str = "auto") -> str:
    """'tcnn' for requested='auto' on a CUDA device with tiny-cuda-nn installed (and kernels not
    forced to the torch reference), otherwise 'onefield'. An explicit 'tcnn' that cannot run is
    an error, not a silent fallback."""
    if requested not in IMPLEMENTATIONS:
        raise UserError(f"hash-grid implementation must be one of {IMPLEMENTATIONS}, got {requested!r}")
    on_cuda = torch.device(device).type == "cuda"
    if requested == "tcnn" and not (on_cuda and tcnn_installed()):
        raise UserError("implementation='tcnn' needs a CUDA device and the tinycudann package "
                         f"(device={device}, tinycudann installed={tcnn_installed()}); "
                         "use implementation='onefield' or 'auto'")
    if requested == "auto":
        forced_torch = os.environ.get("ONEFIELD_KERNELS", "").lower() == "torch"
        return "tcnn" if on_cuda and tcnn_installed() and not forced_torch else "onefield"
    return requested


class HashGridEncoding(torch.nn.Module):
    """x [N, 3] in [0, 1]^3 -> features [N, n_levels * n_features]."""

    def __init__(self, config: HashGridConfig = HashGridConfig(), device: torch.device | str = "cpu",
                 implementation: str = "auto", init_scale: float = 1e-4):
        super().__init__()
        self.config = config
        self.implementation = choose_implementation(device, implementation)
        if self.implementation == "tcnn":
            import tinycudann as tcnn

            self.tcnn = tcnn.Encoding(3, config.tcnn_config(), dtype=torch.float32).to(device)
        else:
            self.scales, self.resolutions = hash_grid_levels(config.n_levels, config.base_resolution,
                                                             config.per_level_scale)
            shape = (config.n_levels, 2**config.log2_table_size, config.n_features)
            table = (torch.rand(shape, device=device) * 2 - 1) * init_scale
            self.table = torch.nn.Parameter(table)

    @property
    def out_dim(self) -> int:
        return self.config.n_levels * self.config.n_features

    def forward(self, x: Tensor, levels: int | None = None) -> Tensor:
        """Features of the `levels` coarsest levels (default: all), zero for the finer ones, which then
        get no gradient either (coarse-to-fine training). Our kernels skip the inactive levels' work."""
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"x must be [N, 3] in [0, 1]^3, got {tuple(x.shape)}")
        n = self.config.n_levels
        k = n if levels is None else levels
        if not 1 <= k <= n:
            raise ValueError(f"levels must be in [1, {n}], got {levels}")
        if self.implementation == "tcnn":
            out = self.tcnn(x).float()
            out = out[:, :k * self.config.n_features]
        else:
            # the whole table unsliced when every level is on: a slice's backward zero-fills and copies a
            # table-sized gradient (4 ms a step on fern's 16 MB table)
            table = self.table if k == n else self.table[:k]
            out = hash_encode(x, table, self.scales[:k], self.resolutions[:k])
        return out if k == n else torch.nn.functional.pad(out, (0, (n - k) * self.config.n_features))
