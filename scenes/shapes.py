"""The built-in demo scene: colourful textured shapes made in code and ray-cast (open3d's
RaycastingScene) from views on a sphere into RGBA images, written in the Blender format with the
ground-truth mesh beside it. It goes through the same reader as real data and can score mesh
extraction, and needs no data files.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from onefield.errors import UserError

from .blender import write_blender
from .cameras import Cameras
from .rays import look_at
from .raycast import raycast_rgba

SHAPES_AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ShapesScene:
    root: Path
    mesh_path: Path
    n_train: int
    n_test: int
    size: int


def _meshes():
    """(name, open3d legacy TriangleMesh) of the shapes, all inside SHAPES_AABB."""
    import open3d as o3d

    g = o3d.geometry.TriangleMesh
    torus = g.create_torus(torus_radius=0.42, tube_radius=0.16, radial_resolution=64, tubular_resolution=32)
    torus.rotate(torus.get_rotation_matrix_from_xyz((math.radians(70), 0.0, math.radians(20))), center=(0, 0, 0))
    torus.translate((-0.35, 0.3, 0.1))
    box = g.create_box(0.55, 0.55, 0.55)
    box.translate((-0.275, -0.275, -0.275))
    box.rotate(box.get_rotation_matrix_from_xyz((0.3, 0.5, 0.7)), center=(0, 0, 0))
    box.translate((0.4, -0.35, -0.3))
    sphere = g.create_sphere(radius=0.32, resolution=48)
    sphere.translate((0.35, 0.45, 0.25))
    cone = g.create_cone(radius=0.25, height=0.6, resolution=48)
    cone.translate((-0.3, -0.45, -0.55))
    return [("torus", torus), ("box", box), ("sphere", sphere), ("cone", cone)]


def _albedo(shape: str, p: np.ndarray) -> np.ndarray:
    """Procedural textures [K, 3] at surface points p [K, 3]: stripes, checks, bands, a gradient."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    if shape == "torus":
        stripe = (np.floor(np.arctan2(y - 0.3, x + 0.35) / (2 * np.pi) * 12) % 2)[:, None]
        return np.where(stripe > 0, [0.95, 0.35, 0.1], [0.95, 0.85, 0.2])
    if shape == "box":
        check = ((np.floor(x * 6) + np.floor(y * 6) + np.floor(z * 6)) % 2)[:, None]
        return np.where(check > 0, [0.15, 0.35, 0.9], [0.9, 0.9, 0.95])
    if shape == "sphere":
        band = (np.floor((z - 0.25) * 9) % 2)[:, None]
        return np.where(band > 0, [0.2, 0.75, 0.3], [0.1, 0.45, 0.5])
    t = np.clip((z + 0.55) / 0.6, 0, 1)[:, None]
    return (1 - t) * np.array([0.55, 0.2, 0.7]) + t * np.array([0.95, 0.5, 0.75])


def sphere_views(n: int, radius: float, seed_offset: float = 0.0, min_elevation: float = -0.35) -> Tensor:
    """Camera centres [n, 3] spread over a sphere (Fibonacci spiral), above `min_elevation` (sin)."""
    i = np.arange(n) + 0.5 + seed_offset
    z = 1.0 - (1.0 - min_elevation) * i / (n + seed_offset)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    return torch.tensor(np.stack([r * np.cos(phi), r * np.sin(phi), z], -1) * radius, dtype=torch.float32)


def orbit_cameras(eyes: Tensor, size: int, fov_deg: float = 40.0, near: float = 2.0, far: float = 6.0) -> Cameras:
    c2w = torch.stack([look_at(e.tolist(), (0.0, 0.0, 0.0)) for e in eyes])
    focal = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    return Cameras(c2w, torch.tensor(focal), torch.tensor(focal), torch.tensor(size / 2), torch.tensor(size / 2),
                   size, size, near, far)


