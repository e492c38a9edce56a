"""Analytic density fields with known geometry: oracles for the marcher and renderer.

They need no data and no training, so the marcher and renderer can be exercised (and their
output checked against geometry) anywhere.
"""

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Ball:
    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]


@dataclass
class ProceduralScene:
    """Coloured balls. With sharpness=None each ball is a hard sphere of constant density (its
    silhouette is exact); otherwise the density falls off as a sigmoid of the signed distance."""

    name: str
    balls: list[Ball]
    aabb: tuple[float, ...] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    density_scale: float = 50.0
    sharpness: float | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    _centers: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._centers = torch.tensor([b.center for b in self.balls], dtype=torch.float32)  # [B, 3]
        self._radii = torch.tensor([b.radius for b in self.balls], dtype=torch.float32)  # [B]
        self._colors = torch.tensor([b.color for b in self.balls], dtype=torch.float32)  # [B, 3]

    def _ball_density(self, x: Tensor) -> Tensor:
        sdf = torch.cdist(x, self._centers.to(x)) - self._radii.to(x)  # [N, B], negative inside
        if self.sharpness is None:
            return self.density_scale * (sdf < 0).to(x.dtype)
        return self.density_scale * torch.sigmoid(-sdf * self.sharpness)

    def density(self, x: Tensor) -> Tensor:
        """sigma [N] at x [N, 3]."""
        return self._ball_density(x).sum(-1)

    def rgb_sigma(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """(rgb [N, 3], sigma [N]): each ball's colour, mixed by density, lit by a fixed light."""
        dens = self._ball_density(x)  # [N, B]
        sigma = dens.sum(-1)
        mix = dens / sigma.clamp(min=1e-8)[:, None]
        albedo = mix @ self._colors.to(x)
        normal = torch.nn.functional.normalize(mix @ self._centers.to(x) - x, dim=-1) * -1.0
        light = torch.nn.functional.normalize(torch.tensor([0.4, -0.5, 0.8], device=x.device), dim=0)
        shade = 0.35 + 0.65 * (normal @ light).clamp(min=0.0)
        return (albedo * shade[:, None]).clamp(0.0, 1.0), sigma


def sphere(radius: float = 0.5, center: tuple[float, float, float] = (0.0, 0.0, 0.0),
           density: float = 50.0) -> ProceduralScene:
    """One hard sphere: opacity along a ray is 1 - exp(-density * chord length)."""
    return ProceduralScene("sphere", [Ball(center, radius, (0.8, 0.3, 0.2))], density_scale=density)
