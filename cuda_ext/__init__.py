"""Native kernels: ray/box intersection, occupancy grid, ray marching, packed volume rendering,
hash encoding, bilinear sampling of tensor factors and Strivec's local tri-vectors, and Gaussian
splatting (projection, tile binning, compositing). Each op has a C++ (CPU), a CUDA and a pure-torch
implementation of one algorithm; see ``ops.py`` and ``splat.py`` for dispatch, ``reference.py`` and
``splat_reference.py`` for the twins."""

from ._loader import LOAD_ERROR, native
from .encoding import HashGridConfig, HashGridEncoding, choose_implementation
from .ops import (
    backend_for,
    grid_ema_update_,
    grid_pack_bits,
    hash_encode,
    hash_grid_levels,
    march_rays,
    plane_sample,
    ray_aabb_intersect,
    trivec_sample,
    volume_render,
)

__all__ = [
    "HashGridConfig",
    "HashGridEncoding",
    "choose_implementation",
    "LOAD_ERROR",
    "native",
    "backend_for",
    "grid_ema_update_",
    "grid_pack_bits",
    "hash_encode",
    "hash_grid_levels",
    "march_rays",
    "plane_sample",
    "trivec_sample",
    "ray_aabb_intersect",
    "volume_render",
]
