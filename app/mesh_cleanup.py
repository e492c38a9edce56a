"""Mesh cleanup after extraction (open3d): the fixes for what NeRF meshes are known for — floaters,
lumpy surfaces, millions of marching-cubes triangles — each stage reported in faces before/after.
"""

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from .mesh_config import CleanupConfig


@dataclass
class CleanupReport:
    stages: list[tuple[str, int]] = field(default_factory=list)  # (stage, faces after it), starting with "extracted"

    def add(self, stage: str, mesh: o3d.geometry.TriangleMesh) -> None:
        self.stages.append((stage, len(mesh.triangles)))

    def summary(self) -> str:
        return " -> ".join(f"{name} {count:,}" for name, count in self.stages)


def tidy(mesh: o3d.geometry.TriangleMesh) -> o3d.geometry.TriangleMesh:
    """Degenerate, duplicated and unreferenced elements removed (always safe)."""
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    mesh.remove_duplicated_vertices()
    mesh.remove_unreferenced_vertices()
    return mesh


def remove_small_components(mesh: o3d.geometry.TriangleMesh, min_fraction: float) -> o3d.geometry.TriangleMesh:
    """Drop connected components with fewer than `min_fraction` x the largest component's faces."""
    if len(mesh.triangles) == 0 or min_fraction <= 0:
        return mesh
    clusters, counts, _ = mesh.cluster_connected_triangles()
    clusters, counts = np.asarray(clusters), np.asarray(counts)
    small = counts < min_fraction * counts.max()
    mesh.remove_triangles_by_mask(small[clusters])
    mesh.remove_unreferenced_vertices()
    return mesh


def clean_mesh(mesh: o3d.geometry.TriangleMesh, config: CleanupConfig) -> tuple[o3d.geometry.TriangleMesh, CleanupReport]:
    """tidy -> floaters -> smoothing -> decimation, as configured; the mesh is modified in place."""
    report = CleanupReport()
    report.add("extracted", mesh)
    mesh = tidy(mesh)
    if config.min_component > 0:
        mesh = remove_small_components(mesh, config.min_component)
        report.add("without floaters", mesh)
    if config.smooth > 0:
        mesh = mesh.filter_smooth_taubin(number_of_iterations=config.smooth)
        report.add("smoothed", mesh)
    if 0 < config.faces < len(mesh.triangles):
        mesh = tidy(mesh.simplify_quadric_decimation(target_number_of_triangles=config.faces))
        report.add("decimated", mesh)
    mesh.compute_vertex_normals()
    return mesh, report
