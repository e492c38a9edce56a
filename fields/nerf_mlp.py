"""The original NeRF MLP (Mildenhall et al. 2020): frequency-encoded position -> 8 x 256 ReLU
layers with the input re-injected after the fourth -> density and a feature; the feature and the
encoded view direction -> 128 -> rgb. Slow (every sample runs the whole network), but the
classic baseline and a distillation target.

One change, for the `Field` contract: the trunk's feature is projected to 15 values (NeRF keeps
256) before the colour branch, so every backend exposes the same distillable feature.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import Field
from .encodings import GEO_FEATURES, mlp, positional_encoding


@dataclass
class NerfMLPConfig:
    depth: int = 8
    """layers of the trunk"""
    width: int = 256
    """width of the trunk"""
    skips: tuple[int, ...] = (4,)
    """trunk layers whose input is concatenated with the encoded position again"""
    position_freqs: int = 10
    """frequencies of the position encoding (NeRF: 10)"""
    direction_freqs: int = 4
    """frequencies of the view-direction encoding (NeRF: 4)"""
    color_width: int = 128
    """width of the colour branch"""
    density_bias: float = -1.0
    """added to the density logit so a fresh field starts nearly transparent"""
    lr: float = 5e-4
    """Adam learning rate (NeRF: 5e-4)"""


class NerfMLPField(Field):
    name = "mlp"
    config_class = NerfMLPConfig

    def __init__(self, config: NerfMLPConfig, aabb, device: torch.device | str = "cpu", cascades: int = 1):
        super().__init__(config, aabb, cascades)
        in_dim = 3 * (1 + 2 * config.position_freqs)
        self.trunk = torch.nn.ModuleList()
        width_in = in_dim
        for i in range(config.depth):
            self.trunk.append(torch.nn.Linear(width_in, config.width))
            width_in = config.width + (in_dim if i + 1 in config.skips else 0)
        self.out = torch.nn.Linear(width_in, 1 + GEO_FEATURES)
        self.color_mlp = mlp([GEO_FEATURES + 3 * (1 + 2 * config.direction_freqs), config.color_width, 3])
        self.to(device)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        enc = positional_encoding(self.normalize(x) * 2.0 - 1.0, self.config.position_freqs)  # [N, 63]
        h = enc
        for i, layer in enumerate(self.trunk):
            h = torch.relu(layer(h))
            if i + 1 in self.config.skips:
                h = torch.cat([h, enc], -1)
        out = self.out(h)  # [N, 16]
        return out[:, 0] + self.config.density_bias, out[:, 1:]

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return torch.sigmoid(self.color_mlp(torch.cat([feat, positional_encoding(d, self.config.direction_freqs)], -1)))

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "mlp", "params": list(self.parameters()), "lr": self.config.lr}]
