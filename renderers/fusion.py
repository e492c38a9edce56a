"""Surfaces from rendered depth: TSDF fusion (open3d's ScalableTSDFVolume) and screened Poisson
reconstruction of the back-projected points (open3d), for fields whose density has no clean
iso-level (or when the surface the renderer *shows* is what matters).

A view keeps its camera (`scenes.Cameras`, lens included): pixels are back-projected along the rays
of `Cameras.image_rays` and world points are found in the image by `Cameras.project`, the same
two functions training uses, so a distorted lens is read back exactly as it was rendered. open3d's
TSDF knows pinholes only: its views are rendered through `Cameras.pinhole()` (exact for a field).
"""

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
from scipy import ndimage
from torch import Tensor

from onefield.scenes.cameras import Cameras

from .image import expected_depth


@dataclass
class DepthView:
    """One rendered view: its camera, its colour, and how far each pixel's ray went."""

    camera: Cameras  # one view, on the CPU
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray  # [H, W] float32 distance t along the pixel's unit ray (`camera.image_rays`); 0: no surface

    def __post_init__(self) -> None:
        shape = (self.camera.height, self.camera.width)
        if len(self.camera) != 1 or self.depth.shape != shape or self.rgb.shape != (*shape, 3):
            raise ValueError(f"a DepthView is one camera with rgb [H, W, 3] and depth [H, W] = {list(shape)}, got "
                             f"{len(self.camera)} cameras, rgb {self.rgb.shape}, depth {self.depth.shape}")

    @classmethod
    def from_render(cls, camera: Cameras, rgb: Tensor, depth: Tensor, opacity: Tensor,
                    min_opacity: float = 0.5) -> "DepthView":
        """From a volume render of `camera`'s image rays: `rgb` [H, W, 3], `depth` [H, W] (sum_i w_i t_i,
        not divided by opacity) and `opacity` [H, W]. Pixels less opaque than `min_opacity` get no
        depth (background, thin fog)."""
        t = torch.where(opacity >= min_opacity, expected_depth(depth, opacity), torch.zeros_like(depth))
        return cls(camera.to("cpu"), rgb.float().cpu().numpy(), t.float().cpu().numpy())

    def world(self) -> np.ndarray:
        """[H, W, 3] float64 world point of every pixel: origin + t * direction of its ray."""
        rays = self.camera.image_rays(0)
        origins, directions = (r.double().numpy().reshape(*self.depth.shape, 3) for r in (rays.origins, rays.directions))
        return origins + directions * self.depth[..., None]

    def z_depth(self) -> np.ndarray:
        """[H, W] float32 depth along the optical axis (the component of t * direction on it)."""
        directions = self.camera.image_rays(0).directions.view(*self.depth.shape, 3)
        return (self.depth * (directions @ self.camera.c2w[0, :, 2]).numpy()).astype(np.float32)

    @property
    def extrinsic(self) -> np.ndarray:
        """World-to-camera [4, 4]."""
        c2w = self.camera.c2w[0].double().numpy()
        w2c = np.eye(4)
        rot, centre = c2w[:, :3], c2w[:, 3]
        w2c[:3, :3], w2c[:3, 3] = rot.T, -rot.T @ centre
        return w2c

    def points(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points [P, 3], colours [P, 3] and unit normals [P, 3] (facing the camera) of every
        `stride`-th pixel with depth; normals from the cross product of the depth map's neighbours,
        so pixels at a depth edge (no valid neighbour) are left out."""
        world = self.world()  # [H, W, 3]
        du, dv = world[:-1, 1:] - world[:-1, :-1], world[1:, :-1] - world[:-1, :-1]
        normal = np.cross(dv, du)  # OpenCV axes: dv x du points back towards the camera
        t = self.depth[:-1, :-1]
        valid = (t > 0) & (self.depth[:-1, 1:] > 0) & (self.depth[1:, :-1] > 0)
        # a neighbour far behind or in front is another surface: no normal across a depth edge
        valid &= (np.abs(self.depth[:-1, 1:] - t) < 0.05 * t) & (np.abs(self.depth[1:, :-1] - t) < 0.05 * t)
        length = np.linalg.norm(normal, axis=-1)
        valid &= length > 0
        keep = np.zeros_like(valid)
        keep[::stride, ::stride] = valid[::stride, ::stride]
        normal = normal[keep] / length[keep][:, None]
        towards = self.camera.c2w[0, :, 3].double().numpy() - world[:-1, :-1][keep]
        normal *= np.sign((normal * towards).sum(-1, keepdims=True) + 1e-12)
        return world[:-1, :-1][keep], self.rgb[:-1, :-1][keep].astype(np.float64), normal


class FreeSpace:
    """Which world points the views see as empty: in front of a camera, seen by one of its pixels
    (`Cameras.project`, lens included), and nearer to it than that pixel's rendered surface by more
    than `margin` (anywhere along a pixel that shows no surface). Each depth map is max-pooled over
    3x3 pixels, so a point just beside a silhouette counts as seen: an error here only leaves a
    pocket unfilled, never fills visible space."""

    def __init__(self, views: list[DepthView], margin: float):
        self.views, self.margin = views, margin
        self.depth = [torch.from_numpy(ndimage.maximum_filter(np.where(v.depth > 0, v.depth, np.inf), size=3))
                      for v in views]  # [H, W] each

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """bool [K] for world points [K, 3]."""
        world = torch.as_tensor(points, dtype=torch.float32)
        seen = torch.zeros(len(world), dtype=torch.bool)
        for view, depth in zip(self.views, self.depth):
            todo = (~seen).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            uv, z = view.camera.project(world[todo], 0)
            h, w = depth.shape
            px = uv.clamp(-1, max(w, h)).floor().long()  # [K, 2]
            ok = (z > 1e-6) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            idx, px = todo[ok], px[ok]
            distance = (world[idx] - view.camera.c2w[0, :, 3]).norm(dim=-1)  # along the ray, as t is
            seen[idx[distance < depth[px[:, 1], px[:, 0]] - self.margin]] = True
        return seen.numpy()


def tsdf_fusion(views: list[DepthView], voxel_size: float, truncation: float | None = None,
                depth_trunc: float = 1e4) -> o3d.geometry.TriangleMesh:
    """Fuse the views' depth and colour into a TSDF (truncation: 4 voxels by default) and extract
    its zero level set with vertex colours. open3d integrates through pinhole intrinsics only, so a
    view whose camera has lens distortion is refused (it would be fused bent): render the views
    through `Cameras.pinhole()` instead, which is exact for a field."""
    if not views:
        raise ValueError("TSDF fusion needs at least one view with depth")
    if any(view.camera.distorted for view in views):
        raise ValueError("TSDF fusion takes pinhole views only (open3d knows no lens distortion): render the views "
                         "through Cameras.pinhole()")
    volume = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=voxel_size, sdf_trunc=truncation or 4.0 * voxel_size,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8)
    for view in views:
        cam = view.camera
        # open3d puts pixel centres at integers, we at +0.5
        intrinsic = o3d.camera.PinholeCameraIntrinsic(cam.width, cam.height, float(cam.fx[0]), float(cam.fy[0]),
                                                      float(cam.cx[0]) - 0.5, float(cam.cy[0]) - 0.5)
        color = o3d.geometry.Image(np.ascontiguousarray((view.rgb.clip(0, 1) * 255).astype(np.uint8)))
        depth = o3d.geometry.Image(np.ascontiguousarray(view.z_depth()))
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
