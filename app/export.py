"""`onefield export mesh|pointcloud RUN`: surfaces and point clouds out of any trained field.

Mesh: extract (`mc` on the density, or `tsdf` / `poisson` from rendered depth) -> clean up
(floaters, smoothing, decimation) -> colour the vertices from the field -> optionally bake a UV
texture atlas -> write PLY, OBJ (+MTL and texture) or GLB, with a JSON report beside it.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
import trimesh
from PIL import Image

from onefield.errors import UserError
from onefield.renderers import render_image
from onefield.renderers.fusion import DepthView, FreeSpace, point_cloud, poisson_surface, tsdf_fusion
from onefield.renderers.image import expected_depth
from onefield.renderers.mesh import fill_hidden, marching_cubes, opacity_level, sample_density
from onefield.scenes import Cameras
from onefield.scenes.rays import look_at
from onefield.scenes.shapes import sphere_views

from .evaluate import run_renderer
from .mesh_cleanup import CleanupReport, clean_mesh
from .mesh_config import MeshExportConfig
from .trainer import Trainer

@dataclass
class MeshExport:
    path: Path
    faces: int
    vertices: int
    stages: list[tuple[str, int]]
    seconds: dict[str, float]
    level: float | None


SURFACE_QUANTILE = 0.1  # see surface_level
FREE_SPACE_VIEWS = 32  # training views rendered to find the space mc keeps empty (spot: F@1% 0.970; all 100: 0.964, 2.5x slower)


# ---- views with depth ---------------------------------------------------------------------------
def _cameras(trainer: Trainer, which: str, n_views: int) -> Cameras:
    train = trainer.refined(trainer.train_data.cameras).to("cpu")
    if which == "train":
        return train
    box = trainer.grid.aabb.cpu()
    centre = (box[:3] + box[3:]) / 2
    radius = float((train.c2w[:, :, 3] - centre).norm(dim=-1).median())
    eyes = sphere_views(n_views, radius, min_elevation=-1.0) + centre
    c2w = torch.stack([look_at(e.tolist(), centre.tolist()) for e in eyes])
    return Cameras(c2w, train.fx[0], train.fy[0], train.cx[0], train.cy[0], train.width, train.height,
                   train.near, train.far)


def depth_views(trainer: Trainer, cameras: Cameras, min_opacity: float) -> list[DepthView]:
    """Each camera's rendered colour and depth, through its own lens (TSDF fusion wants
    `cameras.pinhole()`)."""
    views = []
    for i in range(len(cameras)):
        out = trainer.render_view(cameras, i, background=torch.zeros(3))
        opacity = out["opacity"]
        rgb = (out["rgb"] / opacity.clamp(min=1e-6)[..., None]).clamp(0, 1)  # un-composite black
        views.append(DepthView.from_render(cameras.subset([i]), rgb, out["depth"], opacity, min_opacity))
    return views


# ---- colours ------------------------------------------------------------------------------------
@torch.no_grad()
def colors_along_normals(trainer: Trainer, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[V, 3] colours of the field seen along each normal: a short ray from just outside each point
    towards it, volume-rendered and divided by its opacity; the colour network at the point where
    the ray sees (nearly) nothing."""
    device = trainer.device
    p = torch.as_tensor(points, dtype=torch.float32, device=device)
    n = torch.nn.functional.normalize(torch.as_tensor(normals, dtype=torch.float32, device=device), dim=-1)
    reach = 4.0 * trainer.step_size
    # short rays through the grid at a quarter step whatever the run's sampler: the grid is kept
    # refreshed under proposal sampling too, and 48 proposal samples over 2 * reach would be wasted
    out = render_image(p + n * reach, -n, trainer.grid, trainer.shade, step_size=trainer.step_size / 4,
                       near=0.0, far=2.0 * reach, chunk=1 << 16)
    opacity = out["opacity"][:, None]
    rgb = out["rgb"] / opacity.clamp(min=1e-6)
    faint = opacity.squeeze(1) < 1e-2
    if faint.any():
        rgb[faint] = trainer.model.color_at(p[faint], -n[faint])
    if trainer.colors is not None:  # the mean colour map, as renders of novel views have it
        rgb = trainer.colors(rgb, torch.ones_like(opacity.squeeze(1)), None)
    return rgb.clamp(0, 1).cpu().numpy()


