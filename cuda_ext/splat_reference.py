"""Pure-torch twins of the splat kernels (``csrc/splat_core.h``): the same algorithm, vectorised.

`sh_colors` is the view-dependent colour (3DGS's SH basis), `project` the per-Gaussian EWA
projection, `bin_tiles` the tile binning with its depth sort, `rasterize` the front-to-back
compositing of each 16x16 tile (one [pixels, list] matrix per tile, the transmittance by a
cumulative product, the stop by a cumulative count), `query` the density and colour of the Gaussians
at points (chunks of (point, Gaussian) pairs from the box lattice). Autograd through them is the
reference for the kernels' hand-written backward passes. Constants are the kernels' float32 values.
"""

from dataclasses import dataclass

import torch
from torch import Tensor


def _f32(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32))


ALPHA_MIN = _f32(1.0 / 255.0)  # a pixel ignores a Gaussian fainter than this
ALPHA_MAX = _f32(0.99)  # alpha clamp (the original 3DGS value; gsplat 1.5 uses 0.999)
T_MIN = _f32(1e-4)  # a pixel stops before its transmittance drops to this
EXTENT = _f32(3.33)  # the 3-sigma box, with gsplat's margin
FOV_CLAMP = _f32(0.3)  # tx/z, ty/z clamped to the image plus 0.3x the half field of view


@dataclass(frozen=True)
class SplatCamera:
    """One pinhole view for the rasterizer: world-to-camera (OpenCV axes) as a row-major 3x4
    matrix, intrinsics in pixels, the image size, the depth range and the 2-d dilation."""

    w2c: tuple[float, ...]  # 12 values
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10
    eps2d: float = 0.3
    antialiased: bool = False

    def __post_init__(self) -> None:
        if len(self.w2c) != 12:
            raise ValueError(f"w2c must hold 12 values (row-major [3, 4]), got {len(self.w2c)}")

    def centre(self, like: Tensor) -> Tensor:
        """The camera centre in world space [3], in `like`'s dtype and device."""
        w2c = torch.tensor(self.w2c, dtype=torch.float64).view(3, 4)
        return (-w2c[:, :3].T @ w2c[:, 3]).to(like)

    @property
    def native_args(self) -> tuple:
        return (list(self.w2c), self.fx, self.fy, self.cx, self.cy, self.width, self.height, self.near, self.far,
                self.eps2d, self.antialiased)


SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Real SH basis of 3DGS (its signs and order) at unit directions [N, 3] -> [N, (degree + 1)^2]."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in [0, 3], got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def sh_colors(means: Tensor, coeffs: Tensor, campos: Tensor, degree: int) -> Tensor:
    """The colour of Gaussians at means [N, 3] seen from the camera centre campos [3]: coeffs
    [N, K, 3] (K >= (degree + 1)^2; higher bands unused) -> rgb [N, 3] >= 0 (3DGS: SH + 0.5, clamped)."""
    return sh_along(torch.nn.functional.normalize(means - campos, dim=-1), coeffs, degree)


def sh_along(dirs: Tensor, coeffs: Tensor, degree: int) -> Tensor:
    """rgb [N, 3] >= 0 of coeffs [N, K, 3] seen along unit directions dirs [N, 3] (SH + 0.5, clamped)."""
    k = (degree + 1) ** 2
    basis = sh_basis(dirs, degree)  # [N, k]
    return ((basis[:, :, None] * coeffs[:, :k]).sum(1) + 0.5).clamp(min=0.0)


def query(x: Tensor, dirs: Tensor | None, lattice, means: Tensor, whiten: Tensor, peak: Tensor, sh: Tensor,
          degree: int, max_pairs: int = 1 << 21) -> tuple[Tensor, Tensor | None]:
    """sigma [M] at x [M, 3]: sum of peak [N] exp(-|(x - means) whiten|^2 / 2) over the Gaussians
    whose box holds x (`lattice`: a `fields.box_lattice.BoxLattice` of those boxes, whiten [N, 3, 3]);
    with dirs [M, 3] also their density-weighted colour sh [N, K, 3] seen along dirs, in [0, 1]."""
    sigma = x.new_zeros(x.shape[0])
    rgb_sum = x.new_zeros(x.shape[0], 3) if dirs is not None else None
    for p, g in lattice.pairs(x, max_pairs):
        local = torch.einsum("pi,pij->pj", x[p] - means[g], whiten[g])
        w = peak[g] * torch.exp(-0.5 * (local * local).sum(-1))
        sigma = sigma.index_add(0, p, w)
        if rgb_sum is not None:
            rgb = sh_along(torch.nn.functional.normalize(dirs[p], dim=-1), sh[g], degree)  # [P, 3]
            rgb_sum = rgb_sum.index_add(0, p, w[:, None] * rgb)
    rgb = None if rgb_sum is None else (rgb_sum / sigma.clamp(min=1e-10)[:, None]).clamp(0, 1)
    return sigma, rgb


