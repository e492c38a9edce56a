"""TensoRF (Chen et al. 2022): the radiance field as a 4-D tensor factorised into vector-matrix (VM)
or CP components.

- Density: sum over components of plane x line (VM: three plane/line pairs, one per axis split)
  or line x line x line (CP). Appearance: the same factorisation with more components, mapped by
  a learned basis matrix to the 15-d feature, then TensoRF's MLP shader on the feature and the
  view direction with their frequency encodings.
- Coarse to fine: the factors start at `resolution_init`^3 voxels and are upsampled (bilinear /
  linear resampling) to `resolution_final`^3 at TensoRF's iterations 2000, 3000, 4000, 5500 and
  7000 of 30000, here as fractions of the run so a time budget follows the same schedule.
- Box shrinking: at TensoRF's first alpha-mask update the factors are cropped to the occupied
  part of the box (read from the occupancy grid, which plays TensoRF's alpha mask), so later
  upsampling spends its voxels on the object.
- Regularisers: L1 on the density factors (TensoRF's sparsity prior) and total variation on the
  density and appearance factors (TensoRF turns TV on for real scenes).
- Rank growth and slimming (SlimmeRF): see `ranks.py`.

Differences from the paper's code, and why:
- density = exp(logit) (trunc_exp) rather than softplus(x - 10) x 25: every backend shares one
  activation so that distillation can match pre-activation densities (PVD).
- the appearance basis maps to 15 features (TensoRF: 27): the `Field` contract's feature size.
"""

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from onefield.errors import UserError

from .encodings import GEO_FEATURES, mlp, positional_encoding
from .factors import LINE_AXES, PLANE_AXES, resample, sample_line, sample_plane, total_variation
from .ranks import ComponentField, RankGrowthConfig, basis_columns

EMPTY_LOGIT = -15.0  # the density logit outside the (shrunk) tensor box


@dataclass
class ShaderConfig:
    """The options of `FeatureShader` (one block, mixed into the TensoRF and Strivec configs)."""

    feature_pe: int = 2
    """frequencies of the feature encoding in the shader"""
    view_pe: int = 2
    """frequencies of the view-direction encoding in the shader"""
    hidden: int = 128
    """width of the shader MLP's two hidden layers"""
    density_bias: float = -1.0
    """added to the density logit so a fresh field starts nearly transparent"""


class FeatureShader(torch.nn.Module):
    """TensoRF's MLP shader (MLP_Fea): feature [N, 15] and view direction [N, 3], each with its
    frequency encoding, -> two hidden layers -> rgb in [0, 1]."""

    def __init__(self, config: ShaderConfig):
        super().__init__()
        self.feature_pe, self.view_pe = config.feature_pe, config.view_pe
        in_dim = GEO_FEATURES * (1 + 2 * config.feature_pe) + 3 * (1 + 2 * config.view_pe)
        self.mlp = mlp([in_dim, config.hidden, config.hidden, 3], output_bias=0.0)

    def forward(self, feat: Tensor, d: Tensor) -> Tensor:
        h = torch.cat([feat, positional_encoding(feat, self.feature_pe, include_input=False),
                       d, positional_encoding(d, self.view_pe, include_input=False)], -1)
        return torch.sigmoid(self.mlp(h))


def _tensorf_schedule(*iterations: int) -> tuple[float, ...]:
    return tuple(i / 30000 for i in iterations)


