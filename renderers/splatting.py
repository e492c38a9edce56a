"""Gaussian splats to pixels: view-dependent colour from spherical harmonics, EWA projection, tile
binning and front-to-back compositing (the kernels in ``onefield.cuda_ext.splat``).

Like the marcher, this takes tensors, never a field class. The colour of a Gaussian seen from a camera
is the 3DGS convention: SH of degree <= 3 in the direction from the camera centre to the mean, plus
0.5, clamped at 0. Depth is composited as a fourth channel (the z of each Gaussian's mean), so a
render gives the same `depth` (sum of weight * z) and `opacity` as a volume render.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from onefield.cuda_ext import splat
from onefield.cuda_ext.splat_reference import SplatCamera

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def sh_coefficients(degree: int) -> int:
    return (degree + 1) ** 2


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


def sh_colors(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """sh [N, K, 3] (K >= (degree + 1)^2; the higher bands unused) seen along unit dirs [N, 3] ->
    rgb [N, 3] >= 0."""
    k = sh_coefficients(degree)
    basis = sh_basis(dirs, degree)  # [N, k]
    return ((basis[:, :, None] * sh[:, :k]).sum(1) + 0.5).clamp(min=0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """The degree-0 coefficient that shows `rgb` from every direction."""
    return (rgb - 0.5) / SH_C0


def camera_for(c2w: Tensor, fx: float, fy: float, cx: float, cy: float, width: int, height: int, *,
               near: float = 0.01, far: float = 1e10, antialiased: bool = False) -> SplatCamera:
    """The rasterizer's camera for a camera-to-world pose [3, 4] (OpenCV axes)."""
    rot = c2w[:, :3].detach().double().cpu()
    w2c = torch.cat([rot.T, -rot.T @ c2w[:, 3:].detach().double().cpu()], 1)  # [3, 4]
    return SplatCamera(tuple(w2c.flatten().tolist()), float(fx), float(fy), float(cx), float(cy), int(width),
                       int(height), near=max(float(near), 0.01), far=float(far), antialiased=antialiased)


@dataclass
class SplatRender:
    rgb: Tensor  # [H, W, 3], composited on the background
    depth: Tensor  # [H, W]: sum of weight * camera z (divide by opacity for the expected depth)
    opacity: Tensor  # [H, W]
    radii: Tensor  # [N, 2] int32: 0 where a Gaussian was culled
    means2d: Tensor  # [N, 2]: the projected means (their gradient drives densification)


def rasterize_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, sh: Tensor,
                        cam: SplatCamera, background: Tensor, sh_degree: int) -> SplatRender:
    """means [N, 3], quats [N, 4], scales [N, 3] (> 0), opacities [N] in (0, 1), sh [N, K, 3] ->
    the view. Everything is differentiable except the binning (which Gaussians touch which tile)."""
    radii, means2d, depths, conics, opac = splat.project(means, quats, scales, opacities, cam)
    w2c = torch.tensor(cam.w2c, dtype=means.dtype, device=means.device).view(3, 4)
    centre = -w2c[:, :3].T @ w2c[:, 3]
    dirs = torch.nn.functional.normalize(means - centre, dim=-1)
    rgb = sh_colors(sh, dirs, sh_degree)
    offsets, ids = splat.bin_tiles(means2d, radii, depths, cam.width, cam.height)
    channels = torch.cat([rgb, depths[:, None]], 1)  # [N, 4]
    bg = torch.cat([background.to(means.dtype), background.new_zeros(1).to(means.dtype)])
    image, alpha = splat.rasterize(means2d, radii, conics, channels, opac, bg, offsets, ids, cam.width, cam.height)
    return SplatRender(image[..., :3], image[..., 3], alpha, radii, means2d)
