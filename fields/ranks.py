"""Rank growth and slimming (SlimmeRF, Yuan & Zhao 2023).

A factorised field keeps its components in order of creation. Training starts with a fraction of
them active and activates the rest in stages ("rank incrementation"), so the first components
learn the coarse scene and later ones the residual. Because of that ordering, dropping the
trailing components ("slimming") degrades the model gracefully without retraining, and one
trained model yields a whole accuracy-versus-size curve.

Inactive components are simply not sliced into the computation: their gradient is zero, Adam
leaves them at their initial values, and no parameter changes shape while the rank grows.
"""

import abc
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from onefield.errors import UserError

from .base import Field


@dataclass
class RankGrowthConfig:
    """The rank-growth options of every slimmable backend (one block, mixed into their configs)."""

    rank_init: float = 0.25
    """fraction of the components active at the start (1: no rank growth)"""
    rank_full_at: float = 0.5
    """training progress by which every component is active"""
    rank_stages: int = 4
    """equal rank increments between the start and rank_full_at"""


def active_rank(full: int, progress: float, init: float, full_at: float, stages: int) -> int:
    """Components active at `progress` in [0, 1]: `init` x `full` at the start, growing in `stages`
    equal steps until all are active at progress `full_at`."""
    if init >= 1.0 or progress >= full_at or stages < 1:
        return full
    done = math.floor(progress / full_at * stages) / stages
    return max(1, min(full, math.ceil(full * (init + (1.0 - init) * done))))


class SlimmableField(Field):
    """A field whose components are ordered by rank and can be truncated after training.

    Rank bookkeeping: `counts` (Python ints: density components first, then any that follow them)
    is what queries read; the `active` buffer mirrors it for checkpoints (`sync_host_state`)."""

    config: RankGrowthConfig
    counts: tuple[int, ...]

    @property
    @abc.abstractmethod
    def full_rank(self) -> int:
        """Density components of the full model."""

    @abc.abstractmethod
    def counts_for(self, rank: int) -> tuple[int, ...]:
        """The component counts that go with `rank` density components."""

    @abc.abstractmethod
    def slim(self, rank: int) -> "SlimmableField":
        """A new field of the same backend keeping only the first `rank` density components (and the
        proportional share of appearance components), with every other weight copied."""

    @property
    def rank(self) -> int:
        """Density components currently in use."""
        return self.counts[0]

    def grow_rank(self, progress: float) -> None:
        """Activate the components the rank-growth schedule allows at `progress`."""
        c = self.config
        self.set_rank(active_rank(self.full_rank, progress, c.rank_init, c.rank_full_at, c.rank_stages))

    def set_rank(self, rank: int) -> None:
        counts = self.counts_for(rank)
        if "active" not in self._buffers:
            self.register_buffer("active", torch.tensor(counts))
        elif counts != self.counts:
            self.active.copy_(torch.tensor(counts))
        self.counts = counts

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        saved = state_dict.get("active")
        if saved is not None and saved.dim() == 0:  # F-INR checkpoints before the shared bookkeeping
            state_dict = {**state_dict, "active": saved.reshape(1)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def sync_host_state(self) -> None:
        super().sync_host_state()
        self.counts = tuple(int(v) for v in self.active)

    def _check_rank(self, rank: int) -> None:
        if not 1 <= rank <= self.full_rank:
            raise UserError(f"rank must be in [1, {self.full_rank}] for this {self.name} model, got {rank}")


def app_count(density_count: int, config: Any) -> int:
    """Appearance components that go with `density_count` density components (the config's proportion)."""
    return max(1, round(density_count * config.app_rank / config.density_rank))


def basis_columns(weight: Tensor, groups: int, k: int) -> Tensor:
    """The columns of a basis matrix [F, groups * R] that read the first k components of each of its
    `groups` concatenated component groups -> [F, groups * k]."""
    return weight.view(weight.shape[0], groups, -1)[:, :, :k].reshape(weight.shape[0], -1)


class ComponentField(SlimmableField):
    """A slimmable field with density and appearance components (TensoRF, Strivec): an `active`
    buffer [density, appearance] counts those in use, parameters under `density_keys` / `app_keys`
    hold the components in their last dimension, and `basis` maps `n_groups` concatenated groups of
    appearance components to the feature. The config has density_rank, app_rank and rank_init."""

    density_keys: ClassVar[tuple[str, ...]]
    app_keys: ClassVar[tuple[str, ...]]

    @property
    @abc.abstractmethod
    def n_groups(self) -> int:
        """Groups of appearance components concatenated before the basis matrix."""

    @property
    def full_rank(self) -> int:
        return self.config.density_rank

    def counts_for(self, rank: int) -> tuple[int, ...]:
        return rank, app_count(rank, self.config)

    def slim(self, rank: int) -> "ComponentField":
        c = self.config
        self._check_rank(rank)
        ka = app_count(rank, c)
        state = {k: v.clone() for k, v in self.state_dict().items()}
        for key in state:
            if key.startswith(self.density_keys):
                state[key] = state[key][..., :rank].contiguous()
            elif key.startswith(self.app_keys):
                state[key] = state[key][..., :ka].contiguous()
        state["basis.weight"] = basis_columns(self.basis.weight.detach(), self.n_groups, ka).clone()
        state["active"] = torch.tensor([rank, ka])
        slim = type(self)(dataclasses.replace(c, density_rank=rank, app_rank=ka, rank_init=1.0), self.aabb,
                          device=self.aabb.device, cascades=self.cascades)
        slim.load_state_dict(state)
        return slim
