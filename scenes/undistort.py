"""Images resampled to ideal pinholes, for consumers that model no lens (the splat rasterizer).

The volumetric path never resamples: it bends each ray to where the distorted pixel looked
(`Cameras.rays`). A rasterizer projects with K alone, so its images must be undistorted once on
load, as `colmap image_undistorter` does. Each camera keeps its image size; its new focal lengths
and principal point frame the largest axis-aligned rectangle of the undistorted view that the
captured image covers (colmap's `blank_pixels 0`), so no pixel of the result is invented.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Cameras, distort, undistort
from .dataset import PosedImages

BORDER_SAMPLES = 64  # points per image edge where the undistorted view's outline is measured


def pinhole_intrinsics(cameras: Cameras) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(fx, fy, cx, cy) [N] of pinholes that see only what each distorted camera saw, same image size."""
    n, w, h = len(cameras), cameras.width, cameras.height
    s = torch.linspace(0.0, 1.0, BORDER_SAMPLES, device=cameras.device)
    zero, one = torch.zeros_like(s), torch.ones_like(s)
    # pixel-edge coordinates of the four image edges: left, right, top, bottom  [4, B]
    u = torch.stack([zero, one, s, s]) * w
    v = torch.stack([s, s, zero, one]) * h
    xd = (u[None] - cameras.cx[:, None, None]) / cameras.fx[:, None, None]  # [N, 4, B]
    yd = (v[None] - cameras.cy[:, None, None]) / cameras.fy[:, None, None]
    coeffs = cameras.distortion[:, None, None, :].expand(n, 4, BORDER_SAMPLES, 4)
    x, y = undistort(xd, yd, coeffs)
    left, right = x[:, 0].max(-1).values, x[:, 1].min(-1).values  # [N]
    top, bottom = y[:, 2].max(-1).values, y[:, 3].min(-1).values
    fx, fy = w / (right - left), h / (bottom - top)
    return fx, fy, -left * fx, -top * fy


def undistorted(data: PosedImages) -> PosedImages:
    """`data` with every image resampled (bilinear, premultiplied RGBA) to the pinhole cameras of
    `pinhole_intrinsics`; poses, box and sparse points unchanged. Pinhole data is returned as is."""
    cams = data.cameras
    if not cams.distorted:
        return data
    fx, fy, cx, cy = pinhole_intrinsics(cams)
    v, u = torch.meshgrid(torch.arange(cams.height, device=cams.device, dtype=torch.float32) + 0.5,
                          torch.arange(cams.width, device=cams.device, dtype=torch.float32) + 0.5, indexing="ij")
    images = torch.empty_like(data.images)
    for i in range(len(cams)):  # one image at a time: full-resolution photos would not fit as floats at once
        x, y = distort((u - cx[i]) / fx[i], (v - cy[i]) / fy[i], cams.distortion[i].expand(*u.shape, 4))
        grid = torch.stack([(x * cams.fx[i] + cams.cx[i]) / cams.width, (y * cams.fy[i] + cams.cy[i]) / cams.height], -1)
        source = data.images[i].permute(2, 0, 1)[None].float()  # [1, 4, H, W]
        sampled = F.grid_sample(source, grid[None] * 2 - 1, mode="bilinear", padding_mode="border", align_corners=False)
        images[i] = sampled[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
    pinholes = dataclasses.replace(cams, fx=fx, fy=fy, cx=cx, cy=cy, distortion=None)
    return dataclasses.replace(data, cameras=pinholes, images=images)