@torch.no_grad()
def colors_from_photos(trainer: Trainer, points: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """[V, 3] mean colour of each point over the training photos that see it (its depth agrees with
    the rendered depth of that view to within 1% + 2 marching steps); `fallback` where none does."""
    data = trainer.train_data
    cams = trainer.refined(data.cameras).to("cpu")
    total, count = np.zeros_like(points, dtype=np.float64), np.zeros(len(points))
    world = torch.as_tensor(points, dtype=torch.float32)
    for i in range(len(cams)):
        uv, z = (t.numpy() for t in cams.project(world, i))
        u, v = uv[:, 0], uv[:, 1]
        inside = (z > 0) & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
        if not inside.any():
            continue
        out = trainer.render_view(cams, i, background=torch.zeros(3))
        opacity = out["opacity"].cpu().numpy()
        ray_depth = expected_depth(out["depth"], out["opacity"]).cpu().numpy()
        ui, vi = u[inside].astype(np.int64), v[inside].astype(np.int64)
        distance = np.linalg.norm(points[inside] - cams.c2w[i, :, 3].numpy(), axis=1)
        seen = (opacity[vi, ui] > 0.5) & (np.abs(ray_depth[vi, ui] - distance) < 0.01 * distance + 2 * trainer.step_size)
        idx = np.nonzero(inside)[0][seen]
        rgba = data.images[i, vi[seen], ui[seen]].numpy().astype(np.float64) / 255.0  # premultiplied
        alpha = np.maximum(rgba[:, 3:], 1e-6)
        total[idx] += rgba[:, :3] / alpha
        count[idx] += 1
    colors = fallback.astype(np.float64).copy()
    seen = count > 0
    colors[seen] = total[seen] / count[seen, None]
    return colors.clip(0, 1)


# ---- texture atlas ------------------------------------------------------------------------------
def bake_texture(trainer: Trainer, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
                 size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Image.Image]:
    """UV-unwrap the mesh (xatlas) and bake the field's colour into a size x size atlas.

    Texel centres are located on the atlas by casting rays onto the flat UV mesh (open3d), which
    gives each texel its triangle and barycentric coordinates, hence a surface point and normal
    to colour along. Returns (vertices [V', 3], faces [F, 3], uv [V', 2], image); xatlas splits
    vertices along seams, hence V'."""
    import xatlas

    vmap, atlas_faces, uv = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    flat = np.concatenate([uv, np.zeros((len(uv), 1))], 1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(atlas_faces.astype(np.uint32)))
    j, i = np.mgrid[0:size, 0:size]
    centres = np.stack([(i + 0.5) / size, (j + 0.5) / size], -1).reshape(-1, 2)  # (u, v) of each texel
    rays = np.concatenate([centres, np.ones((len(centres), 1)), np.tile([0, 0, -1], (len(centres), 1))], 1)
    hits = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    hit = np.isfinite(hits["t_hit"].numpy())
    tri = atlas_faces[hits["primitive_ids"].numpy()[hit].astype(np.int64)]  # [K, 3] atlas vertex ids
    b = hits["primitive_uvs"].numpy()[hit].astype(np.float64)
    w = np.concatenate([1 - b.sum(1, keepdims=True), b], 1)[:, :, None]  # [K, 3, 1] barycentric weights
    points = (w * vertices[vmap][tri]).sum(1)
    texel_normals = (w * normals[vmap][tri]).sum(1)
    texels = np.zeros((size * size, 3))
    texels[hit] = colors_along_normals(trainer, points, texel_normals)
    texels = _pad_islands(texels.reshape(size, size, 3), hit.reshape(size, size))
    image = Image.fromarray((texels[::-1] * 255 + 0.5).astype(np.uint8))  # row 0 is v = 1 (OBJ's v runs up)
    return vertices[vmap], atlas_faces.astype(np.int64), uv, image


def _pad_islands(texels: np.ndarray, filled: np.ndarray, passes: int = 8) -> np.ndarray:
    """Grow the charts' colours into the empty texels around them, so that filtering at chart
    borders does not blend in black."""
    texels, filled = texels.copy(), filled.copy()
    for _ in range(passes):
        total, count = np.zeros_like(texels), np.zeros(filled.shape)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            total += np.roll(texels * filled[..., None], (dy, dx), (0, 1))
            count += np.roll(filled, (dy, dx), (0, 1))
        grow = ~filled & (count > 0)
        texels[grow] = total[grow] / count[grow, None]
        filled |= grow
    return texels


@torch.no_grad()
def surface_level(trainer: Trainer, n_rays: int = 8192, seed: int = 0) -> float:
    """The density where the renderer sees the surface begin: the lower decile of the density at the
    expected depth of opaque training rays (opacity > 0.5; the expected depth lies inside a soft wall,
    the decile near its front: on the shapes scene F-score@1% 0.79 against 0.54 for the median). A field trained briefly or at low resolution has soft walls
    whose peak density is far below `opacity_level` of one marching step, so a fixed level would cut
    through them; this level follows the field. Falls back to `opacity_level` when no ray is opaque."""
    cams = trainer.refined(trainer.train_data.cameras)
    g = torch.Generator(device=trainer.device).manual_seed(seed)
    image = torch.randint(0, len(cams), (n_rays,), generator=g, device=trainer.device)
    u = torch.randint(0, cams.width, (n_rays,), generator=g, device=trainer.device)
    v = torch.randint(0, cams.height, (n_rays,), generator=g, device=trainer.device)
    rays = cams.rays(image, u, v)
    out = trainer.render_rays(rays.origins, rays.directions, cams.near, cams.far, chunk=1 << 14)
    opaque = out["opacity"] > 0.5
    if int(opaque.sum()) < 16:
        return opacity_level(trainer.step_size)
    t = expected_depth(out["depth"][opaque], out["opacity"][opaque])
    points = rays.origins[opaque] + rays.directions[opaque] * t[:, None]
    return float(trainer.model.density(points).quantile(SURFACE_QUANTILE))


# ---- the job ------------------------------------------------------------------------------------
def extract(trainer: Trainer, config: MeshExportConfig, seconds: dict[str, float]) -> tuple[o3d.geometry.TriangleMesh, float | None]:
    """The raw surface of the configured method (and the mc level used)."""
    grid = trainer.grid
    bounds = grid.occupied_bounds()
    if bounds is None:
        raise UserError("the run's occupancy grid has no occupied cell: the field is empty, nothing to extract")
    cell = (grid.aabb[3:] - grid.aabb[:3]) / grid.resolution
    bounds = torch.cat([torch.maximum(bounds[:3] - cell, grid.aabb[:3]), torch.minimum(bounds[3:] + cell, grid.aabb[3:])])
    start = time.perf_counter()
    if config.method == "mc":
        with torch.no_grad():
            volume = sample_density(trainer.model.eval().density, bounds, config.resolution, grid)
        seconds["density"] = time.perf_counter() - start
        level = config.level if config.level is not None else surface_level(trainer)
        if config.fill_hidden:
            t = time.perf_counter()
            cams = trainer.refined(trainer.train_data.cameras).to("cpu")
            cams = cams.subset(np.linspace(0, len(cams) - 1, min(len(cams), FREE_SPACE_VIEWS)).round().astype(int).tolist())
            cams = cams.scaled(min(1.0, 256 / max(cams.width, cams.height)))  # free space needs no fine detail
            volume = fill_hidden(volume, level, FreeSpace(depth_views(trainer, cams, config.min_opacity), volume.spacing))
            seconds["fill_hidden"] = time.perf_counter() - t
        surface = marching_cubes(volume, level)
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(surface.vertices.astype(np.float64)),
                                         o3d.utility.Vector3iVector(surface.faces.astype(np.int32)))
        seconds["extract"] = time.perf_counter() - start
        return mesh, level
    cameras = _cameras(trainer, config.views, config.n_views)
    views = depth_views(trainer, cameras.pinhole() if config.method == "tsdf" else cameras, config.min_opacity)
    seconds["depth"] = time.perf_counter() - start
    if config.method == "tsdf":
        voxel = float((bounds[3:] - bounds[:3]).max()) / config.resolution
        mesh = tsdf_fusion(views, voxel)
    else:
        mesh = poisson_surface(point_cloud(views), config.poisson_depth, config.trim)
    seconds["extract"] = time.perf_counter() - start
    return mesh, None


