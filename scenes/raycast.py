"""Ray-cast RGBA images of triangle meshes (open3d's RaycastingScene, on the CPU): the renderer
behind the built-in demo scene and the known-geometry scenes made from any mesh.

Shading is Lambertian under one fixed light plus ambient, so a radiance field can reproduce it
exactly (view-independent), and pixels are box-filtered from `supersample`^2 rays.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cameras import Cameras

LIGHT = np.array([0.4, -0.5, 0.75]) / np.linalg.norm([0.4, -0.5, 0.75])

# (hits of the rays that hit: open3d's cast_rays answer as numpy arrays, masked; world points [K, 3]) -> albedo [K, 3]
AlbedoFn = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def raycast_rgba(cameras: Cameras, scene: Any, albedo: AlbedoFn, supersample: int = 3) -> Tensor:
    """uint8 straight-alpha RGBA [N, H, W, 4] of `scene` (an open3d RaycastingScene) seen by `cameras`."""
    import open3d as o3d  # imported on use: `import onefield.scenes` stays light

    s = supersample
    out = []
    for i in range(len(cameras)):
        # sub-pixel centres (a + 0.5) / s, shifted by -0.5 because Cameras.rays aims at pixel centres
        v, u = torch.meshgrid((torch.arange(cameras.height * s) + 0.5) / s - 0.5,
                              (torch.arange(cameras.width * s) + 0.5) / s - 0.5, indexing="ij")
        rays = cameras.rays(torch.full((u.numel(),), i), u.flatten(), v.flatten())
        origins, directions = rays.origins.numpy(), rays.directions.numpy()
        hits = {k: v.numpy() for k, v in scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, directions], -1))).items()}
        t = hits["t_hit"]
        hit = np.isfinite(t)
        rgb = np.zeros((t.shape[0], 3))
        if hit.any():
            shown = {k: v[hit] for k, v in hits.items()}
            points = origins[hit] + directions[hit] * t[hit][:, None]
            n = shown["primitive_normals"]
            n = np.where((n * directions[hit]).sum(-1, keepdims=True) > 0, -n, n)  # face the camera
            shade = 0.35 + 0.65 * np.clip(n @ LIGHT, 0.0, 1.0)[:, None]
            rgb[hit] = albedo(shown, points) * shade
        rgba = np.concatenate([rgb * hit[:, None], hit[:, None].astype(np.float64)], -1)
        rgba = rgba.reshape(cameras.height, s, cameras.width, s, 4).mean((1, 3))  # premultiplied box filter
        color = np.where(rgba[..., 3:] > 0, rgba[..., :3] / np.maximum(rgba[..., 3:], 1e-8), 0.0)
        out.append(np.concatenate([color, rgba[..., 3:]], -1))
    return torch.from_numpy(np.round(np.clip(np.stack(out), 0, 1) * 255).astype(np.uint8))
