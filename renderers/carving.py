"""Space carving: the visual hull of the training masks as the occupancy grid's first guess.

Images with alpha say where the object is not: a cell that some view sees entirely against the
background is empty. Starting the grid from the visual hull (the cells no view carves) instead of
the whole box does two things for the fit. The marcher skips the empty box from the first step,
so the dynamic batch holds many more rays (~10x on NeRF-Synthetic's mic) while the field is
young; and cells a view shows opaque are never carved, so a thin part (mic's cable) is sampled
until the field has learned it instead of being pruned from a density that has not got there yet.
Carving is conservative: a view carves a cell only when the cell's whole footprint in that image
is background, it lies in front of the camera, the footprint is at most max(RADII) pixels, and the
footprint lies entirely inside the image (what a view does not see, it cannot call empty).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from onefield.cuda_ext.geometry import box_center_half

from .occupancy import OccupancyGrid

RADII = (1, 2, 4, 8, 16, 32)  # pixels: the max-pooled alpha is kept at these footprint radii


def _dilations(alpha: Tensor, radii: Sequence[int]) -> Tensor:
    """[L, H, W]: `alpha` [H, W] max-pooled over (2r+1)^2 windows, separably (rows, then columns)."""
    a = alpha[None, None]
    out = []
    for r in radii:
        rows = F.max_pool2d(a, (1, 2 * r + 1), stride=1, padding=(0, r))
        out.append(F.max_pool2d(rows, (2 * r + 1, 1), stride=1, padding=(r, 0))[0, 0])
    return torch.stack(out)


@torch.no_grad()
def visual_hull(grid: OccupancyGrid, cameras, alpha: Tensor, *, empty_alpha: float = 0.02,
                near: float = 0.0) -> Tensor:
    """bool [n_cells]: the cells of `grid` that no view carves. `cameras`: `scenes.Cameras` (N
    views); `alpha` [N, H, W] in [0, 1] (uint8 is read as /255). A view carves a cell when the cell's
    footprint (its half-diagonal projected at its depth, about its centre) lies inside the image and
    the alpha max-pooled over it is below `empty_alpha`."""
    device = grid.occs.device
    if alpha.dtype == torch.uint8:
        alpha = alpha.float() / 255.0
    n, h, w = alpha.shape
    if n != len(cameras) or (h, w) != (cameras.height, cameras.width):
        raise ValueError(f"alpha must be [N, H, W] = [{len(cameras)}, {cameras.height}, {cameras.width}], "
                         f"got {tuple(alpha.shape)}")
    cameras = cameras.to(device)
    r = grid.resolution
    cells = torch.arange(grid.n_cells, device=device)
    centres = grid.cell_points(cells, torch.full((grid.n_cells, 3), 0.5, device=device))  # [M, 3]
    # half-diagonal of a cell in each cascade: the base cell's (|half size| / R), doubled per cascade
    base = float(box_center_half(grid.aabb)[1].norm()) / r
    half_diag = base * (torch.ones_like(cells) << (cells // r**3)).float()  # [M]
    radii = torch.tensor(RADII, dtype=torch.float32, device=device)
    alive = torch.ones(grid.n_cells, dtype=torch.bool, device=device)
    for i in range(n):
        idx = torch.nonzero(alive).flatten()
        if idx.numel() == 0:
            break
        uv, z = cameras.project(centres[idx], i)
        focal = float(torch.maximum(cameras.fx[i], cameras.fy[i]))
        footprint = focal * half_diag[idx] / z.clamp(min=1e-9)  # [K] pixels
        level = torch.searchsorted(radii, footprint)  # the smallest pooled radius covering it
        px = uv.floor().long()
        seen = (z > max(near, 1e-6)) & (level < len(RADII)) & _inside_image(uv, footprint, w, h)
        if not seen.any():
            continue
        pooled = _dilations(alpha[i].to(device), RADII)  # [L, H, W]
        s = torch.nonzero(seen).flatten()
        background = pooled[level[s], px[s, 1], px[s, 0]] < empty_alpha
        alive[idx[s[background]]] = False
    return alive


def _inside_image(uv: Tensor, radius: Tensor, w: int, h: int) -> Tensor:
    """bool [K]: the squares uv [K, 2] +- radius [K] (pixels) lie inside the w x h image [0, w] x [0, h]."""
    lo, hi = uv - radius[:, None], uv + radius[:, None]
    return (lo >= 0).all(-1) & (hi[:, 0] <= w) & (hi[:, 1] <= h)


def carve(grid: OccupancyGrid, cameras, alpha: Tensor, **kwargs) -> float:
    """Exclude every cell outside the visual hull from `grid`; returns the fraction kept. An empty
    hull means the masks and poses disagree (no point is inside every silhouette): the grid is left
    whole and the caller should say so."""
    alive = visual_hull(grid, cameras, alpha, **kwargs)
    kept = float(alive.float().mean())
    if kept > 0.0:
        grid.exclude_(~alive)
    return kept
