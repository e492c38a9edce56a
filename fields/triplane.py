"""Multi-scale tri-planes (K-Planes, Fridovich-Keil et al. 2023, static case).

Three feature planes (xy, xz, yz) per scale; a point's feature at one scale is the Hadamard
(element-wise) product of its bilinear samples on the three planes, and the scales are
concatenated. Products, unlike TensoRF's sums, let one plane veto a feature (empty space) and
keep the decoder small: Instant-NGP's density and colour MLPs. Plane total variation smooths
the planes.

Defaults: K-Planes' 32 features and scales x1, x2, x4, x8, from a base of 32 texels instead of
64, so the finest plane is 256^2 and a step fits a CPU (the paper's setting: --triplane.base-resolution 64).
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from onefield.errors import UserError

from .base import Field
from .encodings import DensityColorHead, HeadConfig
from .factors import PLANE_AXES, sample_plane, total_variation


@dataclass
class TriplaneConfig(HeadConfig):
    base_resolution: int = 32
    """texels per side of the coarsest planes"""
    scales: tuple[int, ...] = (1, 2, 4, 8)
    """resolution multipliers of the scales (K-Planes: 1 2 4 8)"""
    features: int = 32
    """features per plane texel"""
    init_range: tuple[float, float] = (0.1, 0.5)
    """planes start uniform in this range (positive, for the multiplicative fusion)"""
    tv_weight: float = 1e-4
    """weight of plane total variation (K-Planes' plane TV)"""
    lr_planes: float = 1e-2
    """Adam learning rate of the planes"""
    lr_mlp: float = 1e-2
    """Adam learning rate of the MLPs"""


class TriplaneField(Field):
    name = "triplane"
    config_class = TriplaneConfig

    def __init__(self, config: TriplaneConfig, aabb, device: torch.device | str = "cpu", cascades: int = 1):
        super().__init__(config, aabb, cascades)
        if not config.scales or min(config.scales) < 1 or config.base_resolution < 2:
            raise UserError(f"triplane needs scales >= 1 and base_resolution >= 2, got {config.scales}, "
                             f"{config.base_resolution}")
        lo, hi = config.init_range
        self.planes = torch.nn.ParameterList()
        for scale in config.scales:
            r = config.base_resolution * scale
            for _ in PLANE_AXES:
                self.planes.append(torch.nn.Parameter(torch.empty(r, r, config.features).uniform_(lo, hi)))
        self.head = DensityColorHead(config.features * len(config.scales), config)
        self.to(device)

    def encode(self, x: Tensor) -> Tensor:
        """Concatenated multi-scale features [N, features * scales] at world positions x [N, 3]."""
        c = self.normalize(x) * 2.0 - 1.0  # [N, 3] in [-1, 1]
        uvs = [c[:, ab] for ab in PLANE_AXES]
        k, out = self.config.features, []
        for s in range(len(self.config.scales)):
            planes = self.planes[3 * s: 3 * s + 3]
            out.append(sample_plane(planes[0], uvs[0], k) * sample_plane(planes[1], uvs[1], k)
                       * sample_plane(planes[2], uvs[2], k))
        return torch.cat(out, -1)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head.raw(self.encode(x))

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.head.color(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        return [{"name": "planes", "params": list(self.planes), "lr": c.lr_planes},
                {"name": "mlp", "params": list(self.head.parameters()), "lr": c.lr_mlp}]

    def regularizers(self) -> dict[str, Tensor]:
        if self.config.tv_weight <= 0:
            return {}
        return {"tv": self.config.tv_weight * sum(total_variation(p) for p in self.planes)}
