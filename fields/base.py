"""The volumetric `Field` contract every backend implements.

A field maps positions (and view directions) inside its scene box to density and colour. The
renderers never see this class: the trainer hands them `field.density` and `field.forward` as
callables.
"""

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from onefield.cuda_ext.geometry import MAX_CASCADES, contract_unit, inside_reach
from onefield.errors import UserError
from onefield.machine import cpu_has_bf16

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


def run_mlp(mlp: torch.nn.Module, x: Tensor, precision: str = "auto") -> Tensor:
    """mlp(x) [N, out] in float32 with its matrix products in `precision` (`HeadConfig.precision`) on x's device."""
    bf16 = precision == "bfloat16" or (precision == "auto" and x.device.type == "cpu" and cpu_has_bf16())
    if not bf16:
        return mlp(x)
    # oneDNN builds (JIT-compiles) a bf16 kernel per matrix shape, and the trainer's batches change size
    # every step: rows padded up to one of 16 sizes per octave keep the kernels cached (< 1/16 extra rows)
    n = x.shape[0]
    rows = -(-n // (step := 1 << max(n.bit_length() - 5, 6))) * step
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return mlp(torch.nn.functional.pad(x.to(torch.bfloat16), (0, 0, 0, rows - n)))[:n].float()


def clip_logit(logit: Tensor) -> Tensor:
    """A density logit [N] clipped to SIGMA_LOGIT_RANGE, the level at which distillation compares them."""
    return logit.clamp(*SIGMA_LOGIT_RANGE)


class Field(torch.nn.Module, abc.ABC):
    """Base class of the volumetric backends.

    Subclasses set `name` and `config_class`, take `(config, aabb, device, cascades)` in their
    constructor and implement `raw`, `color` and `param_groups`; `features`, `density` and
    `forward` follow from them (a subclass missing one cannot be instantiated).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    kind: ClassVar[str] = "volume"  # the trainer that fits it (`app.runs.make_trainer`; splats: "splats")
    resizable: ClassVar[tuple[str, ...]] = ()  # parameter-name prefixes whose shapes the schedule changes
    # True where colour costs far more than density and comes from separate parameters (TensoRF,
    # Strivec): the renderers then evaluate `density` everywhere and `color_at` only where it shows
    deferred_color: ClassVar[bool] = False
    # True where the backend projects with K alone and models no lens: its runs load images
    # resampled to pinholes (`DataSpec.undistort`); volumes bend their rays through the lens instead
    pinhole_only: ClassVar[bool] = False

    def __init__(self, config: Any, aabb: Sequence[float] | Tensor, cascades: int = 1):
        super().__init__()
        box = torch.as_tensor(aabb, dtype=torch.float32).flatten()
        if box.numel() != 6 or not bool((box[3:] > box[:3]).all()):
            raise UserError(f"aabb must be (min xyz, max xyz) with max > min, got {box.tolist()}")
        if not 1 <= cascades <= MAX_CASCADES:
            raise UserError(f"cascades must be in [1, {MAX_CASCADES}], got {cascades}")
        self.config = config
        self.cascades = cascades
        self.register_buffer("aabb", box)  # the base box; the scene reaches it scaled by 2^(cascades-1)

    def normalize(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> [0, 1]^3 (`contract_unit`: linear over one cascade, contracted beyond)."""
        return contract_unit(x, self.aabb, self.cascades)

    @abc.abstractmethod
    def raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(unclipped density logit [N], 15-d geometry feature [N, 15])."""

    @abc.abstractmethod
    def color(self, feat: Tensor, d: Tensor) -> Tensor:
        """rgb [N, 3] in [0, 1] from geometry features [N, 15] and unit view directions [N, 3]."""

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The distillation hook: density logit clipped to SIGMA_LOGIT_RANGE [N], feature [N, 15]."""
        logit, feat = self.raw(x)
        return clip_logit(logit), feat

    def activate(self, x: Tensor, logit: Tensor) -> Tensor:
        """sigma [N] >= 0 from the unclipped density logit [N] at x [N, 3]; zero outside the box."""
        return trunc_exp(logit) * self._inside(x)

    def density(self, x: Tensor) -> Tensor:
        """sigma [N] >= 0 at world positions x [N, 3]; zero outside the box."""
        return self.activate(x, self.raw(x)[0])

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma [N], rgb [N, 3]) at positions x [N, 3] seen along unit directions d [N, 3]."""
        logit, feat = self.raw(x)
        return self.activate(x, logit), self.color(feat, d)

    def color_at(self, x: Tensor, d: Tensor) -> Tensor:
        """rgb [N, 3] at positions x [N, 3] along directions d [N, 3] (deferred shading); backends with
        `deferred_color` override it to skip the density work."""
        return self.color(self.raw(x)[1], d)

    @abc.abstractmethod
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: dicts with 'name', 'params' and 'lr'."""

    def regularizers(self) -> dict[str, Tensor]:
        """Named scalar losses added to the photometric loss (TV, L1...); none by default."""
        return {}

    def update_schedule(self, progress: float, grid: Any, generator: torch.Generator | None = None) -> bool:
        """Called by the trainer before every step with the training progress in [0, 1] and the
        occupancy grid (None until it has been refreshed from the field, so nothing reads an untrained
        grid). Backends with a coarse-to-fine schedule (upsampling, box shrinking, rank growth) act
        here; returns True when parameters were replaced or resized, so the trainer
        rebuilds its optimizer. New random parameters come from `generator` (the trainer's, which
        checkpoints save), never torch's global one. Static backends do nothing."""
        return False

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Tensors of the backends' `resizable` parameters may have grown during training (upsampling):
        they take the saved shape before loading, so a freshly built field loads any checkpoint of its run."""
        for name, tensor in self.named_parameters():
            saved = state_dict.get(name)
            if saved is not None and saved.shape != tensor.shape and name.startswith(self.resizable):
                tensor.data = torch.empty(saved.shape, dtype=tensor.dtype, device=tensor.device)
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.sync_host_state()
        return result

    def sync_host_state(self) -> None:
        """Refresh the Python copies of schedule buffers (stage, rank counts) after their buffers were
        loaded. Backends read those copies in every query and step, so that a query on a GPU never
        waits for a device-to-host read of a buffer; the buffers are what checkpoints save."""

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def _inside(self, x: Tensor) -> Tensor:
        return inside_reach(x, self.aabb, self.cascades)
