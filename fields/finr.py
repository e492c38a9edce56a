"""F-INR: functional tensor decomposition (Vemuri et al. 2025).

The field's feature volume F(x, y, z) in R^C is a rank-R tensor decomposition whose factors are
*functions*: one small network per axis maps a coordinate to that axis' factor values.

- `cp`:     F_c = sum_r  a_r(x) b_r(y) c_r(z) W[r, c]                     (axis nets output R)
- `tucker`: F_c = sum_ijk G[i, j, k, c] a_i(x) b_j(y) c_k(z)               (axis nets output R, core R^3 x C)
- `tt`:     F   = a(x)^T  B(y)  C(z)  W  (tensor train, bond dimension R;   a: R, B and C: R x R, W: R x C)

Each axis network is an MLP on the frequency-encoded coordinate (ReLU), or a SIREN (sine
activations, w0 = 30). F then goes through Instant-NGP's density and colour MLPs.

Evaluation modes:
- `lattice` (default): the axis networks run on a 1-D lattice of `lattice_size` points per axis
  and their outputs are linearly interpolated at the samples (the native plane/line sampler).
  A step evaluates 3 x lattice_size network inputs instead of 3 x (samples per step, ~32 K):
  ~40x fewer, and the interpolation error is far below the network's bandwidth at the default
  256 points and 6 frequencies (16+ lattice points per period of the highest frequency).
- `exact`: the networks run at every sample's coordinates (the paper's formulation); use it to
  check the lattice or for very high-frequency axis networks.

Rank growth and slimming act on R (SlimmeRF's idea applied to the functional factors).
"""

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from onefield.cuda_ext import plane_sample
from onefield.errors import UserError

from .encodings import DensityColorHead, HeadConfig, positional_encoding
from .ranks import RankGrowthConfig, SlimmableField

MODES = ("cp", "tucker", "tt")
# Tucker's core is R^3 x C and a step multiplies [N, R^2] by [R^2, R C]: its rank must stay small.
DEFAULT_RANK = {"cp": 32, "tucker": 8, "tt": 8}


@dataclass
class FINRConfig(HeadConfig, RankGrowthConfig):
    mode: str = "cp"
    """decomposition: cp, tucker or tt"""
    rank: int = 0
    """decomposition rank: CP components, Tucker core size, TT bond dimension (0: 32 for cp, 8 for tucker and tt)"""
    features: int = 32
    """channels of the decomposed feature volume"""
    axis_hidden: int = 64
    """width of the axis networks"""
    layers: int = 2
    """hidden layers of the axis networks"""
    freqs: int = 6
    """frequencies of the coordinate encoding of the ReLU axis networks"""
    siren: bool = False
    """use SIREN axis networks (sine activations) instead of ReLU + frequency encoding"""
    siren_w0: float = 30.0
    """SIREN's first-layer frequency"""
    evaluation: str = "lattice"
    """lattice (axis networks on a 1-D lattice, interpolated; fast) or exact (at every sample)"""
    lattice_size: int = 256
    """lattice points per axis in lattice mode"""
    lr_factors: float = 5e-3
    """Adam learning rate of the axis networks and the core"""
    lr_mlp: float = 1e-2
    """Adam learning rate of the density and colour MLPs"""

    @staticmethod
    def upgrade(values: dict[str, Any]) -> dict[str, Any]:
        """Options saved before the decoder options became `HeadConfig`: `hidden` was the axis
        networks' width and `head_hidden` the decoder's."""
        if "head_hidden" not in values:
            return values
        values = dict(values)
        values["axis_hidden"], values["hidden"] = values.pop("hidden", 64), values.pop("head_hidden")
        return values


class _Sine(torch.nn.Module):
    def __init__(self, w0: float):
        super().__init__()
        self.w0 = w0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)


class AxisNet(torch.nn.Module):
    """Scalar coordinate t [N] in [-1, 1] -> factor values [N, out]."""

    def __init__(self, out: int, config: FINRConfig):
        super().__init__()
        self.freqs, self.siren = config.freqs, config.siren
        width_in = 1 if config.siren else 1 + 2 * config.freqs
        layers: list[torch.nn.Module] = []
        for i in range(config.layers):
            linear = torch.nn.Linear(width_in, config.axis_hidden)
            if config.siren:  # SIREN's initialisation (Sitzmann et al. 2020)
                bound = 1.0 / width_in if i == 0 else math.sqrt(6.0 / width_in) / config.siren_w0
                torch.nn.init.uniform_(linear.weight, -bound, bound)
            layers += [linear, _Sine(config.siren_w0 if i == 0 else 1.0) if config.siren else torch.nn.ReLU()]
            width_in = config.axis_hidden
        self.body = torch.nn.Sequential(*layers)
        self.out = torch.nn.Linear(width_in, out)
        if config.siren:
            bound = math.sqrt(6.0 / width_in) / config.siren_w0
            torch.nn.init.uniform_(self.out.weight, -bound, bound)

    def forward(self, t: Tensor) -> Tensor:
        t = t[:, None]
        return self.out(self.body(t if self.siren else positional_encoding(t, self.freqs)))