def export_mesh(run_dir: Path, config: MeshExportConfig, out: Path | None = None,
                device: str | None = None) -> MeshExport:
    """Extract, clean, colour and write the mesh of a run (see the module docstring)."""
    config.check()
    run_dir = Path(run_dir)
    _, trainer, *_ = run_renderer(run_dir, device)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    mesh, level = extract(trainer, config, seconds)
    if len(mesh.triangles) == 0:
        raise UserError(f"{config.method} produced no surface; for mc try another --level (used {level}), for "
                         "tsdf/poisson lower --min-opacity")
    t = time.perf_counter()
    mesh, report = clean_mesh(mesh, config.cleanup)
    seconds["cleanup"] = time.perf_counter() - t
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles).astype(np.int64)
    normals = np.asarray(mesh.vertex_normals)
    t = time.perf_counter()
    result = _colored(trainer, vertices, faces, normals, config)
    seconds["color"] = time.perf_counter() - t
    path = Path(out) if out is not None else run_dir / "exports" / f"mesh-{config.method}.{config.format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    result.export(path)
    seconds["total"] = time.perf_counter() - start
    export = MeshExport(path, len(result.faces), len(result.vertices), report.stages, seconds, level)
    path.with_suffix(".json").write_text(json.dumps({"run": str(run_dir), "config": asdict(config), "faces": export.faces,
                                                     "vertices": export.vertices, "stages": report.stages,
                                                     "level": level, "seconds": seconds}, indent=1))
    return export