def rotation(q: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) [N, 4] -> rotation matrices [N, 3, 3]."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).view(-1, 3, 3)


def project(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
            cam: SplatCamera) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """means [N, 3], quats [N, 4] (w, x, y, z; any norm), scales [N, 3], opacities [N] ->
    radii int32 [N, 2] (0 when culled), means2d [N, 2], depths [N], conics [N, 3] (the inverse 2-d
    covariance a, b, c of [[a, b], [b, c]]), opacities [N] (compensated when antialiased); culled
    Gaussians get zeros and no gradient."""
    dt, dev = means.dtype, means.device

    def const(v: float) -> Tensor:  # a camera value as the kernel holds it: a float, then cast
        return torch.tensor(_f32(v), dtype=dt, device=dev)

    w2c = torch.tensor([_f32(v) for v in cam.w2c], dtype=dt, device=dev).view(3, 4)
    rot_w = w2c[:, :3]
    p = (rot_w[None] * means[:, None, :]).sum(-1) + w2c[:, 3]  # [N, 3]
    in_depth = (p[:, 2] >= const(cam.near)) & (p[:, 2] <= const(cam.far))
    z = torch.where(in_depth, p[:, 2], torch.ones_like(p[:, 2]))
    qnorm2 = (quats * quats).sum(-1)
    ok_q = qnorm2 > 0
    qn = quats / torch.where(ok_q, qnorm2, torch.ones_like(qnorm2)).sqrt()[:, None]
    m = rotation(qn) * scales[:, None, :]  # R diag(s)  [N, 3, 3]
    cov = m @ m.transpose(1, 2)
    cov_c = rot_w @ cov @ rot_w.T  # [N, 3, 3]

    fx, fy, cx, cy = const(cam.fx), const(cam.fy), const(cam.cx), const(cam.cy)
    width, height = const(cam.width), const(cam.height)
    tan_x, tan_y = const(0.5) * width / fx, const(0.5) * height / fy
    lim_xp, lim_xn = (width - cx) / fx + const(FOV_CLAMP) * tan_x, cx / fx + const(FOV_CLAMP) * tan_x
    lim_yp, lim_yn = (height - cy) / fy + const(FOV_CLAMP) * tan_y, cy / fy + const(FOV_CLAMP) * tan_y
    tx = z * torch.clamp(p[:, 0] / z, -lim_xn, lim_xp)
    ty = z * torch.clamp(p[:, 1] / z, -lim_yn, lim_yp)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], -1).view(-1, 2, 3)
    cov2 = jac @ cov_c @ jac.transpose(1, 2)  # [N, 2, 2]
    a0, b, c0 = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]

    eps = const(cam.eps2d)
    a, c = a0 + eps, c0 + eps
    det = a * c - b * b
    ok_det = det > 0
    det = torch.where(ok_det, det, torch.ones_like(det))
    ratio = (a0 * c0 - b * b) / det
    comp = torch.where(ratio > 0, ratio.clamp(min=1e-30).sqrt(), torch.zeros_like(ratio))
    opac = opacities * comp if cam.antialiased else opacities
    ok_op = opac >= ALPHA_MIN
    with torch.no_grad():
        safe_op = torch.where(ok_op, opac, torch.ones_like(opac))
        extent = torch.clamp(torch.sqrt(2 * torch.log(safe_op / ALPHA_MIN)), max=EXTENT)
        rad_x = torch.ceil(extent * torch.sqrt(a.clamp(min=0)))
        rad_y = torch.ceil(extent * torch.sqrt(c.clamp(min=0)))
    mean2d = torch.stack([fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy], -1)
    with torch.no_grad():
        on_screen = ((mean2d[:, 0] + rad_x > 0) & (mean2d[:, 0] - rad_x < width)
                     & (mean2d[:, 1] + rad_y > 0) & (mean2d[:, 1] - rad_y < height))
    valid = in_depth & ok_q & ok_det & ok_op & on_screen
    conic = torch.stack([c / det, -b / det, a / det], -1)
    v1, v2 = valid[:, None], valid
    radii = torch.where(valid[:, None], torch.stack([rad_x, rad_y], -1), torch.zeros_like(mean2d)).to(torch.int32)
    return (radii, torch.where(v1, mean2d, torch.zeros_like(mean2d)), torch.where(v2, p[:, 2], zero),
            torch.where(v1, conic, torch.zeros_like(conic)), torch.where(v2, opac, zero))


