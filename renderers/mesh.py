"""Surfaces from a density field: density sampled on a dense lattice in bounded-memory slabs, then
marching cubes (scikit-image's Lewiner variant).

The lattice covers the occupied part of the scene (read from the occupancy grid, padded by a cell)
with cubic voxels, and lattice points in empty grid cells are never sent to the field: a 512^3
lattice of a compact object costs a fraction of 512^3 queries. Memory is the float32 lattice
itself (512 MB at 512^3) plus one slab of queries (`chunk` points) at a time.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from skimage import measure
from torch import Tensor

from onefield.errors import UserError

from .occupancy import OccupancyGrid


@dataclass
class DensityVolume:
    values: np.ndarray  # [X, Y, Z] float32 density at the lattice points
    origin: np.ndarray  # [3] world position of lattice point (0, 0, 0)
    spacing: float  # world distance between neighbouring lattice points (cubic voxels)
    queried: int  # lattice points sent to the field (the rest lay in empty grid cells)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)


def opacity_level(step_size: float, alpha: float = 0.5) -> float:
    """The density at which one ray-marching step of `step_size` is `alpha` opaque: where the
    renderer itself sees a surface begin. The default level of `extract_surface`."""
    if not 0.0 < alpha < 1.0 or step_size <= 0:
        raise ValueError(f"need 0 < alpha < 1 and step_size > 0, got {alpha}, {step_size}")
    return -math.log(1.0 - alpha) / step_size


def lattice_for(bounds: Tensor, resolution: int) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    """(origin [3], spacing, points per axis) of a lattice with `resolution` points along the
    longest side of `bounds` [6] and the same spacing on the others."""
    if resolution < 2:
        raise UserError(f"resolution must be >= 2, got {resolution}")
    lo, hi = bounds[:3].double().cpu().numpy(), bounds[3:].double().cpu().numpy()
    spacing = float((hi - lo).max()) / (resolution - 1)
    counts = tuple(int(max(2, math.ceil((h - l) / spacing) + 1)) for l, h in zip(lo, hi))
    return lo.astype(np.float32), spacing, counts


@torch.no_grad()
def sample_density(sigma_fn: Callable[[Tensor], Tensor], bounds: Tensor, resolution: int,
                   grid: OccupancyGrid | None = None, chunk: int = 1 << 18) -> DensityVolume:
    """The density of `sigma_fn` on the lattice over `bounds` [6] (see `lattice_for`), one x-slab at
    a time; points in cells the occupancy grid marks empty get density 0 without a query."""
    origin, spacing, (nx, ny, nz) = lattice_for(bounds, resolution)
    device = bounds.device if grid is None else grid.aabb.device
    values = np.zeros((nx, ny, nz), dtype=np.float32)
    ys = torch.arange(ny, device=device, dtype=torch.float32) * spacing + float(origin[1])
    zs = torch.arange(nz, device=device, dtype=torch.float32) * spacing + float(origin[2])
    plane = torch.stack(torch.meshgrid(ys, zs, indexing="ij"), -1).view(-1, 2)  # [Y Z, 2]
    slabs = max(1, chunk // plane.shape[0])
    occupancy = grid.binary() if grid is not None else None  # unpacked once, read by every slab
    queried = 0
    for x0 in range(0, nx, slabs):
        xs = torch.arange(x0, min(nx, x0 + slabs), device=device, dtype=torch.float32) * spacing + float(origin[0])
        points = torch.cat([xs.repeat_interleave(plane.shape[0])[:, None], plane.repeat(xs.numel(), 1)], -1)
        sigma = torch.zeros(points.shape[0], device=device)
        keep = grid.occupied_at(points, occupancy).nonzero().squeeze(1) if grid is not None else None
        if keep is None:
            sigma = sigma_fn(points).float()
            queried += points.shape[0]
        elif keep.numel():
            sigma[keep] = sigma_fn(points[keep]).float()
            queried += keep.numel()
        values[x0:x0 + xs.numel()] = torch.nan_to_num(sigma, nan=0.0).view(xs.numel(), ny, nz).cpu().numpy()
    return DensityVolume(values, origin, spacing, queried)


def check_level(volume: DensityVolume, level: float) -> None:
    """A surface needs a level strictly inside the sampled density range."""
    lo, hi = float(volume.values.min()), float(volume.values.max())
    if not lo < level < hi:
        raise UserError(f"level {level:g} is outside the sampled density range [{lo:g}, {hi:g}]: no surface "
                         f"crosses it; choose a level inside the range (--level)")


def fill_hidden(volume: DensityVolume, level: float, seen_empty: Callable[[np.ndarray], np.ndarray],
                chunk: int = 1 << 21) -> DensityVolume:
    """The volume with every lattice point at or below `level` that no view sees as empty space
    raised above it. Nothing trains the density behind a surface (no ray gets there), so the inside
    of a fitted object is a sponge of low-density pockets that leak into each other and out through
    pinholes: marching cubes turns them into inner sheets joined to the outer surface (59 % of the
    area of a 2-minute spot mesh lay inside the object). Empty space that a view sees stays empty;
    the rest is solid. `seen_empty(points [K, 3]) -> bool [K]` (see `fusion.FreeSpace`)."""
    check_level(volume, level)  # before filling, which would put any level inside the range
    empty = np.flatnonzero(volume.values.ravel() <= level)
    hidden = [np.empty(0, dtype=np.int64)]
    for start in range(0, empty.size, chunk):
        idx = empty[start:start + chunk]
        ijk = np.stack(np.unravel_index(idx, volume.shape), -1).astype(np.float32)  # [K, 3]
        hidden.append(idx[~seen_empty(volume.origin + ijk * np.float32(volume.spacing))])
    hidden_idx = np.concatenate(hidden)
    if hidden_idx.size == 0:
        return volume
    values = volume.values.copy()
    values.ravel()[hidden_idx] = np.float32(2.0 * level if level > 0 else level + 1.0)
    return DensityVolume(values, volume.origin, volume.spacing, volume.queried)


@dataclass
class Surface:
    vertices: np.ndarray  # [V, 3] float32, world units
    faces: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside (low density)
    normals: np.ndarray  # [V, 3] float32, outward


def marching_cubes(volume: DensityVolume, level: float) -> Surface:
    """The iso-surface density == level of a sampled volume, faces oriented outward."""
    check_level(volume, level)
    verts, faces, normals, _ = measure.marching_cubes(volume.values, level, spacing=(volume.spacing,) * 3,
                                                      gradient_direction="descent", allow_degenerate=False)
    # scikit-image winds the triangles clockwise seen along its (outward) normals: flip them
    return Surface((verts + volume.origin).astype(np.float32), faces[:, ::-1].astype(np.int64),
                   normals.astype(np.float32))
