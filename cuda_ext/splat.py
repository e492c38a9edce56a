"""Typed entry points of the splat kernels, with autograd and device dispatch (like ``ops.py``).

`sh_colors` (view-dependent colour), `project` (EWA projection of 3-d Gaussians), `bin_tiles`
(which Gaussians touch which 16x16 tile, front to back), `rasterize` (front-to-back compositing) and
`query` (density and colour at points) run the C++ kernels on the CPU, the CUDA ones on a GPU
(binning there is the torch twin: its sort is the GPU radix sort), and the twins in
``splat_reference.py`` without the extension or under ``ONEFIELD_KERNELS=torch``.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import splat_reference as reference
from ._loader import native
from .ops import _native, debug_checks
from .splat_reference import SplatCamera

TILE = 16


class _ShColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, coeffs, campos, degree):
        (rgb,) = native.splat_sh_forward(means, coeffs, campos, degree)
        ctx.save_for_backward(means, coeffs, campos)
        ctx.degree = degree
        return rgb

    @staticmethod
    @once_differentiable
    def backward(ctx, g_rgb):
        means, coeffs, campos = ctx.saved_tensors
        g_coeffs, g_means = native.splat_sh_backward(means, coeffs, campos, ctx.degree, g_rgb.contiguous())
        return g_means, g_coeffs, None, None


def sh_colors(means: Tensor, coeffs: Tensor, campos: Tensor, degree: int) -> Tensor:
    """View-dependent colour: means [N, 3], coeffs [N, K, 3] (differentiable), camera centre campos
    [3], SH degree 0-3 -> rgb [N, 3] >= 0. Gradients reach the means through the view direction."""
    coeffs, campos = coeffs.to(means.dtype).contiguous(), campos.to(means.dtype).contiguous()
    if not _native(means):
        return reference.sh_colors(means, coeffs, campos, degree)
    return _ShColors.apply(means.contiguous(), coeffs, campos, int(degree))


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, cam):
        radii, means2d, depths, conics, opac = native.splat_project_forward(means, quats, scales, opacities,
                                                                            *cam.native_args)
        ctx.save_for_backward(means, quats, scales, opacities, radii)
        ctx.cam = cam
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, opac

    @staticmethod
    @once_differentiable
    def backward(ctx, _g_radii, g_means2d, g_depths, g_conics, g_opac):
        means, quats, scales, opacities, radii = ctx.saved_tensors
        grads = native.splat_project_backward(means, quats, scales, opacities, *ctx.cam.native_args, radii,
                                              g_means2d.contiguous(), g_depths.contiguous(), g_conics.contiguous(),
                                              g_opac.contiguous())
        return (*grads, None)


def project(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
            cam: SplatCamera) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """means [N, 3], quats [N, 4] (w, x, y, z), scales [N, 3], opacities [N] (all differentiable) ->
    radii int32 [N, 2] (0: culled), means2d [N, 2], depths [N], conics [N, 3], opacities [N]
    (compensated when cam.antialiased). See ``csrc/splat_core.h`` for the maths."""
    dtype = means.dtype
    quats, scales, opacities = (t.to(dtype).contiguous() for t in (quats, scales, opacities))
    if not _native(means):
        return reference.project(means, quats, scales, opacities, cam)
    return _Project.apply(means.contiguous(), quats, scales, opacities, cam)


def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
              tile: int = TILE) -> tuple[Tensor, Tensor]:
    """-> tile_offsets int64 [tiles + 1], flatten_ids int64 [M]: tile t (row-major) is drawn from
    flatten_ids[off[t]:off[t + 1]], sorted front to back."""
    means2d, depths = means2d.detach().contiguous(), depths.detach().contiguous()
    radii = radii.to(torch.int32).contiguous()
    if means2d.device.type == "cpu" and _native(means2d):
        return tuple(native.splat_bin(means2d, radii, depths, width, height, tile))
    return reference.bin_tiles(means2d, radii, depths, width, height, tile)


def _check_bins(tile_offsets: Tensor, flatten_ids: Tensor, n: int) -> None:
    if bool((tile_offsets[1:] < tile_offsets[:-1]).any()) or int(tile_offsets[-1]) != len(flatten_ids):
        raise ValueError("tile_offsets must ascend and end at len(flatten_ids) (what bin_tiles returns)")
    if len(flatten_ids) and not 0 <= int(flatten_ids.min()) <= int(flatten_ids.max()) < n:
        raise ValueError(f"flatten_ids must index the {n} Gaussians")


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, radii, conics, colors, opacities, background, tile_offsets, flatten_ids, width, height,
                tile):
        image, trans, last = native.splat_rasterize_forward(means2d, radii, conics, colors, opacities, background,
                                                            tile_offsets, flatten_ids, width, height, tile)
        ctx.save_for_backward(means2d, radii, conics, colors, opacities, background, tile_offsets, flatten_ids, trans,
                              last)
        ctx.size = (width, height, tile)
        return image, 1 - trans

    @staticmethod
    @once_differentiable
    def backward(ctx, g_image, g_alpha):
        means2d, radii, conics, colors, opacities, background, tile_offsets, flatten_ids, trans, last = ctx.saved_tensors
        g_means2d, g_conics, g_colors, g_opacities = native.splat_rasterize_backward(
            g_image.contiguous(), g_alpha.contiguous(), means2d, radii, conics, colors, opacities, background,
            tile_offsets, flatten_ids, trans, last, *ctx.size)
        return g_means2d, None, g_conics, g_colors, g_opacities, None, None, None, None, None, None


def rasterize(means2d: Tensor, radii: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor,
              background: Tensor, tile_offsets: Tensor, flatten_ids: Tensor, width: int, height: int,
              tile: int = TILE) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of the binned Gaussians: means2d [N, 2], conics [N, 3], colors
    [N, C] (C <= 8: colour, depth, ... channels), opacities [N] (differentiable), radii int32 [N, 2]
    (a pixel sees a Gaussian only inside its radius box), background [C] -> image [H, W, C]
    (composited on the background), alpha [H, W]."""
    if debug_checks():
        _check_bins(tile_offsets, flatten_ids, means2d.shape[0])
    dtype = means2d.dtype
    conics, colors, opacities, background = (t.to(dtype).contiguous() for t in (conics, colors, opacities, background))
    tile_offsets, flatten_ids = tile_offsets.long().contiguous(), flatten_ids.long().contiguous()
    radii = radii.to(torch.int32).contiguous()
    if not _native(means2d):
        return reference.rasterize(means2d, radii, conics, colors, opacities, background, tile_offsets,
                                   flatten_ids, width, height, tile)
    return _Rasterize.apply(means2d.contiguous(), radii, conics, colors, opacities, background, tile_offsets,
                            flatten_ids, width, height, tile)


