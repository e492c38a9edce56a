"""Strivec (Gao et al. 2023): sparse local tri-vector tensors.

Instead of one global tensor, the scene is covered by many small local tensors placed around the
geometry. Each local tensor is CP-factorised: per component, three short vectors (one per axis of
its cube). A point's features are the inverse-distance-weighted sum of the local tensors whose
cubes cover it, at every scale; density sums the density components, appearance features go
through a basis matrix and TensoRF's shader (`tensorf.FeatureShader`).

Placement. Tensors sit on a lattice per scale (`scales`: cells per box side; a tensor's cube spans
one lattice cell on each side of its centre, so up to 8 tensors of a scale cover a point). The
coarse stage trains the coarsest scale on the full lattice; once the occupancy grid has been
trained (`place_at`, TensoRF's first alpha-mask update by default), the coarse tensors away from
the geometry are dropped and the finer scales are placed on the lattice points whose cubes touch
occupied cells. This replaces the paper's external point cloud (MVS or a pretrained TensoRF)
with onefield's own coarse stage.

Differences from the paper's code: fixed local vector length (no local upsampling); exp density
and 15 features like every onefield backend.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from onefield.cuda_ext import trivec_sample
from onefield.errors import UserError

from .encodings import GEO_FEATURES
from .ranks import ComponentField, RankGrowthConfig, basis_columns
from .tensorf import EMPTY_LOGIT, FeatureShader, ShaderConfig

CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # [8, 3]


@dataclass
class StrivecConfig(ShaderConfig, RankGrowthConfig):
    scales: tuple[int, ...] = (16, 32)
    """lattice cells per box side at each scale, coarse to fine (a tensor covers one cell around its centre)"""
    vector_length: int = 16
    """texels of each local vector"""
    density_rank: int = 8
    """density components per local tensor"""
    app_rank: int = 24
    """appearance components per local tensor"""
    place_at: float = 2000 / 30000
    """training progress at which tensors are placed around the geometry found by the coarse stage"""
    place_min_fill: float = 0.05
    """a lattice cell gets tensors when at least this fraction of its occupancy-grid cells is occupied"""
    place_max_occupancy: float = 0.1
    """placement waits (until 3 x place_at at most) for the occupancy grid to fall below this fraction"""
    init_scale: float = 0.2
    """standard deviation of the initial vectors"""
    l1_weight: float = 8e-5
    """weight of the L1 sparsity loss on the density vectors"""
    lr_grid: float = 0.02
    """Adam learning rate of the local vectors"""
    lr_network: float = 1e-3
    """Adam learning rate of the basis matrix and the shader"""


class StrivecField(ComponentField):
    name = "strivec"
    config_class = StrivecConfig
    resizable = ("density_vectors", "app_vectors")
    density_keys = ("density_vectors.",)
    app_keys = ("app_vectors.",)
    deferred_color = True

    def __init__(self, config: StrivecConfig, aabb, device: torch.device | str = "cpu", cascades: int = 1):
        super().__init__(config, aabb, cascades)
        if not config.scales or min(config.scales) < 1 or list(config.scales) != sorted(config.scales):
            raise UserError(f"strivec scales must be increasing lattice sizes >= 1, got {config.scales}")
        if config.vector_length < 2 or config.density_rank < 1 or config.app_rank < 1:
            raise UserError("strivec needs vector_length >= 2 and ranks >= 1")
        self.grow_rank(0.0)
        self.register_buffer("placed", torch.tensor(False))  # saved...
        self.is_placed = False  # ...and read by every step without a device sync
        self.density_vectors, self.app_vectors = torch.nn.ParameterList(), torch.nn.ParameterList()
        for s, g in enumerate(config.scales):
            # the coarse stage: the coarsest lattice complete, the finer ones empty until placement
            mask = torch.full(((g + 1) ** 3,), s == 0, dtype=torch.bool)
            index = torch.where(mask, torch.cumsum(mask.long(), 0) - 1, torch.full_like(mask, -1, dtype=torch.long))
            self.register_buffer(f"lattice_index_{s}", index)  # lattice point -> tensor id, -1: none
            self.density_vectors.append(self._new_vectors(int(mask.sum()), config.density_rank))
            self.app_vectors.append(self._new_vectors(int(mask.sum()), config.app_rank))
        self.basis = torch.nn.Linear(len(config.scales) * config.app_rank, GEO_FEATURES, bias=False)
        self.shader = FeatureShader(config)
        self.to(device)

    def _new_vectors(self, n_tensors: int, rank: int, device=None,
                     generator: torch.Generator | None = None) -> torch.nn.Parameter:
        c = self.config
        return torch.nn.Parameter(c.init_scale * torch.randn(3, n_tensors, c.vector_length, rank, device=device,
                                                             generator=generator))

    def _index(self, s: int) -> Tensor:
        return getattr(self, f"lattice_index_{s}")

    def n_tensors(self) -> list[int]:
        """Local tensors per scale."""
        return [int(v.shape[1]) for v in self.density_vectors]

    # ---- lookup -------------------------------------------------------------------------------
    def _slots(self, u: Tensor, s: int) -> tuple[Tensor, Tensor, Tensor]:
        """For points u [N, 3] in [0, 1]: ids [N, 8] of the scale's tensors covering them (-1: none),
        local coordinates [N, 8, 3] in [-1, 1] and normalised inverse-distance weights [N, 8]."""
        g = self.config.scales[s]
        lattice = u * g
        base = lattice.floor().clamp(0, g - 1).long()  # [N, 3]
        corner = base[:, None, :] + CORNERS.to(u.device)  # [N, 8, 3]
        flat = (corner[..., 0] * (g + 1) + corner[..., 1]) * (g + 1) + corner[..., 2]
        ids = self._index(s)[flat]  # [N, 8]
        local = lattice[:, None, :] - corner.to(u.dtype)  # [N, 8, 3], lattice units = the cube's half-size
        inv = (ids >= 0).to(u.dtype) / (local.norm(dim=-1) + 1e-3)
        return ids, local, inv / inv.sum(1, keepdim=True).clamp(min=1e-12)

    def _sample(self, x: Tensor, which: torch.nn.ParameterList, k: int) -> tuple[list[Tensor], Tensor]:
        """Per scale [N, k] aggregated components at world positions x, and the covered mask [N]."""
        u = self.normalize(x)
        out, covered = [], torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for s, vectors in enumerate(which):
            if vectors.shape[1] == 0:
                out.append(torch.zeros(x.shape[0], k, device=x.device, dtype=x.dtype))
                continue
            ids, local, w = self._slots(u, s)
            covered |= (ids >= 0).any(1)
            out.append(trivec_sample(vectors, ids, local, w, k))
        return out, covered

    # ---- the Field contract -------------------------------------------------------------------
    def _density_logit(self, x: Tensor) -> Tensor:
        parts, covered = self._sample(x, self.density_vectors, self.counts[0])
        value = torch.stack(parts).sum((0, 2))  # [N]
        return torch.where(covered, value + self.config.density_bias, torch.full_like(value, EMPTY_LOGIT))

    def _app_feature(self, x: Tensor) -> Tensor:
        """The 15-d appearance feature [N, 15] at world positions x [N, 3]."""
        ka = self.counts[1]
        parts, _ = self._sample(x, self.app_vectors, ka)
        return F.linear(torch.cat(parts, -1), basis_columns(self.basis.weight, len(parts), ka))

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._density_logit(x), self._app_feature(x)

    def color_at(self, x: Tensor, d: Tensor) -> Tensor:
        return self.shader(self._app_feature(x), d)

    def density(self, x: Tensor) -> Tensor:
        return self.activate(x, self._density_logit(x))

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.shader(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        return [{"name": "grid", "params": [*self.density_vectors, *self.app_vectors], "lr": c.lr_grid},
                {"name": "network", "params": [*self.basis.parameters(), *self.shader.parameters()],
                 "lr": c.lr_network}]

    def regularizers(self) -> dict[str, Tensor]:
        if self.config.l1_weight <= 0:
            return {}
        kd = self.counts[0]
        terms = [v[..., :kd].abs().mean() for v in self.density_vectors if v.shape[1] > 0]
        return {"l1": self.config.l1_weight * sum(terms)} if terms else {}

    # ---- placement and rank growth ------------------------------------------------------------
    def update_schedule(self, progress: float, grid: Any, generator: torch.Generator | None = None) -> bool:
        c = self.config
        self.grow_rank(progress)
        if self.is_placed or progress < c.place_at or grid is None:
            return False
        if grid.occupied_fraction() > c.place_max_occupancy and progress < 3 * c.place_at:
            return False  # the coarse stage is still foggy: placing now would tile most of the box
        self.place(grid, generator)
        return True

    def sync_host_state(self) -> None:
        super().sync_host_state()
        self.is_placed = bool(self.placed)

    def _occupied_centres(self, grid: Any) -> Tensor:
        """normalize() coordinates [M, 3] of the centres of the grid's occupied cells."""
        occupied = grid.binary().flatten().nonzero().squeeze(1)
        return self.normalize(grid.cell_points(occupied, torch.full((occupied.numel(), 3), 0.5, device=occupied.device)))

    @torch.no_grad()
    def place(self, grid: Any, generator: torch.Generator | None = None) -> None:
        """At every scale, keep or create the tensors around the lattice cells that hold geometry: cells
        in which at least `place_min_fill` of the occupancy-grid cells are occupied (isolated floaters
        do not get tensors). The 8 tensors at a marked cell's corners are the ones covering it."""
        centres = self._occupied_centres(grid)
        for s, g in enumerate(self.config.scales):
            cell = (centres * g).floor().clamp(0, g - 1).long()  # [M, 3] lattice cell of each occupied grid cell
            counts = torch.bincount((cell[:, 0] * g + cell[:, 1]) * g + cell[:, 2], minlength=g**3)
            per_cell = max(1.0, (grid.resolution / g) ** 3)  # grid cells in one lattice cell (base cascade)
            marked = (counts >= max(1.0, self.config.place_min_fill * per_cell)).nonzero().squeeze(1)
            ijk = torch.stack([marked // (g * g), (marked // g) % g, marked % g], -1)
            corner = (ijk[:, None, :] + CORNERS.to(ijk.device)).view(-1, 3)
            wanted = torch.zeros((g + 1) ** 3, dtype=torch.bool, device=centres.device)
            wanted[(corner[:, 0] * (g + 1) + corner[:, 1]) * (g + 1) + corner[:, 2]] = True
            old_index = self._index(s)
            new_index = torch.where(wanted, torch.cumsum(wanted.long(), 0) - 1, torch.full_like(old_index, -1))
            keep = wanted & (old_index >= 0)  # lattice points that already have a trained tensor
            for vectors in (self.density_vectors[s], self.app_vectors[s]):
                fresh = self._new_vectors(int(wanted.sum()), vectors.shape[-1], vectors.device, generator).data
                fresh[:, new_index[keep]] = vectors.data[:, old_index[keep]]
                vectors.data = fresh
            old_index.copy_(new_index)
        self.placed.fill_(True)
        self.is_placed = True

    @property
    def n_groups(self) -> int:
        return len(self.config.scales)