@dataclass
class TensoRFVMConfig(ShaderConfig, RankGrowthConfig):
    density_rank: int = 16
    """density components per plane/line pair (TensoRF: 16)"""
    app_rank: int = 48
    """appearance components per plane/line pair (TensoRF: 48)"""
    resolution_init: int = 128
    """voxels per axis (cube root of the voxel count) at the start"""
    resolution_final: int = 300
    """voxels per axis after the last upsampling"""
    upsample_at: tuple[float, ...] = _tensorf_schedule(2000, 3000, 4000, 5500, 7000)
    """training progress (0-1) of each upsampling; the voxel count grows log-linearly"""
    shrink_at: tuple[float, ...] = _tensorf_schedule(2000)
    """training progress at which the factors are cropped to the occupied box"""
    init_scale: float = 0.1
    """standard deviation of the initial factors"""
    l1_weight: float = 8e-5
    """weight of the L1 sparsity loss on the density factors"""
    tv_density: float = 0.0
    """weight of total variation on the density factors (TensoRF: 0 for synthetic, 1 for real scenes)"""
    tv_app: float = 0.0
    """weight of total variation on the appearance factors"""
    lr_grid: float = 0.02
    """Adam learning rate of the factors"""
    lr_network: float = 1e-3
    """Adam learning rate of the basis matrix and the shader"""


@dataclass
class TensoRFCPConfig(TensoRFVMConfig):
    density_rank: int = 96
    """density components (TensoRF-CP: 96)"""
    app_rank: int = 288
    """appearance components (TensoRF-CP: 288)"""
    resolution_final: int = 256
    """voxels per axis after the last upsampling (TensoRF-CP: 500, which takes the model past 2 MB;
    256 keeps it under 2 MB even when the shrunk box is elongated, and is ample below ~400 px images)"""
    init_scale: float = 0.2
    """standard deviation of the initial factors (TensoRF-CP: 0.2)"""