def query(x: Tensor, dirs: Tensor | None, lattice, means: Tensor, whiten: Tensor, peak: Tensor, sh: Tensor,
          degree: int, max_pairs: int = 1 << 21) -> tuple[Tensor, Tensor | None]:
    """sigma [M] at x [M, 3] and, with dirs [M, 3], the density-weighted colour [M, 3] of the Gaussians
    whose box holds each point (see ``splat_reference.query``). The kernel has no backward: when a
    gradient is wanted the twin runs, autograd through it."""
    tensors = (x, means, whiten, peak, sh) + ((dirs,) if dirs is not None else ())
    if not _native(x) or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return reference.query(x, dirs, lattice, means, whiten, peak, sh, degree, max_pairs)
    dtype = x.dtype
    origin, lo, hi, means, whiten, peak, sh = (t.to(dtype).contiguous() for t in (lattice.origin, lattice.lo, lattice.hi,
                                                                                 means, whiten, peak, sh))
    dirs_in = x.new_zeros(0, 3) if dirs is None else dirs.to(dtype).contiguous()  # [0, 3]: density only
    sigma, rgb = native.splat_query(x.contiguous(), dirs_in, origin,
                                    lattice.cell.contiguous(), lattice.dims.contiguous(), lattice.offsets.contiguous(),
                                    lattice.keys.contiguous(), lattice.boxes.contiguous(), lo, hi, means, whiten, peak,
                                    sh, int(degree))
    return sigma, None if dirs is None else rgb
