"""Instant-NGP's field: multiresolution hash encoding -> small density MLP (density logit + 15-d
feature) -> spherical-harmonics view encoding -> small colour MLP."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from onefield.cuda_ext import HashGridConfig, HashGridEncoding
from onefield.errors import UserError

from .base import Field
from .encodings import DensityColorHead, HeadConfig


@dataclass
class HashGridFieldConfig(HashGridConfig, HeadConfig):
    """The encoding's options (`HashGridConfig`), the decoder's (`HeadConfig`) and the optimiser's."""

    lr_encoding: float = 1e-2
    """Adam learning rate of the hash tables"""
    lr_mlp: float = 1e-2
    """Adam learning rate of the MLPs"""
    implementation: str = "auto"
    """hash-encoding kernels: auto (tiny-cuda-nn on CUDA when installed), onefield or tcnn"""
    coarse_to_fine: float = 0.0
    """training progress by which every level is active: from `coarse_levels` at the start, the finer levels
    are switched on one by one at equal steps (Neuralangelo, BARF); 0: all levels from the first step"""
    coarse_levels: int = 4
    """levels active at the start of a coarse-to-fine schedule"""


class HashGridField(Field):
    name = "hashgrid"
    config_class = HashGridFieldConfig

    def __init__(self, config: HashGridFieldConfig, aabb: Sequence[float] | Tensor, device: torch.device | str = "cpu",
                 cascades: int = 1):
        if not 0 <= config.coarse_to_fine <= 1 or config.coarse_levels < 1:
            raise UserError(f"hashgrid coarse_to_fine must be a fraction of the budget in [0, 1] and coarse_levels at "
                            f"least 1, got {config.coarse_to_fine} and {config.coarse_levels}")
        super().__init__(config, aabb, cascades)
        self.encoding = HashGridEncoding(config, device=device, implementation=config.implementation)
        self.head = DensityColorHead(self.encoding.out_dim, config)
        self.to(device)
        # active levels, set by the schedule before every training step (not saved: a loaded field, done
        # training or not, uses them all; levels not yet trained hold their ~1e-4 initial values)
        self.levels = config.n_levels

    def levels_at(self, progress: float) -> int:
        c = self.config
        start = min(c.coarse_levels, c.n_levels)
        if c.coarse_to_fine <= 0 or progress >= c.coarse_to_fine:
            return c.n_levels
        return min(start + int((c.n_levels - start + 1) * progress / c.coarse_to_fine), c.n_levels)

    def update_schedule(self, progress: float, grid: Any, generator: torch.Generator | None = None) -> bool:
        self.levels = self.levels_at(progress)
        return False  # the tables keep their shapes: the optimizer stays

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head.raw(self.encoding(self.normalize(x), self.levels))

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.head.color(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "encoding", "params": list(self.encoding.parameters()), "lr": self.config.lr_encoding},
            {"name": "mlp", "params": list(self.head.parameters()),
             "lr": self.config.lr_mlp},
        ]
