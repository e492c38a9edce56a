"""The volumetric `Field` contract every backend implements.

A field maps positions (and view directions) inside its scene box to density and colour. The
renderers never see this class: the trainer hands them `field.density` and `field.forward` as
callables.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

# The pre-activation density range that distillation matches (PVD). Only `features` clips to it:
# clipping the rendered density too would put a floor of e^-2 under empty space and fog it.
SIGMA_LOGIT_RANGE = (-2.0, 7.0)


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)): Instant-NGP's guard against a single huge
    density logit blowing up the step."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


class Field(torch.nn.Module):
    """Base class of the volumetric backends.

    Subclasses set `name` and `config_class`, take `(config, aabb)` in their constructor and
    implement `features` and `color`; `density` and `forward` follow from them.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any, aabb: Sequence[float] | Tensor):
        super().__init__()
        box = torch.as_tensor(aabb, dtype=torch.float32).flatten()
        if box.numel() != 6 or not bool((box[3:] > box[:3]).all()):
            raise ValueError(f"aabb must be (min xyz, max xyz) with max > min, got {box.tolist()}")
        self.config = config
        self.register_buffer("aabb", box)

    def normalize(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> [0, 1]^3 over the scene box (clamped)."""
        return ((x - self.aabb[:3]) / (self.aabb[3:] - self.aabb[:3])).clamp(0.0, 1.0)

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(unclipped density logit [N], 15-d geometry feature [N, 15])."""
        raise NotImplementedError

    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        """rgb [N, 3] in [0, 1] from geometry features [N, 15] and unit view directions [N, 3]."""
        raise NotImplementedError

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The distillation hook: density logit clipped to SIGMA_LOGIT_RANGE [N], feature [N, 15]."""
        logit, feat = self.raw(x)
        return logit.clamp(*SIGMA_LOGIT_RANGE), feat

    def density(self, x: Tensor) -> Tensor:
        """sigma [N] >= 0 at world positions x [N, 3]; zero outside the box."""
        logit, _ = self.raw(x)
        return trunc_exp(logit) * self._inside(x)

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [N], rgb [N, 3]) at positions x [N, 3] seen along unit directions d [N, 3]."""
        logit, feat = self.raw(x)
        return trunc_exp(logit) * self._inside(x), self.color(feat, d)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: dicts with 'name', 'params' and 'lr'."""
        raise NotImplementedError

    def regularizers(self) -> dict[str, Tensor]:
        """Named scalar losses added to the photometric loss (TV, L1...); none by default."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def _inside(self, x: Tensor) -> Tensor:
        return ((x >= self.aabb[:3]) & (x <= self.aabb[3:])).all(-1).to(x.dtype)