def _backdrop_albedo(p: np.ndarray) -> np.ndarray:
    """A checkerboard in longitude and latitude [K, 3], with a colour ramp so no two views look alike."""
    lon = np.arctan2(p[:, 1], p[:, 0])
    lat = np.arcsin(np.clip(p[:, 2] / np.linalg.norm(p, axis=-1), -1.0, 1.0))
    check = ((np.floor(lon / np.pi * 8) + np.floor(lat / np.pi * 8)) % 2)[:, None]
    ramp = ((lon / np.pi + 1.0) * 0.5)[:, None]
    return np.where(check > 0, 0.25 + 0.5 * ramp * np.array([1.0, 0.6, 0.2]), [0.85, 0.85, 0.8])


def render_shapes(cameras: Cameras, supersample: int = 3, backdrop: float | None = None) -> Tensor:
    """uint8 straight-alpha RGBA [N, H, W, 4] of the shapes, `supersample`^2 rays per pixel; with
    `backdrop`, inside a textured sphere of that radius (every pixel opaque: an unbounded scene)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    names = []
    meshes = _meshes()
    if backdrop is not None:
        meshes.append(("backdrop", o3d.geometry.TriangleMesh.create_sphere(radius=backdrop, resolution=64)))
    for name, mesh in meshes:
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
        names.append(name)

    def albedo(hits: dict[str, np.ndarray], points: np.ndarray) -> np.ndarray:
        rgb = np.zeros((points.shape[0], 3))
        for g, name in enumerate(names):
            m = hits["geometry_ids"] == g
            if m.any():
                rgb[m] = _backdrop_albedo(points[m]) if name == "backdrop" else _albedo(name, points[m])
        return rgb

    return raycast_rgba(cameras, scene, albedo, supersample)


def ground_truth_mesh(path: Path) -> Path:
    import open3d as o3d

    combined = o3d.geometry.TriangleMesh()
    for _, mesh in _meshes():
        combined += mesh
    if not o3d.io.write_triangle_mesh(str(path), combined):
        raise OSError(f"could not write the ground-truth mesh to {path}")
    return path


def check_views(n_train: int, n_test: int, size: int) -> None:
    """A rendered dataset needs views of both splits and images of at least 8 pixels a side."""
    if n_train < 1 or n_test < 1:
        raise UserError(f"the scene needs at least one training and one held-out view, got views {n_train} and "
                        f"{n_test} (--views)")
    if size < 8:
        raise UserError(f"image size must be at least 8 pixels, got {size} (--size)")


def make_shapes_scene(root: str | Path, n_train: int = 64, n_test: int = 16, size: int = 100) -> ShapesScene:
    """Write the demo scene under `root` (Blender layout: train and test splits, mesh.ply)."""
    check_views(n_train, n_test, size)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    radius = 3.6
    train = orbit_cameras(sphere_views(n_train, radius), size)
    test = orbit_cameras(sphere_views(n_test, radius, seed_offset=0.37), size)
    write_blender(root, "train", train, render_shapes(train), SHAPES_AABB)
    write_blender(root, "test", test, render_shapes(test), SHAPES_AABB)
    mesh = ground_truth_mesh(root / "mesh.ply")
    return ShapesScene(root, mesh, n_train, n_test, size)


BACKDROP_RADIUS = 3.2  # inside the reach of 3 cascades around SHAPES_AABB (4 box half-sizes)


def make_unbounded_scene(root: str | Path, n_train: int = 48, n_test: int = 8, size: int = 64) -> Path:
    """The shapes inside a textured backdrop sphere, seen from inside it (Blender layout with 3
    cascades, every pixel opaque): a real capture's situation, where every ray ends on something
    and much of it lies far outside the object's box. Returns `root`."""
    check_views(n_train, n_test, size)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    radius = 2.4
    for split, n, offset in (("train", n_train, 0.0), ("test", n_test, 0.37)):
        cams = orbit_cameras(sphere_views(n, radius, seed_offset=offset), size, fov_deg=60.0, near=0.05,
                             far=2 * BACKDROP_RADIUS + radius)
        write_blender(root, split, cams, render_shapes(cams, backdrop=BACKDROP_RADIUS), SHAPES_AABB, aabb_scale=4)
    return root