def _colored(trainer: Trainer, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
             config: MeshExportConfig) -> trimesh.Trimesh:
    if config.texture:
        v, f, uv, image = bake_texture(trainer, vertices, faces, normals, config.texture)
        material = trimesh.visual.material.SimpleMaterial(image=image)
        return trimesh.Trimesh(v, f, visual=trimesh.visual.TextureVisuals(uv=uv, image=image, material=material),
                               process=False)
    colors = None
    if config.colors != "none":
        colors = colors_along_normals(trainer, vertices, normals)
        if config.colors == "views":
            colors = colors_from_photos(trainer, vertices, colors)
        colors = np.concatenate([(colors * 255 + 0.5).astype(np.uint8), np.full((len(colors), 1), 255, np.uint8)], 1)
    return trimesh.Trimesh(vertices, faces, vertex_normals=normals, vertex_colors=colors, process=False)


def export_pointcloud(run_dir: Path, views: str = "train", n_views: int = 100, min_opacity: float = 0.5,
                      stride: int = 1, out: Path | None = None, device: str | None = None) -> tuple[Path, int]:
    """Back-projected rendered depth of every view, with colours and normals, as a PLY."""
    if stride < 1:
        raise UserError(f"--stride must be >= 1 (keep every stride-th pixel), got {stride}")
    run_dir = Path(run_dir)
    _, trainer, *_ = run_renderer(run_dir, device)
    cloud = point_cloud(depth_views(trainer, _cameras(trainer, views, n_views), min_opacity), stride)
    if len(cloud.points) == 0:
        raise UserError("no view saw any surface (opacity >= --min-opacity): nothing to export")
    path = Path(out) if out is not None else run_dir / "exports" / "pointcloud.ply"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), cloud):
        raise UserError(f"could not write {path}: check that its folder is writable")
    return path, len(cloud.points)


def report_line(export: MeshExport) -> str:
    stages = CleanupReport(export.stages).summary()
    return f"{export.path}: {export.faces:,} faces ({stages}) in {export.seconds['total']:.1f} s"