class _TensoRF(ComponentField):
    resizable = ("density_planes", "density_lines", "app_planes", "app_lines")
    density_keys = ("density_planes.", "density_lines.")
    app_keys = ("app_planes.", "app_lines.")
    n_pairs: ClassVar[int]  # factor groups whose features concatenate: 3 for VM, 1 for CP
    deferred_color = True

    def __init__(self, config: TensoRFVMConfig, aabb, device: torch.device | str = "cpu", cascades: int = 1):
        super().__init__(config, aabb, cascades)
        if config.density_rank < 1 or config.app_rank < 1:
            raise UserError(f"ranks must be >= 1, got density {config.density_rank}, app {config.app_rank}")
        self.register_buffer("region", torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))  # in normalize() coords
        self.register_buffer("stage", torch.tensor(0))  # schedule events applied (saved)...
        self.stage_done = 0  # ...and read by every step without a device sync
        self.grow_rank(0.0)
        res = self._grid_size(config.resolution_init**3, self.region)
        self.density_planes, self.density_lines = self._make_factors(config.density_rank, res)
        self.app_planes, self.app_lines = self._make_factors(config.app_rank, res)
        self.basis = torch.nn.Linear(self.n_pairs * config.app_rank, GEO_FEATURES, bias=False)
        self.shader = FeatureShader(config)
        self.to(device)

    # ---- factors ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _make_factors(self, rank: int, res: list[int]) -> tuple[torch.nn.ParameterList, torch.nn.ParameterList]:
        """(planes, lines) of `rank` components at `res` voxels per axis."""

    def _grid_size(self, n_voxels: float, region: Tensor) -> list[int]:
        """Voxels per axis for `n_voxels` cubic voxels over `region` (TensoRF's N_to_reso)."""
        extent = (region[3:] - region[:3]) * (self.aabb[3:] - self.aabb[:3]).to(region)  # [3], world units
        voxel = (float(extent.prod()) / n_voxels) ** (1 / 3)
        return [max(2, round(e / voxel)) for e in extent.tolist()]

    @property
    def n_groups(self) -> int:
        return self.n_pairs

    def _coords(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tensor-box coordinates in [-1, 1] [N, 3] and inside mask [N]."""
        lo, hi = self.region[:3], self.region[3:]
        c = 2.0 * (self.normalize(x) - lo) / (hi - lo) - 1.0
        return c.clamp(-1.0, 1.0), (c.abs() <= 1.0 + 1e-6).all(-1)

    @abc.abstractmethod
    def _products(self, planes, lines, c: Tensor, k: int) -> Tensor:
        """Component values [n_pairs, N, k] of the first k components at box coordinates c [N, 3]."""

    # ---- the Field contract -------------------------------------------------------------------
    def _density_logit(self, c: Tensor, inside: Tensor) -> Tensor:
        kd = self.counts[0]
        value = self._products(self.density_planes, self.density_lines, c, kd).sum((0, 2))  # [N]
        return torch.where(inside, value + self.config.density_bias, torch.full_like(value, EMPTY_LOGIT))

    def _app_feature(self, c: Tensor) -> Tensor:
        """The 15-d appearance feature [N, 15] at box coordinates c [N, 3]."""
        ka = self.counts[1]
        app = self._products(self.app_planes, self.app_lines, c, ka)  # [n_pairs, N, ka]
        app = app.permute(1, 0, 2).reshape(app.shape[1], -1)  # [N, n_pairs * ka], pair-major like the basis
        return F.linear(app, basis_columns(self.basis.weight, self.n_pairs, ka))

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c, inside = self._coords(x)
        return self._density_logit(c, inside), self._app_feature(c)

    def density(self, x: Tensor) -> Tensor:
        c, inside = self._coords(x)
        return self.activate(x, self._density_logit(c, inside))  # no appearance work for grid probes

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.shader(feat, d)

    def color_at(self, x: Tensor, d: Tensor) -> Tensor:
        return self.shader(self._app_feature(self._coords(x)[0]), d)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        grids = [*self.density_planes, *self.density_lines, *self.app_planes, *self.app_lines]
        return [{"name": "grid", "params": grids, "lr": c.lr_grid},
                {"name": "network", "params": [*self.basis.parameters(), *self.shader.parameters()],
                 "lr": c.lr_network}]

    def regularizers(self) -> dict[str, Tensor]:
        c, out = self.config, {}
        kd, ka = self.counts
        density = [f[..., :kd] for f in (*self.density_planes, *self.density_lines)]
        if c.l1_weight > 0:
            out["l1"] = c.l1_weight * sum(f.abs().mean() for f in density)
        if c.tv_density > 0:
            out["tv_density"] = c.tv_density * sum(total_variation(f) for f in density)
        if c.tv_app > 0:
            out["tv_app"] = c.tv_app * sum(total_variation(f[..., :ka]) for f in (*self.app_planes, *self.app_lines))
        return out

    # ---- coarse to fine -----------------------------------------------------------------------
    def _events(self) -> list[tuple[float, int, str]]:
        c = self.config
        return sorted([(t, 0, "shrink") for t in c.shrink_at] + [(t, 1, "upsample") for t in c.upsample_at])

    def update_schedule(self, progress: float, grid: Any, generator: torch.Generator | None = None) -> bool:
        c, changed = self.config, False
        events = self._events()
        while self.stage_done < len(events) and progress >= events[self.stage_done][0]:
            done = events[: self.stage_done]
            if events[self.stage_done][2] == "shrink":
                if grid is None:
                    break  # the grid is not trained yet: shrink (and what follows) waits for it
                self._shrink(grid)
            else:
                n_up = sum(1 for e in done if e[2] == "upsample")
                counts = torch.logspace(math.log10(c.resolution_init**3), math.log10(c.resolution_final**3),
                                        len(c.upsample_at) + 1)
                self._resample_all(self.region.clone(), self._grid_size(float(counts[n_up + 1]), self.region))
            self.stage_done += 1
            self.stage.fill_(self.stage_done)
            changed = True
        self.grow_rank(progress)
        return changed

    def sync_host_state(self) -> None:
        super().sync_host_state()
        self.stage_done = int(self.stage)

    def resolution(self) -> list[int]:
        """Current voxels per axis (x, y, z)."""
        return [int(line.shape[0]) for line in self._lines_by_axis(self.density_lines)]

    @abc.abstractmethod
    def _lines_by_axis(self, lines) -> list[Tensor]:
        """The lines along x, y and z, in that order."""

    @torch.no_grad()
    def _shrink(self, grid: Any) -> None:
        """Crop the factors to the occupied cells of the grid (plus one cell), keeping the voxel size."""
        occupied = grid.binary().flatten().nonzero().squeeze(1)
        if occupied.numel() == 0:
            return
        lo_hi = [self.normalize(grid.cell_points(occupied, torch.full((occupied.numel(), 3), j, device=occupied.device,
                                                                            dtype=torch.float32))) for j in (0.0, 1.0)]
        pad = 1.0 / (grid.resolution * 2 ** (self.cascades - 1))
        old = self.region.clone()
        lo = torch.maximum(torch.minimum(lo_hi[0].amin(0), lo_hi[1].amin(0)) - pad, old[:3])
        hi = torch.minimum(torch.maximum(lo_hi[0].amax(0), lo_hi[1].amax(0)) + pad, old[3:])
        if bool(((hi - lo) >= (old[3:] - old[:3]) - 1e-6).all()):
            return
        new = torch.cat([lo, hi])
        res = [max(2, round(r * float(n) / float(o))) for r, n, o in
               zip(self.resolution(), (hi - lo).tolist(), (old[3:] - old[:3]).tolist())]
        self._resample_all(new, res)

    @torch.no_grad()
    def _resample_all(self, new_region: Tensor, res: list[int]) -> None:
        old = self.region
        for params in (self.density_planes, self.app_planes):
            for p, (a, b) in zip(params, PLANE_AXES):
                boxes = [torch.stack([torch.stack([r[a], r[b]]), torch.stack([r[a + 3], r[b + 3]])])
                         for r in (old, new_region)]
                p.data = resample(p.data, boxes[0], boxes[1], (res[b], res[a]))
        for params in (self.density_lines, self.app_lines):
            for p, axis in zip(params, self._line_axes()):
                boxes = [torch.stack([r[axis].repeat(2), r[axis + 3].repeat(2)]) for r in (old, new_region)]
                p.data = resample(p.data, boxes[0], boxes[1], (res[axis], 1))
        self.region.copy_(new_region)

    @abc.abstractmethod
    def _line_axes(self) -> tuple[int, ...]:
        """The axis each entry of a lines list runs along."""


class TensoRFVM(_TensoRF):
    """Vector-matrix decomposition: per component, three (plane, line) pairs."""

    name = "tensorf-vm"
    config_class = TensoRFVMConfig
    n_pairs = 3

    def _make_factors(self, rank, res):
        s = self.config.init_scale
        planes = [torch.nn.Parameter(s * torch.randn(res[b], res[a], rank)) for a, b in PLANE_AXES]
        lines = [torch.nn.Parameter(s * torch.randn(res[c], 1, rank)) for c in LINE_AXES]
        return torch.nn.ParameterList(planes), torch.nn.ParameterList(lines)

    def _line_axes(self):
        return LINE_AXES

    def _lines_by_axis(self, lines):
        return [lines[LINE_AXES.index(a)] for a in range(3)]

    def _products(self, planes, lines, c, k):
        return torch.stack([sample_plane(planes[i], c[:, ab], k) * sample_line(lines[i], c[:, LINE_AXES[i]], k)
                            for i, ab in enumerate(PLANE_AXES)])


class TensoRFCP(_TensoRF):
    """CANDECOMP/PARAFAC decomposition: per component, three lines (no planes)."""

    name = "tensorf-cp"
    config_class = TensoRFCPConfig
    n_pairs = 1
    resizable = ("density_lines", "app_lines")

    def _make_factors(self, rank, res):
        s = self.config.init_scale
        lines = [torch.nn.Parameter(s * torch.randn(res[a], 1, rank)) for a in range(3)]
        return torch.nn.ParameterList(), torch.nn.ParameterList(lines)

    def _line_axes(self):
        return (0, 1, 2)

    def _lines_by_axis(self, lines):
        return list(lines)

    def _products(self, planes, lines, c, k):
        return (sample_line(lines[0], c[:, 0], k) * sample_line(lines[1], c[:, 1], k)
                * sample_line(lines[2], c[:, 2], k))[None]
