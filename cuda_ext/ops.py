"""Typed entry points of the native ops, with autograd and device dispatch.

Every function has the signature of its twin in ``reference.py``. A call runs the compiled
kernel for the tensors' device (C++ on CPU, CUDA on GPU) when the extension provides it, and the
torch reference otherwise or when ``ONEFIELD_KERNELS=torch`` is set.

Checks of argument *values* (is packed_info a packed layout, are the ids in range) read tensors back
from the device, a host-device sync per call that stalls a training step on a GPU; they run only
with ``ONEFIELD_DEBUG=1`` (see `debug_checks`). Shapes, dtypes and devices are always checked. With
the checks off, bad values are undefined behaviour in the native kernels, as in nerfacc: the
arguments are meant to come from the ops themselves (packed_info from `march_rays`).
"""

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import reference
from ._loader import native


def backend_for(device: torch.device | str) -> str:
    """Which implementation runs for tensors on `device`: 'cuda', 'cpp' or 'torch'."""
    device = torch.device(device)
    if native is None or os.environ.get("ONEFIELD_KERNELS", "").lower() == "torch":
        return "torch"
    if device.type == "cuda":
        return "cuda" if native.has_cuda() else "torch"
    return "cpp" if device.type == "cpu" else "torch"


def _native(t: Tensor) -> bool:
    return backend_for(t.device) != "torch"


def debug_checks() -> bool:
    """Whether the value checks that sync the device run: ``ONEFIELD_DEBUG`` set to anything but
    '' or '0'. The one switch for every such check in onefield's kernels and renderers."""
    return os.environ.get("ONEFIELD_DEBUG", "") not in ("", "0")


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """rays [N, 3], aabb [6] -> t_near [N], t_far [N], hit [N] bool; misses get t = 1e10."""
    aabb = aabb.to(rays_o)
    if not _native(rays_o):
        return reference.ray_aabb_intersect(rays_o, rays_d, aabb)
    t_near, t_far, hit = native.ray_aabb_intersect(rays_o.contiguous(), rays_d.contiguous(), aabb.contiguous())
    return t_near, t_far, hit


def grid_ema_update_(occs: Tensor, indices: Tensor, values: Tensor, decay: float) -> None:
    """In place: occs [M] = max(occs * decay, scatter-max of values [K] >= 0 at indices [K])."""
    if not _native(occs):
        return reference.grid_ema_update_(occs, indices, values, decay)
    native.grid_ema_update_(occs, indices.long().contiguous(), values.float().contiguous(), float(decay))


def grid_pack_bits(occs: Tensor, threshold: float) -> Tensor:
    """occs [M] -> uint8 [ceil(M / 8)], bit k of byte i set when occs[8 i + k] > threshold."""
    if not _native(occs):
        return reference.grid_pack_bits(occs, threshold)
    return native.grid_pack_bits(occs.contiguous(), float(threshold))


