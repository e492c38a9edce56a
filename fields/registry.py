"""Backends by name. A backend's module is imported only when that backend is asked for, so a
missing optional dependency of one backend never breaks another (nerfstudio's lesson)."""

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from .base import Field

# name -> (module, class): internal wiring only; checkpoints store the name, never a class path.
_BACKENDS: dict[str, tuple[str, str]] = {
    "hashgrid": ("onefield.fields.hashgrid", "HashGridField"),
    "tensorf-vm": ("onefield.fields.tensorf", "TensoRFVM"),
    "tensorf-cp": ("onefield.fields.tensorf", "TensoRFCP"),
    "strivec": ("onefield.fields.strivec", "StrivecField"),
    "triplane": ("onefield.fields.triplane", "TriplaneField"),
    "mlp": ("onefield.fields.nerf_mlp", "NerfMLPField"),
    "finr": ("onefield.fields.finr", "FINRField"),
}


def names() -> list[str]:
    return sorted(_BACKENDS)


def field_class(name: str) -> type[Field]:
    if name not in _BACKENDS:
        raise ValueError(f"unknown field backend {name!r}; available: {', '.join(names())}")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def config_class(name: str) -> type:
    return field_class(name).config_class


def make_config(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The backend's config dataclass from plain data (as saved in config.json); unknown keys
    are an error that names them."""
    cls = config_class(name)
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) for field {name!r}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)


def build(name: str, aabb: Sequence[float] | Tensor, config: Any = None, device: str = "cpu",
          cascades: int = 1) -> Field:
    """A new field of backend `name` over the base box `aabb` (the scene reaching it scaled by
    2^(cascades-1)); `config` is its dataclass, a dict or None."""
    cls = field_class(name)
    if config is None or isinstance(config, Mapping):
        config = make_config(name, config)
    elif not isinstance(config, cls.config_class):
        raise TypeError(f"field {name!r} takes a {cls.config_class.__name__}, got {type(config).__name__}")
    return cls(config, aabb, device=device, cascades=cascades)
