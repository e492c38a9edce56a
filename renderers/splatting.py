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
from onefield.cuda_ext.splat_reference import SH_C0, SplatCamera
from onefield.scenes import Cameras

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


def splat_camera(cameras: Cameras, index: int, antialiased: bool = False) -> SplatCamera:
    """Camera `index` of `cameras` for the rasterizer (a pinhole: lens distortion is not modelled)."""
    i = int(index)
    return camera_for(cameras.c2w[i], float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]),
                      float(cameras.cy[i]), cameras.width, cameras.height, near=cameras.near, far=cameras.far,
                      antialiased=antialiased)


def ray_lengths(cam: SplatCamera, device: torch.device | str = "cpu") -> Tensor:
    """[H, W] length of each pixel's ray direction at camera depth 1: distance along the unit ray =
    z x this (pixel centres at +0.5, as `Cameras.rays`)."""
    u = (torch.arange(cam.width, device=device, dtype=torch.float32) + 0.5 - cam.cx) / cam.fx
    v = (torch.arange(cam.height, device=device, dtype=torch.float32) + 0.5 - cam.cy) / cam.fy
    return (1.0 + v[:, None] ** 2 + u[None, :] ** 2).sqrt()


@dataclass
class SplatRender:
    rgb: Tensor  # [H, W, 3], composited on the background
    depth: Tensor  # [H, W]: sum of weight * camera z, or distance along the ray (`ray_depth`)
    opacity: Tensor  # [H, W]
    radii: Tensor  # [N, 2] int32: 0 where a Gaussian was culled
    means2d: Tensor  # [N, 2]: the projected means (their gradient drives densification)


def rasterize_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, sh: Tensor,
                        cam: SplatCamera, background: Tensor, sh_degree: int, ray_depth: bool = False) -> SplatRender:
    """means [N, 3], quats [N, 4], scales [N, 3] (> 0), opacities [N] in (0, 1), sh [N, K, 3] ->
    the view. Everything is differentiable except the binning (which Gaussians touch which tile).
    `ray_depth`: depth as distance along each pixel's unit ray (a volume render's `depth`), not z."""
    radii, means2d, depths, conics, opac = splat.project(means, quats, scales, opacities, cam)
    rgb = splat.sh_colors(means, sh, cam.centre(means), sh_degree)
    offsets, ids = splat.bin_tiles(means2d, radii, depths, cam.width, cam.height)
    channels = torch.cat([rgb, depths[:, None]], 1)  # [N, 4]
    bg = torch.cat([background.to(means.dtype), background.new_zeros(1).to(means.dtype)])
    image, alpha = splat.rasterize(means2d, radii, conics, channels, opac, bg, offsets, ids, cam.width, cam.height)
    depth = image[..., 3] * ray_lengths(cam, means.device).to(image) if ray_depth else image[..., 3]
    return SplatRender(image[..., :3], depth, alpha, radii, means2d)
