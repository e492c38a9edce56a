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
import math

from .base import Field


def active_rank(full: int, progress: float, init: float, full_at: float, stages: int) -> int:
    """Components active at `progress` in [0, 1]: `init` x `full` at the start, growing in `stages`
    equal steps until all are active at progress `full_at`."""
    if init >= 1.0 or progress >= full_at or stages < 1:
        return full
    done = math.floor(progress / full_at * stages) / stages
    return max(1, min(full, math.ceil(full * (init + (1.0 - init) * done))))


class SlimmableField(Field):
    """A field whose components are ordered by rank and can be truncated after training."""

    @property
    @abc.abstractmethod
    def rank(self) -> int:
        """Density components currently in use (appearance components follow in proportion)."""

    @abc.abstractmethod
    def slim(self, rank: int) -> "SlimmableField":
        """A new field of the same backend keeping only the first `rank` density components (and the
        proportional share of appearance components), with every other weight copied."""

    def _check_rank(self, rank: int, full: int) -> None:
        if not 1 <= rank <= full:
            raise ValueError(f"rank must be in [1, {full}] for this {self.name} model, got {rank}")
