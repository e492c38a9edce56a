"""Surfaces from rendered depth: TSDF fusion (open3d's ScalableTSDFVolume) and screened Poisson
reconstruction of the back-projected points (open3d), for fields whose density has no clean
iso-level (or when the surface the renderer *shows* is what matters).

Views are in the project's camera convention (OpenCV: x right, y down, z forward); open3d wants
z-depth and world-to-camera extrinsics in the same axes.
"""

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy import ndimage


@dataclass
class DepthView:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray  # [H, W] float32 z-depth along the camera axis; 0 where no surface was seen
    intrinsics: np.ndarray  # [3, 3]
    c2w: np.ndarray  # [3, 4] camera-to-world, OpenCV axes

    @classmethod
    def from_render(cls, rgb: np.ndarray, ray_depth: np.ndarray, opacity: np.ndarray, intrinsics: np.ndarray,
                    c2w: np.ndarray, min_opacity: float = 0.5) -> "DepthView":
        """From a volume render: `ray_depth` [H, W] is sum_i w_i t_i along unit rays (not divided by
        opacity). Pixels less opaque than `min_opacity` get no depth (background, thin fog)."""
        h, w = ray_depth.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
        x = (u - intrinsics[0, 2]) / intrinsics[0, 0]
        y = (v - intrinsics[1, 2]) / intrinsics[1, 1]
        t = ray_depth / np.maximum(opacity, 1e-6)
        z = t / np.sqrt(x * x + y * y + 1.0)  # along the optical axis
        depth = np.where(opacity >= min_opacity, z, 0.0).astype(np.float32)
        return cls(rgb.astype(np.float32), depth, intrinsics.astype(np.float64), c2w.astype(np.float64))

    @property
    def extrinsic(self) -> np.ndarray:
        """World-to-camera [4, 4]."""
        w2c = np.eye(4)
        rot, centre = self.c2w[:, :3], self.c2w[:, 3]
        w2c[:3, :3], w2c[:3, 3] = rot.T, -rot.T @ centre
        return w2c

    def points(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points [P, 3], colours [P, 3] and unit normals [P, 3] (facing the camera) of every
        `stride`-th pixel with depth; normals from the cross product of the depth map's neighbours,
        so pixels at a depth edge (no valid neighbour) are left out."""
        h, w = self.depth.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        k = self.intrinsics
        cam = np.stack([(u - k[0, 2]) / k[0, 0] * self.depth, (v - k[1, 2]) / k[1, 1] * self.depth, self.depth], -1)
        world = cam @ self.c2w[:, :3].T + self.c2w[:, 3]  # [H, W, 3]
        du, dv = world[:-1, 1:] - world[:-1, :-1], world[1:, :-1] - world[:-1, :-1]
        normal = np.cross(dv, du)  # OpenCV axes: dv x du points back towards the camera
        valid = (self.depth[:-1, :-1] > 0) & (self.depth[:-1, 1:] > 0) & (self.depth[1:, :-1] > 0)
        # a neighbour far behind or in front is another surface: no normal across a depth edge
        z = self.depth[:-1, :-1]
        valid &= (np.abs(self.depth[:-1, 1:] - z) < 0.05 * z) & (np.abs(self.depth[1:, :-1] - z) < 0.05 * z)
        length = np.linalg.norm(normal, axis=-1)
        valid &= length > 0
        keep = np.zeros_like(valid)
        keep[::stride, ::stride] = valid[::stride, ::stride]
        normal = normal[keep] / length[keep][:, None]
        towards = self.c2w[:, 3] - world[:-1, :-1][keep]
        normal *= np.sign((normal * towards).sum(-1, keepdims=True) + 1e-12)
        return world[:-1, :-1][keep], self.rgb[:-1, :-1][keep].astype(np.float64), normal


class FreeSpace:
    """Which world points the views see as empty: in front of a camera, inside its image, and nearer
    than its rendered surface there by more than `margin` (anywhere along a pixel that shows no
    surface). Each depth map is max-pooled over 3x3 pixels, so a point just beside a silhouette
    counts as seen: an error here only leaves a pocket unfilled, never fills visible space."""

    def __init__(self, views: list[DepthView], margin: float):
        self.views, self.margin = views, margin
        self.depth = [ndimage.maximum_filter(np.where(v.depth > 0, v.depth, np.inf), size=3) for v in views]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """bool [K] for world points [K, 3]."""
        seen = np.zeros(len(points), dtype=bool)
        for view, depth in zip(self.views, self.depth):
            todo = np.flatnonzero(~seen)
            if todo.size == 0:
                break
            cam = (points[todo] - view.c2w[:, 3].astype(np.float32)) @ view.c2w[:, :3].astype(np.float32)  # [K, 3]
            z = cam[:, 2]
            front = z > 1e-6
            zs = np.where(front, z, 1.0)
            k = view.intrinsics
            u = np.floor(cam[:, 0] / zs * k[0, 0] + k[0, 2]).clip(-1, depth.shape[1]).astype(np.int64)
            v = np.floor(cam[:, 1] / zs * k[1, 1] + k[1, 2]).clip(-1, depth.shape[0]).astype(np.int64)
            ok = front & (u >= 0) & (u < depth.shape[1]) & (v >= 0) & (v < depth.shape[0])
            ok[ok] = z[ok] < depth[v[ok], u[ok]] - self.margin
            seen[todo[ok]] = True
        return seen


def tsdf_fusion(views: list[DepthView], voxel_size: float, truncation: float | None = None,
                depth_trunc: float = 1e4) -> o3d.geometry.TriangleMesh:
    """Fuse the views' depth and colour into a TSDF (truncation: 4 voxels by default) and extract
    its zero level set with vertex colours."""
    if not views:
        raise ValueError("TSDF fusion needs at least one view with depth")
    volume = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=voxel_size, sdf_trunc=truncation or 4.0 * voxel_size,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8)
    for view in views:
        h, w = view.depth.shape
        k = view.intrinsics
        intrinsic = o3d.camera.PinholeCameraIntrinsic(w, h, k[0, 0], k[1, 1], k[0, 2] - 0.5, k[1, 2] - 0.5)
        color = o3d.geometry.Image(np.ascontiguousarray((view.rgb.clip(0, 1) * 255).astype(np.uint8)))
        depth = o3d.geometry.Image(np.ascontiguousarray(view.depth))
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(color, depth, depth_scale=1.0, depth_trunc=depth_trunc,
                                                                  convert_rgb_to_intensity=False)
        volume.integrate(rgbd, intrinsic, view.extrinsic)
    return volume.extract_triangle_mesh()


def point_cloud(views: list[DepthView], stride: int = 1) -> o3d.geometry.PointCloud:
    """All views' back-projected points with colours and normals."""
    parts = [view.points(stride) for view in views]
    cloud = o3d.geometry.PointCloud()
    if parts:
        cloud.points = o3d.utility.Vector3dVector(np.concatenate([p[0] for p in parts]))
        cloud.colors = o3d.utility.Vector3dVector(np.concatenate([p[1] for p in parts]))
        cloud.normals = o3d.utility.Vector3dVector(np.concatenate([p[2] for p in parts]))
    return cloud


def poisson_surface(cloud: o3d.geometry.PointCloud, depth: int = 9,
                    trim_quantile: float = 0.05) -> o3d.geometry.TriangleMesh:
    """Screened Poisson reconstruction of an oriented point cloud; vertices whose point density is
    in the lowest `trim_quantile` (surface Poisson invented far from any point) are removed."""
    if len(cloud.points) < 100:
        raise ValueError(f"Poisson reconstruction needs an oriented point cloud; got {len(cloud.points)} points "
                         "(did the views see any surface? lower --min-opacity or check the run)")
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    density = np.asarray(density)
    if trim_quantile > 0:
        mesh.remove_vertices_by_mask(density < np.quantile(density, trim_quantile))
    return mesh
