"""What is learned: the `Field` contract and its backends, built by name through the registry."""

from .base import SIGMA_LOGIT_RANGE, Field, trunc_exp
from .registry import build, config_class, field_class, make_config, names

__all__ = ["SIGMA_LOGIT_RANGE", "Field", "build", "config_class", "field_class", "make_config", "names", "trunc_exp"]
