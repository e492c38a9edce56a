"""Instant-NGP's field: multiresolution hash encoding -> small density MLP (density logit + 15-d
feature) -> spherical-harmonics view encoding -> small colour MLP."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from onefield.cuda_ext import HashGridConfig, HashGridEncoding

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


class HashGridField(Field):
    name = "hashgrid"
    config_class = HashGridFieldConfig

    def __init__(self, config: HashGridFieldConfig, aabb: Sequence[float] | Tensor, device: torch.device | str = "cpu",
                 cascades: int = 1):
        super().__init__(config, aabb, cascades)
        self.encoding = HashGridEncoding(config, device=device, implementation=config.implementation)
        self.head = DensityColorHead(self.encoding.out_dim, config)
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