def tile_rects(means2d: Tensor, radii: Tensor, width: int, height: int, tile: int) -> Tensor:
    """Tiles each Gaussian covers: int64 [N, 4] = x0, x1, y0, y1 ([x0, x1) x [y0, y1), clamped to the image)."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    tm = means2d / tile
    tr = radii.to(means2d.dtype) / tile
    x0 = torch.floor(tm[:, 0] - tr[:, 0]).long().clamp(0, tiles_x)
    x1 = torch.ceil(tm[:, 0] + tr[:, 0]).long().clamp(0, tiles_x)
    y0 = torch.floor(tm[:, 1] - tr[:, 1]).long().clamp(0, tiles_y)
    y1 = torch.ceil(tm[:, 1] + tr[:, 1]).long().clamp(0, tiles_y)
    return torch.stack([x0, x1, y0, y1], -1)


@torch.no_grad()
def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
              tile: int = 16) -> tuple[Tensor, Tensor]:
    """-> tile_offsets int64 [tiles + 1] (row-major tiles), flatten_ids int64 [M]: the Gaussians of tile
    t are flatten_ids[off[t]:off[t + 1]], front to back (equal depths in Gaussian order)."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    rect = tile_rects(means2d, radii, width, height, tile)
    span_x = rect[:, 1] - rect[:, 0]
    counts = span_x * (rect[:, 3] - rect[:, 2]) * (radii > 0).all(-1)
    gauss = torch.repeat_interleave(torch.arange(len(counts), device=means2d.device), counts)  # [M]
    local = torch.arange(len(gauss), device=means2d.device) - (torch.cumsum(counts, 0) - counts)[gauss]
    tx = rect[gauss, 0] + local % span_x[gauss]
    ty = rect[gauss, 2] + local // span_x[gauss]
    tile_id = ty * tiles_x + tx
    order = torch.argsort(depths[gauss], stable=True)
    order = order[torch.argsort(tile_id[order], stable=True)]
    offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.long, device=means2d.device)
    offsets[1:] = torch.cumsum(torch.bincount(tile_id, minlength=tiles_x * tiles_y), 0)
    return offsets, gauss[order]


def rasterize(means2d: Tensor, radii: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor,
              background: Tensor, tile_offsets: Tensor, flatten_ids: Tensor, width: int, height: int,
              tile: int = 16) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing. means2d [N, 2], radii int32 [N, 2] (a pixel sees a Gaussian only
    inside its radius box), conics [N, 3], colors [N, C], opacities [N], background [C] ->
    image [H, W, C], alpha [H, W]."""
    tiles_x = -(-width // tile)
    n_tiles = len(tile_offsets) - 1
    offsets = tile_offsets.tolist()
    pieces, pixel_ids = [], []
    for t in range(n_tiles):
        x0, y0 = (t % tiles_x) * tile, (t // tiles_x) * tile
        ys, xs = torch.meshgrid(torch.arange(y0, min(y0 + tile, height), device=means2d.device),
                                torch.arange(x0, min(x0 + tile, width), device=means2d.device), indexing="ij")
        px, py = xs.flatten().to(means2d.dtype) + 0.5, ys.flatten().to(means2d.dtype) + 0.5  # [P]
        ids = flatten_ids[offsets[t]:offsets[t + 1]]  # [K]
        dx = means2d[ids, 0][None] - px[:, None]  # [P, K]
        dy = means2d[ids, 1][None] - py[:, None]
        q = conics[ids]
        sigma = 0.5 * (q[:, 0] * dx * dx + q[:, 2] * dy * dy) + q[:, 1] * dx * dy
        alpha = torch.clamp(opacities[ids] * torch.exp(-sigma), max=ALPHA_MAX)
        box = radii[ids].to(dx.dtype)
        valid = (dx.abs() <= box[:, 0]) & (dy.abs() <= box[:, 1]) & (sigma >= 0) & (alpha >= ALPHA_MIN)
        alpha = torch.where(valid, alpha, torch.zeros_like(alpha))
        one_minus = 1 - alpha
        before = torch.cumprod(torch.cat([torch.ones_like(one_minus[:, :1]), one_minus[:, :-1]], 1), 1)  # T_i
        stop = valid & (before * one_minus <= T_MIN)
        included = valid & (torch.cumsum(stop.long(), 1) == 0)
        weights = torch.where(included, alpha * before, torch.zeros_like(alpha))
        trans = torch.where(included, one_minus, torch.ones_like(one_minus)).prod(1)  # [P]
        pieces.append(torch.cat([weights @ colors[ids] + trans[:, None] * background, (1 - trans)[:, None]], 1))
        pixel_ids.append((ys * width + xs).flatten())
    flat = torch.zeros(height * width, colors.shape[1] + 1, dtype=colors.dtype, device=colors.device)
    flat = flat.index_put((torch.cat(pixel_ids),), torch.cat(pieces))
    flat = flat.view(height, width, -1)
    return flat[..., :-1], flat[..., -1]
