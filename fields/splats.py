"""Gaussian splats (3DGS, Kerbl et al. 2023): a set of anisotropic 3-d Gaussians with opacity and
spherical-harmonics colour, drawn by the rasterizer in ``renderers.splatting``.

The splat protocol (not the ray API): `render(cameras, index, background)` rasterizes a view;
`density(x)` and `color_at(x, d)` answer like a volume, so marching cubes, the occupancy grid, the
volumetric exporters and distillation read splats as they read every other backend. `forward(x, d)`
is (density, colour), the renderers' `rgb_sigma_fn` signature.

Parameters follow the 3DGS PLY layout: means, log scales, quaternions (w, x, y, z, any norm),
opacity logits, the degree-0 SH coefficient `sh0` [N, 1, 3] and the higher bands `shN` [N, K - 1, 3].
Their count changes during training (densification); `load_state_dict` takes the saved count.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from onefield.cuda_ext import splat as splat_ops
from onefield.cuda_ext.splat_reference import rotation
from onefield.errors import UserError
from onefield.fields.box_lattice import BoxLattice
from onefield.renderers.splatting import SplatRender, rasterize_gaussians, rgb_to_sh0, splat_camera
from onefield.scenes import Cameras

BOX_SIGMAS = 3.0  # density(x) sums each Gaussian only inside its 3-sigma box
PAIR_CHUNK = 1 << 21  # (point, Gaussian) pairs the torch twin of `density` / `color_at` evaluates at once


@dataclass
class SplatsConfig:
    sh_degree: int = 3
    """highest spherical-harmonics degree of the colour (0-3)"""
    sh_degree_every: int = 1000
    """steps between raising the SH degree in use by one (3DGS)"""
    init: Literal["auto", "points", "random"] = "auto"
    """starting Gaussians: points (the dataset's sparse points: COLMAP / `process` output), random (inside the
    visual hull where images have alpha, else in the box) or auto (points where the dataset has them)"""
    init_from: str | None = None
    """a fitted volumetric run folder: Gaussians drawn from its density, coloured by its field (replaces init)"""
    init_count: int = 20_000
    """Gaussians drawn by the random and volume initialisations"""
    init_opacity: float = 0.1
    """opacity of the starting Gaussians"""
    init_scale: float = 1.0
    """starting scale: this times the mean distance to the three nearest starting points"""
    strategy: Literal["mcmc", "adc"] = "mcmc"
    """how Gaussians are added and removed: mcmc (3DGS as MCMC: dead ones relocated, the count grown 5 % per
    refinement up to max_gaussians; the small-machine choice) or adc (3DGS adaptive density control: clone,
    split, prune, opacity reset)"""
    max_gaussians: int = 40_000
    """Gaussian budget (mcmc grows to it; adc never grows past it): 40k keep a 300 s mic model at 9 MB, within
    0.1 dB of 100k (BENCHMARKS.md, "Gaussian splats")"""
    refine_start: int = 100
    """first step that adds or removes Gaussians"""
    refine_every: int = 100
    """steps between refinements"""
    refine_until: float = 0.8
    """fraction of the budget (steps or minutes) after which the count is frozen (3DGS: 15k of 30k with adc,
    gsplat's mcmc 25k of 30k)"""
    grow_grad2d: float = 2e-4
    """adc: mean image-space gradient (pixels scaled to [-1, 1]) above which a Gaussian is cloned or split"""
    grow_scale3d: float = 0.01
    """adc: largest scale (fraction of the scene extent) up to which a Gaussian is cloned, split above it"""
    prune_opacity: float = 0.005
    """Gaussians fainter than this are pruned (adc) or relocated (mcmc)"""
    prune_scale3d: float = 0.1
    """adc: Gaussians larger than this fraction of the scene extent are pruned after the first opacity reset"""
    reset_every: int = 3000
    """adc: steps between opacity resets (every opacity clamped to twice prune_opacity)"""
    noise_lr: float = 5e5
    """mcmc: position noise, times the means' learning rate, pushing faint Gaussians to explore"""
    opacity_reg: float = 0.01
    """mcmc: weight of the mean opacity in the loss (frees Gaussians for relocation)"""
    scale_reg: float = 0.01
    """mcmc: weight of the mean scale in the loss"""
    ssim_weight: float = 0.2
    """loss = (1 - w) L1 + w (1 - SSIM) (3DGS)"""
    antialiased: bool = False
    """antialiased rasterization (Mip-Splatting's opacity compensation of the 0.3 px dilation)"""
    lr_means: float = 1.6e-4
    """learning rate of the means, times the scene extent, decayed 100x over the run (3DGS)"""
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 1.25e-4
    """learning rate of the higher SH bands (3DGS: the degree-0 rate / 20)"""

    def check(self) -> None:
        if not 0 <= self.sh_degree <= 3:
            raise UserError(f"splats.sh_degree must be 0-3, got {self.sh_degree}")
        if self.init_count < 1 or self.max_gaussians < 1:
            raise UserError("splats.init_count and splats.max_gaussians must be positive")
        if not 0 < self.init_opacity < 1:
            raise UserError(f"splats.init_opacity must lie in (0, 1), got {self.init_opacity}")
        if self.refine_every < 1 or self.sh_degree_every < 1 or self.reset_every < 1:
            raise UserError("splats.refine_every, sh_degree_every and reset_every must be positive")


def quat_rotation(q: Tensor) -> Tensor:
    """Quaternions (w, x, y, z; any norm, as trained) [N, 4] -> rotation matrices [N, 3, 3]."""
    return rotation(torch.nn.functional.normalize(q, dim=-1))


def knn_scale(points: Tensor, k: int = 3) -> Tensor:
    """[N] mean distance of each point [N, 3] to its k nearest others (3DGS's starting scale)."""
    from scipy.spatial import cKDTree

    p = points.detach().double().cpu().numpy()
    if len(p) <= k:
        return torch.full((len(p),), 0.01, dtype=points.dtype, device=points.device)
    dist, _ = cKDTree(p).query(p, k + 1)
    return torch.as_tensor(np.maximum(dist[:, 1:].mean(1), 1e-7), dtype=points.dtype, device=points.device)


class GaussianSplats(torch.nn.Module):
    """The `splats` backend. Built empty over the scene box (`aabb`, `cascades` as for a volume);
    the trainer places the first Gaussians with `initialise`."""

    name: ClassVar[str] = "splats"
    config_class: ClassVar[type] = SplatsConfig
    kind: ClassVar[str] = "splats"  # the trainer that fits it (volumes: "volume")
    deferred_color: ClassVar[bool] = False
    pinhole_only: ClassVar[bool] = True  # the rasterizer projects with K: distorted photos are resampled on load
    PARAMETERS: ClassVar[tuple[str, ...]] = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")

    def __init__(self, config: SplatsConfig, aabb: Sequence[float] | Tensor, device: str = "cpu", cascades: int = 1):
        super().__init__()
        config.check()
        self.config, self.cascades = config, cascades
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32, device=device).flatten())
        k = (config.sh_degree + 1) ** 2
        shapes = {"means": (3,), "log_scales": (3,), "quats": (4,), "opacity_logits": (), "sh0": (1, 3),
                  "shN": (k - 1, 3)}
        for name, shape in shapes.items():
            setattr(self, name, torch.nn.Parameter(torch.zeros(0, *shape, device=device)))
        self.extent = 1.0  # the scene extent the learning rates and thresholds scale with (`set_extent`)

    # ---- parameters ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        return torch.cat([self.sh0, self.shN], 1)  # [N, K, 3]

    def set_extent(self, extent: float) -> None:
        self.extent = float(extent)

    @torch.no_grad()
    def initialise(self, points: Tensor, colors: Tensor | None = None, scales: Tensor | None = None,
                   opacity: float | None = None) -> None:
        """Gaussians at points [N, 3] with colours [N, 3] in [0, 1] (grey when None), isotropic scales
        [N] (`init_scale` x `knn_scale` when None) and one opacity (`init_opacity` when None)."""
        device = self.aabb.device
        points = points.to(device, torch.float32)
        n = points.shape[0]
        if n == 0:
            raise UserError("no starting points for the Gaussians (the initialisation found none)")
        scales = self.config.init_scale * knn_scale(points) if scales is None else scales.to(device)
        colors = torch.full((n, 3), 0.5, device=device) if colors is None else colors.to(device, torch.float32)
        opacity = self.config.init_opacity if opacity is None else opacity
        values = {"means": points, "log_scales": scales.log()[:, None].expand(n, 3).contiguous(),
                  "quats": torch.tensor([1.0, 0, 0, 0], device=device).expand(n, 4).contiguous(),
                  "opacity_logits": torch.full((n,), math.log(opacity / (1 - opacity)), device=device),
                  "sh0": rgb_to_sh0(colors)[:, None], "shN": torch.zeros(n, *self.shN.shape[1:], device=device)}
        for name, value in values.items():
            getattr(self, name).data = value

    def param_groups(self) -> list[dict[str, Any]]:
        """One Adam group per parameter (3DGS): only the means' rate decays (to 1 %), none warms up."""
        c = self.config
        rates = {"means": c.lr_means * self.extent, "log_scales": c.lr_scales, "quats": c.lr_quats,
                 "opacity_logits": c.lr_opacities, "sh0": c.lr_sh0, "shN": c.lr_shN}
        return [{"name": name, "params": [getattr(self, name)], "lr": lr, "final_ratio": 0.01 if name == "means" else 1.0,
                 "warmup": False} for name, lr in rates.items()]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Parameters take the saved Gaussian count first (it grows and shrinks during training)."""
        for name in self.PARAMETERS:
            saved = state_dict.get(name)
            if saved is not None:
                getattr(self, name).data = torch.empty(saved.shape, dtype=saved.dtype, device=self.aabb.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    # ---- rasterization ---------------------------------------------------------------------------
    def render(self, cameras: Cameras, index: int, background: Tensor, sh_degree: int | None = None) -> SplatRender:
        """View `index` of `cameras`: rgb [H, W, 3] on `background` [3], depth (sum of weight x distance
        along each pixel's unit ray, as a volume render gives it), opacity [H, W]."""
        cam = splat_camera(cameras, index, antialiased=self.config.antialiased)
        degree = self.config.sh_degree if sh_degree is None else sh_degree
        return rasterize_gaussians(self.means, self.quats, self.scales, self.opacities, self.sh, cam,
                                   background.to(self.means), degree, ray_depth=True)

    # ---- the volume view ---------------------------------------------------------------------------
    def _boxes(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(whitening maps [N, 3, 3], 3-sigma half extents [N, 3], peak densities [N], centres [N, 3]); a
        point's squared Mahalanobis distance is |(x - mean) W|^2 with W = R S^-1, which keeps a thin axis
        that R S^-2 R^T would round away in float32 (scales of 1e-3 beside 1).
        A Gaussian's density peaks where a ray along its thinnest axis through its centre collects
        exactly its opacity: integral of sigma = -log(1 - opacity) (the thin axis: surfaces are thin
        Gaussians seen face on)."""
        rot, s = quat_rotation(self.quats), self.scales
        whiten = rot / s[:, None, :]
        cov_diag = ((rot * rot) * (s * s)[:, None, :]).sum(-1)  # diag(R S^2 R^T)
        half = BOX_SIGMAS * cov_diag.sqrt()
        peak = -torch.log1p(-self.opacities.clamp(max=0.99)) / (math.sqrt(2 * math.pi) * s.amin(-1))
        return whiten, half, peak, self.means

    def _query(self, x: Tensor, d: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """sigma [M] at x [M, 3] and, with directions d [M, 3], the density-weighted mean colour [M, 3]."""
        if len(self) == 0:
            return x.new_zeros(x.shape[0]), (x.new_zeros(x.shape[0], 3) if d is not None else None)
        whiten, half, peak, means = self._boxes()
        with torch.no_grad():
            lattice = BoxLattice(means - half, means + half)
        return splat_ops.query(x, d, lattice, means, whiten, peak, self.sh, self.config.sh_degree, PAIR_CHUNK)

    def density(self, x: Tensor) -> Tensor:
        """sigma [M] >= 0 at world positions x [M, 3]: the sum of the Gaussians whose 3-sigma box holds x."""
        return self._query(x, None)[0]

    def color_at(self, x: Tensor, d: Tensor) -> Tensor:
        """rgb [M, 3] in [0, 1]: the SH colours (seen along d [M, 3]) of the Gaussians at x, weighted by
        their density there; black where no Gaussian reaches."""
        return self._query(x, d)[1]

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [M], rgb [M, 3]) at x [M, 3] along d [M, 3]: the volume renderers' callable."""
        return self._query(x, d)