def march_rays(rays_o: Tensor, rays_d: Tensor, t_min: Tensor, t_max: Tensor, bitfield: Tensor,
               aabb: Sequence[float], resolution: int, levels: int, step_size: float, max_step_size: float,
               cone_angle: float, max_samples: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Packed samples of the occupied cells: packed_info [N, 2], ray_indices [S], t_starts [S], t_ends [S].

    `aabb`: the base box as 6 Python floats (min xyz, max xyz), e.g. `OccupancyGrid.box`; the kernels
    take the grid's geometry on the host, and reading it from a device tensor would sync every call.
    Marching runs in float32 on every path (other dtypes are converted), so all paths agree exactly.
    """
    rays_o, rays_d, t_min, t_max = (t.float().contiguous() for t in (rays_o, rays_d, t_min, t_max))
    if not _native(rays_o):
        return reference.march_rays(rays_o, rays_d, t_min, t_max, bitfield, aabb, resolution, levels,
                                    step_size, max_step_size, cone_angle, max_samples)
    packed_info, ray_indices, t_starts, t_ends = native.march_rays(
        rays_o, rays_d, t_min, t_max, bitfield.contiguous(), [float(v) for v in aabb], int(resolution),
        int(levels), float(step_size), float(max_step_size), float(cone_angle), int(max_samples))
    return packed_info, ray_indices, t_starts, t_ends


def _check_packed(packed_info: Tensor, n_samples: int) -> None:
    start, count = packed_info[:, 0], packed_info[:, 1]
    if int(count.sum()) != n_samples or not torch.equal(start, torch.cumsum(count, 0) - count):
        raise ValueError(f"packed_info is not a packed layout of {n_samples} samples: rays must own "
                         "consecutive runs [start, start + count) that cover every sample in order")


class _VolumeRender(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, packed_info, t_thresh):
        weights, color, depth, opacity = native.volrend_forward(sigmas, rgbs, t_starts, t_ends, packed_info, t_thresh)
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, weights, packed_info)
        ctx.t_thresh = t_thresh
        ctx.mark_non_differentiable(packed_info)
        return weights, color, depth, opacity

    @staticmethod
    @once_differentiable
    def backward(ctx, g_weights, g_color, g_depth, g_opacity):
        sigmas, rgbs, t_starts, t_ends, weights, packed_info = ctx.saved_tensors
        g_sigmas, g_rgbs = native.volrend_backward(
            g_weights.contiguous(), g_color.contiguous(), g_depth.contiguous(), g_opacity.contiguous(),
            sigmas, rgbs, t_starts, t_ends, weights, packed_info, ctx.t_thresh)
        return g_sigmas, g_rgbs, None, None, None, None


def volume_render(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, packed_info: Tensor,
                  t_thresh: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sigmas [S], rgbs [S, 3] (differentiable) -> weights [S], color [N, 3], depth [N], opacity [N].

    packed_info [N, 2] must be the packed layout: ray r owns samples [start_r, start_r + count_r),
    rays in order, covering all S samples (what `march_rays` returns); checked under ONEFIELD_DEBUG=1.
    """
    if debug_checks():
        _check_packed(packed_info, sigmas.shape[0])
    dtype = sigmas.dtype
    rgbs, t_starts, t_ends = (t.to(dtype).contiguous() for t in (rgbs, t_starts, t_ends))
    if not _native(sigmas):
        return reference.volume_render(sigmas, rgbs, t_starts, t_ends, packed_info.long(), t_thresh)
    return _VolumeRender.apply(sigmas.contiguous(), rgbs, t_starts, t_ends, packed_info.long().contiguous(),
                               float(t_thresh))


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, scales, resolutions):
        ctx.save_for_backward(x, table)
        ctx.levels = (scales, resolutions)
        return native.hash_encode_forward(x, table, scales, resolutions)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[:2]
        g_table, g_x = native.hash_encode_backward(g_out.contiguous(), x, table, *ctx.levels, need_x)
        return (g_x if need_x else None), (g_table if need_table else None), None, None


def hash_encode(x: Tensor, table: Tensor, scales: tuple[float, ...], resolutions: tuple[int, ...]) -> Tensor:
    """x [N, 3] in [0, 1], table [L, T, F] -> features [N, L * F]; differentiable in x and table."""
    x = x.to(table.dtype)
    if not _native(x):
        return reference.hash_encode(x, table, scales, resolutions)
    return _HashEncode.apply(x.contiguous(), table.contiguous(), list(scales), list(resolutions))


class _PlaneSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plane, uv, k):
        ctx.save_for_backward(uv)
        ctx.shape = tuple(plane.shape)
        return native.plane_sample_forward(plane, uv, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        (uv,) = ctx.saved_tensors
        return native.plane_sample_backward(g_out.contiguous(), uv, *ctx.shape), None, None


def plane_sample(plane: Tensor, uv: Tensor, k: int | None = None) -> Tensor:
    """Bilinear samples [N, k] of the first k channels (default all) of a channels-last factor
    plane [H, W, C] at uv [N, 2] in [-1, 1] (u along W, v along H, corners aligned; a line is
    W = 1). Differentiable in `plane`; the native kernels give no gradient to `uv` (sample
    positions are not learned), so a `uv` that requires grad takes the reference path."""
    k = plane.shape[-1] if k is None else int(k)
    uv = uv.to(plane.dtype)
    if not _native(plane) or uv.requires_grad:
        return reference.plane_sample(plane, uv, k)
    return _PlaneSample.apply(plane.contiguous(), uv.contiguous(), k)


class _TrivecSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vectors, ids, local, weights, k):
        ctx.save_for_backward(vectors, ids, local, weights)
        return native.trivec_sample_forward(vectors, ids, local, weights, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        vectors, ids, local, weights = ctx.saved_tensors
        return native.trivec_sample_backward(g_out.contiguous(), vectors, ids, local, weights), None, None, None, None


def trivec_sample(vectors: Tensor, ids: Tensor, local: Tensor, weights: Tensor, k: int | None = None) -> Tensor:
    """Strivec's local tri-vector tensors: vectors [3, T, L, C] (axis, tensor, texel, component),
    for each point the tensors covering it in S slots, ids [N, S] (-1: empty slot), local
    coordinates [N, S, 3] in [-1, 1] and weights [N, S] -> [N, k]:
    sum over slots of weight x prod over axes of the linearly interpolated vector (first k components).
    Differentiable in `vectors` only (placement, local coordinates and weights are not learned).
    Ids past the last tensor are rejected under ONEFIELD_DEBUG=1."""
    k = vectors.shape[-1] if k is None else int(k)
    if debug_checks() and ids.numel() > 0 and int(ids.max()) >= vectors.shape[1]:
        raise ValueError(f"ids must be < the number of tensors ({vectors.shape[1]})")
    local, weights = local.to(vectors.dtype), weights.to(vectors.dtype)
    if not _native(vectors):
        return reference.trivec_sample(vectors, ids, local, weights, k)
    return _TrivecSample.apply(vectors.contiguous(), ids.long().contiguous(), local.contiguous(),
                               weights.contiguous(), k)


def _check_rows(op: str, named: dict[str, Tensor], wider: dict[str, int]) -> None:
    """Dense per-ray rows: every tensor 2-D with the same N, one float dtype, one device; each one
    named in `wider` has that many more columns than the first (edges: one more than bins)."""
    (name0, t0), *_ = named.items()
    if t0.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{op}: {name0} must be float32 or float64, got {t0.dtype}")
    for name, t in named.items():
        if t.dim() != 2:
            raise ValueError(f"{op}: {name} must be 2-D [N, *] (one row a ray), got shape {tuple(t.shape)}")
        if t.dtype != t0.dtype or t.device != t0.device:
            raise ValueError(f"{op}: {name} is {t.dtype} on {t.device} but {name0} is {t0.dtype} on {t0.device}")
        if t.shape[0] != t0.shape[0]:
            raise ValueError(f"{op}: {name} has {t.shape[0]} rows but {name0} has {t0.shape[0]}")
    for name, offset in wider.items():
        want = t0.shape[1] + offset
        if named[name].shape[1] != want:
            raise ValueError(f"{op}: {name} must have {want} columns ({name0}'s + {offset}), "
                             f"got {named[name].shape[1]}")


def pdf_resample(edges: Tensor, weights: Tensor, u: Tensor, padding: float = 0.01) -> Tensor:
    """New edge positions [N, M] drawn by inverse-transform sampling of each ray's histogram, as
    nerfstudio's PDFSampler: edges [N, K + 1] (non-decreasing), weights [N, K] (>= 0, padded by
    `padding`), u [N, M] in [0, 1]. Not differentiable (samples are positions, not learned).

    Sorted u (ascending along a row) is the fast case, O(K + M) a ray; any order gives the same
    values. Negative weights are rejected under ONEFIELD_DEBUG=1.
    """
    _check_rows("pdf_resample", {"weights": weights, "edges": edges, "u": u}, {"edges": 1})
    if weights.shape[1] < 1:
        raise ValueError("pdf_resample: weights must have at least one bin (K >= 1)")
    if debug_checks() and weights.numel() > 0 and bool((weights < 0).any()):
        raise ValueError("pdf_resample: weights must be >= 0")
    edges, weights, u = (t.detach().contiguous() for t in (edges, weights, u))
    if not _native(u):
        return reference.pdf_resample(edges, weights, u, float(padding))
    return native.pdf_resample(edges, weights, u, float(padding))


class _IntervalWeights(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t_query, t_src, w_src):
        ctx.save_for_backward(t_query, t_src)
        return native.interval_weights_forward(t_query, t_src, w_src)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        t_query, t_src = ctx.saved_tensors
        return None, None, native.interval_weights_backward(g_out.contiguous(), t_query, t_src)


def interval_weights(t_query: Tensor, t_src: Tensor, w_src: Tensor) -> Tensor:
    """For each query interval [t_query[q], t_query[q + 1]], the sum of the weights of the source
    intervals overlapping it [N, Q]: the mip-NeRF 360 / nerfstudio `outer` envelope, used by the
    proposal-network loss. t_query [N, Q + 1], t_src [N, S + 1] (non-decreasing edges, checked for
    t_src under ONEFIELD_DEBUG=1), w_src [N, S]. Differentiable in w_src only (edges come from the
    sampler).
    """
    _check_rows("interval_weights", {"w_src": w_src, "t_src": t_src, "t_query": t_query}, {"t_src": 1})
    if w_src.shape[1] < 1 or t_query.shape[1] < 1:
        raise ValueError("interval_weights: need S >= 1 source intervals and t_query [N, Q + 1] with Q >= 0")
    if debug_checks() and t_src.numel() > 0 and bool((t_src[:, 1:] < t_src[:, :-1]).any()):
        raise ValueError("interval_weights: t_src must be non-decreasing along each row")
    t_query, t_src = t_query.detach().contiguous(), t_src.detach().contiguous()
    if not _native(w_src):
        return reference.interval_weights(t_query, t_src, w_src)
    return _IntervalWeights.apply(t_query, t_src, w_src.contiguous())


def hash_grid_levels(n_levels: int, base_resolution: int, per_level_scale: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Per-level grid scale s_l = base * b^l - 1 (rounded to float32) and resolution ceil(s_l) + 1."""
    scales = tuple(float(torch.tensor(base_resolution * per_level_scale**lv - 1.0, dtype=torch.float32))
                   for lv in range(n_levels))
    return scales, tuple(int(math.ceil(s)) + 1 for s in scales)
