"""A known-geometry scene from any triangle mesh: the mesh, normalised into the box [-1, 1]^3, is
ray-cast from views on a sphere into a Blender dataset, with the normalised mesh written beside
the images as the ground truth for `onefield eval-mesh`.

Colour, in order of preference: a UV texture (given, or the one the OBJ's material names), the
mesh's vertex colours, a checker over the UVs, or a checker over space; shaded by the same fixed
light as the demo scene. (The `spot.png` beside `spot.obj` in the shared data is a preview render,
not spot's texture: spot gets the UV checker.)
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from onefield.errors import UserError

from .blender import write_blender
from .raycast import raycast_rgba
from .shapes import check_views, orbit_cameras, sphere_views

MESH_AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
GT_MESH = "mesh.ply"
UP_AXES = ("x", "y", "z")
CHECKS = 8  # squares per unit of UV (or of the box, for meshes without UVs) of the fallback checker
CHECK_COLORS = (np.array([0.95, 0.6, 0.15]), np.array([0.2, 0.35, 0.8]))


@dataclass(frozen=True)
class MeshScene:
    root: Path
    mesh_path: Path  # the ground truth in the scene's coordinates
    n_train: int
    n_test: int
    size: int


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """A triangle mesh with its texture or colours, as stored (no vertex merging, so UVs survive)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such mesh file")
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as error:  # trimesh raises many types for unreadable files
        raise UserError(f"{path}: not a readable mesh ({error}); use an OBJ, PLY, STL, GLB or OFF file") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise UserError(f"{path}: the file holds no triangles")
    return mesh


def normalise(mesh: trimesh.Trimesh, up: str = "y", extent: float = 0.9) -> trimesh.Trimesh:
    """The mesh rotated so that its `up` axis becomes +z (the cameras orbit about z), centred and
    scaled so its bounding box fits in [-extent, extent]^3."""
    if up not in UP_AXES:
        raise UserError(f"up must be one of {UP_AXES}, got {up!r}")
    mesh = mesh.copy()
    if up != "z":
        rotation = {"y": trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]),
                    "x": trimesh.transformations.rotation_matrix(-math.pi / 2, [0, 1, 0])}[up]
        mesh.apply_transform(rotation)
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(2 * extent / float((hi - lo).max()))
    return mesh


def _texture(mesh: trimesh.Trimesh, texture: str | Path | None) -> np.ndarray | None:
    """The texture image [H, W, 3] in [0, 1], if the mesh has UVs and a texture is given or named."""
    uv = getattr(mesh.visual, "uv", None)
    if uv is None:
        if texture is not None:
            raise UserError("a texture was given but the mesh has no UV coordinates")
        return None
    if texture is not None:
        if not Path(texture).is_file():
            raise UserError(f"{texture}: no such texture image")
        image = Image.open(texture)
    else:
        image = getattr(getattr(mesh.visual, "material", None), "image", None)
        if image is None:
            return None
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    # trimesh stands in a flat 2x2 image for a texture the material does not name: no texture
    return pixels if len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1 else None


def _at_hits(values: np.ndarray, faces: np.ndarray, hits: dict[str, np.ndarray]) -> np.ndarray:
    """Per-vertex `values` [V, C] interpolated at the ray hits (open3d's triangle ids and barycentric
    (u, v) of the triangle's vertices 1 and 2) -> [K, C]."""
    f = faces[hits["primitive_ids"].astype(np.int64)]  # [K, 3]
    b = hits["primitive_uvs"].astype(np.float64)  # [K, 2]
    return (1 - b[:, :1] - b[:, 1:]) * values[f[:, 0]] + b[:, :1] * values[f[:, 1]] + b[:, 1:] * values[f[:, 2]]


def _bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """texture [H, W, 3] at UV coordinates [K, 2] (wrapped; OBJ's v runs up the image) -> [K, 3]."""
    h, w = texture.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def pixel(xi: np.ndarray, yi: np.ndarray) -> np.ndarray:
        return texture[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]

    return ((1 - fx) * (1 - fy) * pixel(x0, y0) + fx * (1 - fy) * pixel(x0 + 1, y0)
            + (1 - fx) * fy * pixel(x0, y0 + 1) + fx * fy * pixel(x0 + 1, y0 + 1))


def _checker(coords: np.ndarray) -> np.ndarray:
    """Two-colour checker [K, 3] over coordinates [K, D] (CHECKS squares per unit)."""
    return np.where((np.floor(coords * CHECKS).sum(-1) % 2)[:, None] > 0, CHECK_COLORS[0], CHECK_COLORS[1])


def _albedo_fn(mesh: trimesh.Trimesh, texture: np.ndarray | None):
    faces = np.asarray(mesh.faces)
    uv = getattr(mesh.visual, "uv", None)
    if texture is not None:
        uv = np.asarray(uv, dtype=np.float64)
        return lambda hits, points: _bilinear(texture, _at_hits(uv, faces, hits))
    if mesh.visual.kind == "vertex":
        colors = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        return lambda hits, points: _at_hits(colors, faces, hits)
    if uv is not None:  # a UV checker: texture detail that multi-view fitting can lock onto
        uv = np.asarray(uv, dtype=np.float64)
        return lambda hits, points: _checker(_at_hits(uv, faces, hits))
    return lambda hits, points: _checker(points)


def make_mesh_scene(mesh_path: str | Path, root: str | Path, texture: str | Path | None = None, up: str = "y",
                    n_train: int = 100, n_test: int = 20, size: int = 200, supersample: int = 3) -> MeshScene:
    """Render `mesh_path` into a Blender dataset under `root` (train and test splits on a sphere of
    views, RGBA on a transparent background) and write the normalised mesh to root/mesh.ply."""
    import open3d as o3d

    check_views(n_train, n_test, size)
    mesh = normalise(load_mesh(mesh_path), up)
    image = _texture(mesh, texture)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    albedo = _albedo_fn(mesh, image)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    radius = 3.6
    for split, count, offset in (("train", n_train, 0.0), ("test", n_test, 0.37)):
        cameras = orbit_cameras(sphere_views(count, radius, seed_offset=offset, min_elevation=-0.9), size)
        write_blender(root, split, cameras, raycast_rgba(cameras, scene, albedo, supersample), MESH_AABB)
    gt = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)  # seams merged: a closed surface stays closed
    gt.export(root / GT_MESH)
    return MeshScene(root, root / GT_MESH, n_train, n_test, size)
