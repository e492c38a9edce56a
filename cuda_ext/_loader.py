"""Loads the compiled extension once. A missing build is one warning, never an import error."""

import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which the extension links against)

try:
    from . import _C as native
    LOAD_ERROR: str | None = None
except ImportError as error:  # not built, or built against another torch
    native = None
    LOAD_ERROR = str(error)
    warnings.warn(
        f"onefield's native kernels are not available ({error}); every op falls back to the "
        "pure-torch reference, which is much slower. Build them with "
        "`pip install --no-build-isolation -e .` (or `make setup`).",
        RuntimeWarning,
        stacklevel=2,
    )
