"""Backends by name. A backend's module is imported only when that backend is asked for, so a
missing optional dependency of one backend (or a broken module) breaks only that backend, never
another one or a command that does not use it (nerfstudio's lesson). Front doors list backends
with `names()` and build their option forms from `config_class(name)`; none keeps its own list.
"""

import contextlib
import dataclasses
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from onefield.errors import UserError

from .base import Field


@dataclass(frozen=True)
class Backend:
    module: str  # imported on first use
    cls: str  # a Field subclass in `module`
    summary: str  # one line for listings (`onefield info`, help texts)


class BackendUnavailable(UserError):
    """The backend exists but its module cannot be imported (a missing optional dependency)."""


# name -> where it lives: internal wiring only; checkpoints store the name, never a class path.
_BACKENDS: dict[str, Backend] = {}


def register(name: str, module: str, cls: str, summary: str = "") -> None:
    """Make backend `name` available: `module`.`cls` is imported the first time it is asked for."""
    _BACKENDS[name] = Backend(module, cls, summary)


def unregister(name: str) -> None:
    _BACKENDS.pop(name, None)


register("hashgrid", "onefield.fields.hashgrid", "HashGridField", "Instant-NGP multiresolution hash grid (default)")
register("tensorf-vm", "onefield.fields.tensorf", "TensoRFVM", "TensoRF, vector-matrix factors")
register("tensorf-cp", "onefield.fields.tensorf", "TensoRFCP", "TensoRF, CP factors")
register("strivec", "onefield.fields.strivec", "StrivecField", "Strivec, sparse local tri-vector tensors")
register("triplane", "onefield.fields.triplane", "TriplaneField", "K-Planes multi-scale tri-planes")
register("finr", "onefield.fields.finr", "FINRField", "F-INR, functional tensor decomposition")
register("mlp", "onefield.fields.nerf_mlp", "NerfMLPField", "the original NeRF MLP")
register("splats", "onefield.fields.splats", "GaussianSplats", "3D Gaussian splatting, rasterized (trains on a CPU)")


def names() -> list[str]:
    return sorted(_BACKENDS)


def summary(name: str) -> str:
    return _entry(name).summary


def _entry(name: str) -> Backend:
    if name not in _BACKENDS:
        raise UserError(f"unknown field backend {name!r}; available: {', '.join(names())}")
    return _BACKENDS[name]


def field_class(name: str) -> type[Field]:
    entry = _entry(name)
    try:
        cls = getattr(importlib.import_module(entry.module), entry.cls)
    except (ImportError, AttributeError) as error:  # only this backend is unusable
        raise BackendUnavailable(f"field backend {name!r} cannot be loaded: {type(error).__name__}: {error} "
                                 f"(module {entry.module}); install what it needs or choose another --field") from error
    return cls


def import_error(name: str) -> str | None:
    """Why backend `name` cannot be loaded, or None when it can."""
    try:
        field_class(name)
    except BackendUnavailable as error:
        return str(error.__cause__ or error)
    return None


def config_class(name: str) -> type:
    return field_class(name).config_class


def config_from_dict(cls: type, values: Mapping[str, Any], owner: str) -> Any:
    """The dataclass `cls` from plain data (as saved in config.json: lists where the dataclass has
    tuples; a config class may `upgrade` the names an older version saved); unknown keys are an
    error that names them and `owner`."""
    if hasattr(cls, "upgrade"):
        values = cls.upgrade(values)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown option(s) for {owner}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def make_config(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The backend's config dataclass from plain data (as saved in config.json)."""
    return config_from_dict(config_class(name), dict(values or {}), f"field {name!r}")


def build(name: str, aabb: Sequence[float] | Tensor, config: Any = None, device: str = "cpu",
          cascades: int = 1, seed: int | None = None) -> Field:
    """A new field of backend `name` over the base box `aabb` (the scene reaching it scaled by
    2^(cascades-1)); `config` is its dataclass, a dict or None. With `seed`, every random
    initialisation comes from a generator seeded with it (torch's global one is left as it was),
    so one seed gives one field, whatever ran before."""
    cls = field_class(name)
    if config is None or isinstance(config, Mapping):
        config = make_config(name, config)
    elif not isinstance(config, cls.config_class):
        raise TypeError(f"field {name!r} takes a {cls.config_class.__name__}, got {type(config).__name__}")
    if seed is None:
        return cls(config, aabb, device=device, cascades=cascades)
    with seeded(seed, device):
        return cls(config, aabb, device=device, cascades=cascades)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """torch's global generators (CPU, and `device`'s when it is a GPU) seeded with `seed` inside the
    block and restored after it: modules built inside initialise the same way whatever ran before."""
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield
