"""Pure-torch twins of the native ops.

Each function here is the SAME algorithm as the C++/CUDA kernel of the same name in ``csrc/``:
the same float operations in the same order (the kernels are built without FMA contraction),
so marching produces identical samples and the rendering/encoding results agree to float
rounding. Autograd through these functions is the reference for the kernels' backward passes.
They are used when the extension is not built, when ``ONEFIELD_KERNELS=torch``, and by the tests.
"""

from collections.abc import Sequence

import torch
from torch import Tensor
import torch.nn.functional as F

from .geometry import box_center_half

MISS_T = 1e10
PARALLEL_EPS = float(torch.tensor(1e-12, dtype=torch.float32))  # the kernels' float constant
HASH_PRIMES = (1, 2654435761, 805459861)
PDF_EPS = 1e-5  # nerfstudio's PDFSampler eps: a weight row summing below it is padded up to it


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test. rays [N, 3], aabb [6] -> t_near [N], t_far [N], hit [N] (misses get MISS_T)."""
    lo, hi = aabb[:3], aabb[3:]
    parallel = rays_d.abs() < PARALLEL_EPS  # [N, 3]
    inside = (rays_o >= lo) & (rays_o <= hi)
    safe_d = torch.where(parallel, torch.ones_like(rays_d), rays_d)
    t0 = (lo - rays_o) / safe_d
    t1 = (hi - rays_o) / safe_d
    t_lo = torch.where(parallel, torch.full_like(t0, -MISS_T), torch.minimum(t0, t1))
    t_hi = torch.where(parallel, torch.full_like(t0, MISS_T), torch.maximum(t0, t1))
    t_near = t_lo.amax(-1).clamp(min=-MISS_T)
    t_far = t_hi.amin(-1).clamp(max=MISS_T)
    hit = (inside | ~parallel).all(-1) & (t_far >= t_near) & (t_far > 0)
    miss = torch.full_like(t_near, MISS_T)
    return torch.where(hit, t_near, miss), torch.where(hit, t_far, miss), hit


def grid_ema_update_(occs: Tensor, indices: Tensor, values: Tensor, decay: float) -> None:
    """In place: occs = max(occs * decay, scatter_max(values at indices)). values must be >= 0."""
    fresh = torch.zeros_like(occs).scatter_reduce_(0, indices, values, reduce="amax")
    occs.copy_(torch.maximum(occs * decay, fresh))


def grid_pack_bits(occs: Tensor, threshold: float) -> Tensor:
    """Bit k of byte i is occs[8 i + k] > threshold. occs [M] -> uint8 [ceil(M / 8)]."""
    bits = (occs > threshold).to(torch.uint8)
    bits = torch.nn.functional.pad(bits, (0, (-bits.numel()) % 8)).view(-1, 8)
    weights = torch.tensor([1 << k for k in range(8)], dtype=torch.uint8, device=occs.device)
    return (bits * weights).sum(-1, dtype=torch.uint8)


def _grid_geometry(aabb: Sequence[float] | Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Centre, half size and its reciprocal [3], in float32 as the kernels compute them."""
    center, half = box_center_half(torch.as_tensor(aabb, dtype=torch.float32, device=device))
    return center, half, 1.0 / half


def _cascade_of(x: Tensor, center: Tensor, inv_half: Tensor, levels: int) -> Tensor:
    m = ((x - center).abs() * inv_half).amax(-1)  # [K]
    c = torch.zeros_like(m, dtype=torch.long)
    for k in range(levels):
        c += (m > float(1 << k)).long()
    return c


def _cell_of(x: Tensor, inv_scale: Tensor, center: Tensor, inv_half: Tensor, res: int) -> Tensor:
    u = ((x - center) * (inv_half * inv_scale[:, None]) * 0.5 + 0.5) * float(res)
    return torch.floor(u).long().clamp(0, res - 1)  # [K, 3]


def _locate(x: Tensor, center: Tensor, inv_half: Tensor, res: int, levels: int) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's `cascade_of` + `cell_of`: cascade [K] (clamped to the outermost), cell [K, 3], and
    whether x [K, 3] lies outside every cascade [K]."""
    c = _cascade_of(x, center, inv_half, levels)
    outside = c >= levels
    c = c.clamp(max=levels - 1)
    idx = _cell_of(x, 1.0 / (torch.ones_like(c) << c).float(), center, inv_half, res)
    return c, idx, outside


def _linear_cell(c: Tensor, idx: Tensor, res: int) -> Tensor:
    """The kernel's `is_occupied` index: c R^3 + (i R + j) R + k, [K]."""
    return c * res**3 + (idx[:, 0] * res + idx[:, 1]) * res + idx[:, 2]


def grid_cells(x: Tensor, aabb: Sequence[float] | Tensor, resolution: int, levels: int) -> tuple[Tensor, Tensor]:
    """The cell that `march_rays` tests for a sample at world points x [K, 3] (computed in float32):
    its index into the grid's `levels` x `resolution`^3 cells [K], and whether x lies inside the
    outermost cascade [K] (outside, the index is that of the outermost cascade's nearest cell)."""
    center, _, inv_half = _grid_geometry(aabb, x.device)
    c, idx, outside = _locate(x.float(), center, inv_half, resolution, levels)
    return _linear_cell(c, idx, resolution), ~outside


def _cell_exit_t(o: Tensor, d: Tensor, inv_d: Tensor, scale: Tensor, idx: Tensor, center: Tensor,
                 half: Tensor, cell_frac: Tensor) -> Tensor:
    half_s = half * scale[:, None]
    width = half_s * cell_frac
    lo = (center - half_s) + idx.float() * width
    hi = lo + width
    miss = torch.full_like(o, MISS_T)
    t_a = torch.where(d > PARALLEL_EPS, (hi - o) * inv_d, miss)
    t_a = torch.where(d < -PARALLEL_EPS, (lo - o) * inv_d, t_a)
    return t_a.amin(-1).clamp(max=MISS_T)


def march_rays(rays_o: Tensor, rays_d: Tensor, t_min: Tensor, t_max: Tensor, bitfield: Tensor,
               aabb: Sequence[float], resolution: int, levels: int, step_size: float, max_step_size: float,
               cone_angle: float, max_samples: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """March every ray through the occupied cells of a cascaded bitfield grid.

    Returns packed samples: packed_info [N, 2] (start, count), ray_indices [S], t_starts [S],
    t_ends [S], rays in order and samples in increasing t. All rays step together; a ray leaves
    the active set when it passes t_max, leaves the outermost cascade or has max_samples.
    """
    device = rays_o.device
    center, half, inv_half = _grid_geometry(aabb, device)
    cell_frac = torch.tensor(2.0, device=device) / resolution
    n = rays_o.shape[0]
    t = t_min.clone()
    count = torch.zeros(n, dtype=torch.long, device=device)
    active = torch.nonzero((t < t_max) & (count < max_samples)).flatten()
    rec_rays, rec_t0, rec_t1 = [], [], []
    while active.numel() > 0:
        o, d, ta = rays_o[active], rays_d[active], t[active]
        inv_d = 1.0 / d
        dt = torch.clamp(ta * cone_angle, min=step_size, max=max_step_size)
        t_mid = ta + dt * 0.5
        x = o + d * t_mid[:, None]
        c, idx, outside = _locate(x, center, inv_half, resolution, levels)
        scale = (torch.ones_like(c) << c).float()
        lin = _linear_cell(c, idx, resolution)
        occupied = ((bitfield[lin >> 3].long() >> (lin & 7)) & 1).bool() & ~outside

        rec_rays.append(active[occupied])
        rec_t0.append(ta[occupied])
        rec_t1.append((ta + dt)[occupied])
        count[active[occupied]] += 1

        t_exit = _cell_exit_t(o, d, inv_d, scale, idx, center, half, cell_frac)
        steps = torch.clamp(torch.ceil((t_exit - t_mid) / dt), min=1.0)
        t_next = torch.where(occupied, ta + dt, ta + dt * steps)
        t[active] = t_next
        keep = ~outside & (t_next < t_max[active]) & (count[active] < max_samples)
        active = active[keep]

    ray_indices = torch.cat(rec_rays) if rec_rays else torch.zeros(0, dtype=torch.long, device=device)
    t_starts = torch.cat(rec_t0) if rec_t0 else torch.zeros(0, device=device)
    t_ends = torch.cat(rec_t1) if rec_t1 else torch.zeros(0, device=device)
    order = torch.sort(ray_indices, stable=True).indices  # iteration order is t order per ray
    packed_info = torch.stack([torch.cumsum(count, 0) - count, count], -1)
    return packed_info, ray_indices[order], t_starts[order], t_ends[order]


def volume_render(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, packed_info: Tensor,
                  t_thresh: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Packed volume rendering with early termination.

    sigmas [S], rgbs [S, 3], t_starts/t_ends [S], packed_info [N, 2] ->
    weights [S], color [N, 3], depth [N], opacity [N], with packed_info the packed layout (rays own
    consecutive runs of samples, in order). Optical depth accumulates in float64 and is rounded
    once before the exp, as in the kernel; a ray stops at its first sample whose transmittance is
    below t_thresh.
    """
    start, count = packed_info[:, 0], packed_info[:, 1]
    n = packed_info.shape[0]
    rid = torch.repeat_interleave(torch.arange(n, device=sigmas.device), count)  # [S] ray of each sample

    sd = sigmas * (t_ends - t_starts)
    acc = torch.cumsum(sd.double(), 0) - sd.double()  # exclusive, across rays
    acc = acc - acc[torch.repeat_interleave(start, count)]  # ... restarted at each ray
    trans = torch.exp((-acc).to(sigmas.dtype))
    weights = torch.where(trans >= t_thresh, trans * (1.0 - torch.exp(-sd)), torch.zeros_like(sd))

    color = torch.zeros(n, 3, dtype=rgbs.dtype, device=rgbs.device).index_add(0, rid, weights[:, None] * rgbs)
    depth = torch.zeros(n, dtype=sigmas.dtype, device=sigmas.device).index_add(
        0, rid, weights * ((t_starts + t_ends) * 0.5))
    opacity = torch.zeros(n, dtype=sigmas.dtype, device=sigmas.device).index_add(0, rid, weights)
    return weights, color, depth, opacity


def hash_encode(x: Tensor, table: Tensor, scales: tuple[float, ...], resolutions: tuple[int, ...]) -> Tensor:
    """Multiresolution hash encoding. x [N, 3] in [0, 1], table [L, T, F] -> [N, L * F]."""
    n_levels, t_size, n_feat = table.shape
    offsets = torch.tensor([[(k >> a) & 1 for a in range(3)] for k in range(8)], device=x.device)  # [8, 3]
    up = offsets.bool()[None]  # [1, 8, 3]
    out = []
    for level in range(n_levels):
        p = x * scales[level] + 0.5
        fl = torch.floor(p)
        f = (p - fl)[:, None, :]  # [N, 1, 3]
        corner = fl.long()[:, None, :] + offsets  # [N, 8, 3]
        factors = torch.where(up, f, 1.0 - f)  # [N, 8, 3]
        w = factors[..., 0] * factors[..., 1] * factors[..., 2]  # [N, 8]
        res = resolutions[level]
        if res**3 <= t_size:
            c = corner.clamp(0, res - 1)
            idx = c[..., 0] + c[..., 1] * res + c[..., 2] * (res * res)
        else:
            idx = (corner[..., 0] * HASH_PRIMES[0]) ^ (corner[..., 1] * HASH_PRIMES[1]) ^ (corner[..., 2] * HASH_PRIMES[2])
            idx = idx & (t_size - 1)
        out.append((w[..., None] * table[level][idx]).sum(1))  # [N, F]
    return torch.cat(out, -1)


def plane_sample(plane: Tensor, uv: Tensor, k: int) -> Tensor:
    """Bilinear samples [N, k] of the first k channels of plane [H, W, C] at uv [N, 2] in [-1, 1]
    (u along W, v along H, align_corners=True; a line is W = 1)."""
    out = F.grid_sample(plane[..., :k].permute(2, 0, 1)[None], uv.view(1, -1, 1, 2), mode="bilinear",
                        align_corners=True)  # [1, k, N, 1]
    return out.view(k, -1).t()


def trivec_sample(vectors: Tensor, ids: Tensor, local: Tensor, weights: Tensor, k: int) -> Tensor:
    """Sum over slots of weight x prod over the 3 axes of the linearly interpolated local vectors:
    vectors [3, T, L, C], ids [N, S] (-1 empty), local [N, S, 3] in [-1, 1], weights [N, S] -> [N, k]."""
    length = vectors.shape[2]
    valid = ids >= 0
    t = ids.clamp(min=0)  # [N, S]
    x = ((local + 1) * 0.5 * (length - 1)).clamp(0, length - 1)  # [N, S, 3]
    i0 = x.floor().long().clamp(max=length - 2)
    f = x - i0.to(x.dtype)
    out = weights * valid.to(weights.dtype)  # [N, S]
    out = out[..., None]
    for a in range(3):
        v = vectors[a, :, :, :k]  # [T, L, k]
        lo, hi = v[t, i0[..., a]], v[t, i0[..., a] + 1]  # [N, S, k]
        fa = f[..., a, None]
        out = out * (lo * (1 - fa) + hi * fa)
    return out.sum(1)



def pdf_resample(edges: Tensor, weights: Tensor, u: Tensor, padding: float = 0.01) -> Tensor:
    """Inverse-transform sampling of a per-ray histogram, as nerfstudio's PDFSampler.

    edges [N, K + 1] (non-decreasing), weights [N, K] (>= 0), u [N, M] in [0, 1] -> new edge
    positions [N, M]. Sums run in float64 from the first bin (the kernels' sequential sums; torch's
    CPU cumsum is sequential) and are rounded to the input dtype once.
    """
    k = weights.shape[-1]
    w = weights + padding
    s = torch.cumsum(w.double(), -1)[:, -1:].to(w.dtype)  # [N, 1]
    pad = torch.relu(PDF_EPS - s)
    w = w + pad / k
    s = s + pad
    pdf = w / s
    cdf = torch.clamp(torch.cumsum(pdf.double(), -1).to(w.dtype), max=1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # [N, K + 1]
    idx = torch.searchsorted(cdf, u.contiguous(), right=True)
    below = (idx - 1).clamp(0, k)
    above = idx.clamp(0, k)
    c0, c1 = cdf.gather(1, below), cdf.gather(1, above)
    e0, e1 = edges.gather(1, below), edges.gather(1, above)
    frac = torch.clip(torch.nan_to_num((u - c0) / (c1 - c0), 0.0), 0.0, 1.0)  # 0/0 in empty bins -> 0
    return e0 + frac * (e1 - e0)


def interval_weights(t_query: Tensor, t_src: Tensor, w_src: Tensor) -> Tensor:
    """Sum of the source weights of the source intervals overlapping each query interval: the
    mip-NeRF 360 / nerfstudio `outer` envelope. t_query [N, Q + 1], t_src [N, S + 1] (both
    non-decreasing edges), w_src [N, S] -> [N, Q]; differentiable in w_src. The prefix sum runs in
    float64 and is rounded to the input dtype, as in the kernels.
    """
    s = w_src.shape[-1]
    cy = torch.cumsum(w_src.double(), -1).to(w_src.dtype)
    cy = torch.cat([torch.zeros_like(cy[:, :1]), cy], -1)  # [N, S + 1]
    lo = torch.searchsorted(t_src[:, :-1].contiguous(), t_query[:, :-1].contiguous(), right=True) - 1
    hi = torch.searchsorted(t_src[:, 1:].contiguous(), t_query[:, 1:].contiguous(), right=True)
    lo, hi = lo.clamp(0, s - 1), hi.clamp(0, s - 1)
    return cy[:, 1:].gather(1, hi) - cy[:, :-1].gather(1, lo)
