"""Instant-NGP's field: multiresolution hash encoding -> small density MLP (density logit + 15-d
feature) -> spherical-harmonics view encoding -> small colour MLP."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from onefield.cuda_ext import HashGridConfig, HashGridEncoding

from .base import Field
from .encodings import DensityColorHead



@dataclass
class HashGridFieldConfig:
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
    lr_encoding: float = 1e-2
    """Adam learning rate of the hash tables"""
    lr_mlp: float = 1e-2
    """Adam learning rate of the MLPs"""
    implementation: str = "auto"
    """hash-encoding kernels: auto (tiny-cuda-nn on CUDA when installed), onefield or tcnn"""


class HashGridField(Field):
    name = "hashgrid"
    config_class = HashGridFieldConfig

    def __init__(self, config: HashGridFieldConfig, aabb: Sequence[float] | Tensor, device: torch.device | str = "cpu",
                 cascades: int = 1):
        super().__init__(config, aabb, cascades)
        grid = HashGridConfig(config.n_levels, config.n_features, config.log2_table_size, config.base_resolution,
                              config.max_resolution)
        self.encoding = HashGridEncoding(grid, device=device, implementation=config.implementation)
        self.head = DensityColorHead(self.encoding.out_dim, config.hidden, config.color_hidden, config.color_layers,
                                     config.sh_degree, config.density_bias)
        self.to(device)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head.raw(self.encoding(self.normalize(x)))

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.head.color(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "encoding", "params": list(self.encoding.parameters()), "lr": self.config.lr_encoding},
            {"name": "mlp", "params": list(self.head.parameters()),
             "lr": self.config.lr_mlp},
        ]