class FINRField(SlimmableField):
    name = "finr"
    config_class = FINRConfig

    def __init__(self, config: FINRConfig, aabb, device: torch.device | str = "cpu", cascades: int = 1):
        if config.mode not in MODES:
            raise UserError(f"finr mode must be one of {', '.join(MODES)}, got {config.mode!r}")
        config = replace(config, rank=config.rank or DEFAULT_RANK[config.mode])
        super().__init__(config, aabb, cascades)
        if config.evaluation not in ("lattice", "exact"):
            raise UserError(f"finr evaluation must be lattice or exact, got {config.evaluation!r}")
        if config.rank < 0 or config.lattice_size < 2:
            raise UserError(f"finr needs rank >= 1 and lattice_size >= 2, got {config.rank}, {config.lattice_size}")
        r, c = config.rank, config.features
        outs = {"cp": (r, r, r), "tucker": (r, r, r), "tt": (r, r * r, r * r)}[config.mode]
        self.axes = torch.nn.ModuleList([AxisNet(o, config) for o in outs])
        with torch.no_grad():  # factors start near one (TT: near identity), as K-Planes' planes do, so the
            for net in self.axes:  # product is O(1) and every axis receives a gradient of O(1) from the start
                net.out.bias.copy_(torch.eye(r).flatten() if net.out.bias.numel() == r * r else torch.ones(r))
        self.grow_rank(0.0)
        k0 = self.rank
        if config.mode == "tucker":
            self.core = torch.nn.Parameter(torch.randn(r, r, r, c) / math.sqrt(r))
            self.core.data[k0:], self.core.data[:, k0:], self.core.data[:, :, k0:] = 0.0, 0.0, 0.0
        else:  # cp and tt end in an R x C matrix
            self.core = torch.nn.Parameter(torch.randn(r, c) / math.sqrt(r))
            self.core.data[k0:] = 0.0
        # the core entries of the components that rank growth adds later start at zero: their factors
        # start near one, so a random entry would shift every point's feature the moment they join
        # (a jump that can empty the occupancy grid); from zero they enter smoothly
        self.head = DensityColorHead(c, config)
        self.to(device)

    # ---- factors ------------------------------------------------------------------------------
    def factors(self, c: Tensor) -> list[Tensor]:
        """Axis factors at coordinates c [N, 3] in [-1, 1]: three [N, out_a] tensors."""
        if self.config.evaluation == "exact":
            return [net(c[:, a]) for a, net in enumerate(self.axes)]
        lattice = torch.linspace(-1.0, 1.0, self.config.lattice_size, device=c.device)
        out = []
        for a, net in enumerate(self.axes):
            table = net(lattice)[:, None, :]  # [L, 1, out] as a line factor
            out.append(plane_sample(table, torch.stack([torch.zeros_like(c[:, a]), c[:, a]], -1)))
        return out

    def combine(self, fx: Tensor, fy: Tensor, fz: Tensor, k: int) -> Tensor:
        """The decomposition [N, C] from axis factors [N, out_a], using the first k of the rank."""
        r = self.config.rank
        if self.config.mode == "cp":
            return (fx[:, :k] * fy[:, :k] * fz[:, :k]) @ self.core[:k]
        if self.config.mode == "tucker":
            # (a outer b) [N, k^2] @ core [k^2, k C]: the largest intermediate is [N, k C], not [N, k^2 C]
            ab = (fx[:, :k, None] * fy[:, None, :k]).reshape(-1, k * k)
            t = (ab @ self.core[:k, :k, :k].reshape(k * k, -1)).view(-1, k, self.config.features)
            return torch.einsum("nk,nkc->nc", fz[:, :k], t)
        b = fy.view(-1, r, r)[:, :k, :k]
        cz = fz.view(-1, r, r)[:, :k, :k]
        v = torch.einsum("ni,nij->nj", fx[:, :k], b)
        v = torch.einsum("nj,njk->nk", v, cz)
        return v @ self.core[:k]

    def feature_volume(self, x: Tensor) -> Tensor:
        """The decomposed features [N, C] at world positions x [N, 3]."""
        c = self.normalize(x) * 2.0 - 1.0
        return self.combine(*self.factors(c), self.rank)

    # ---- the Field contract -------------------------------------------------------------------
    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head.raw(self.feature_volume(x))

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        return self.head.color(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        return [{"name": "factors", "params": [*self.axes.parameters(), self.core], "lr": c.lr_factors},
                {"name": "mlp", "params": list(self.head.parameters()), "lr": c.lr_mlp}]

    def update_schedule(self, progress: float, grid: Any, generator: torch.Generator | None = None) -> bool:
        self.grow_rank(progress)
        return False

    # ---- slimming -----------------------------------------------------------------------------
    @property
    def full_rank(self) -> int:
        return self.config.rank

    def counts_for(self, rank: int) -> tuple[int, ...]:
        return (rank,)

    def slim(self, rank: int) -> "FINRField":
        c = self.config
        self._check_rank(rank)
        keep = torch.arange(rank, device=self.core.device)
        rows = [keep, keep, keep] if c.mode != "tt" else \
            [keep, (keep[:, None] * c.rank + keep).flatten(), (keep[:, None] * c.rank + keep).flatten()]
        state = {k: v.clone() for k, v in self.state_dict().items()}
        for a, idx in enumerate(rows):
            state[f"axes.{a}.out.weight"] = state[f"axes.{a}.out.weight"][idx]
            state[f"axes.{a}.out.bias"] = state[f"axes.{a}.out.bias"][idx]
        state["core"] = self.core.detach()[:rank, :rank, :rank] if c.mode == "tucker" else self.core.detach()[:rank]
        state["active"] = torch.tensor([rank])
        slim = FINRField(replace(c, rank=rank, rank_init=1.0), self.aabb, device=self.aabb.device,
                         cascades=self.cascades)
        slim.load_state_dict(state)
        return slim
