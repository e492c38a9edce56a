"""Mesh cleanup: floaters dropped, smoothing, decimation to a face budget, each stage reported."""

import numpy as np
import open3d as o3d

from onefield.app.mesh_cleanup import clean_mesh
from onefield.app.mesh_config import CleanupConfig


def sphere_with_floater() -> o3d.geometry.TriangleMesh:
    body = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=60)
    floater = o3d.geometry.TriangleMesh.create_sphere(radius=0.03, resolution=6)
    floater.translate((0.9, 0.0, 0.0))
    return body + floater


def test_floaters_are_removed_and_reported():
    mesh = sphere_with_floater()
    n = len(mesh.triangles)
    cleaned, report = clean_mesh(mesh, CleanupConfig(min_component=0.02))
    assert report.stages[0] == ("extracted", n)
    assert report.stages[-1][0] == "without floaters" and report.stages[-1][1] < n
    assert np.linalg.norm(np.asarray(cleaned.vertices), axis=1).max() < 0.51  # only the body is left
    assert "extracted" in report.summary() and "->" in report.summary()


def test_decimation_meets_the_face_budget_and_smoothing_keeps_the_shape():
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=80)
    cleaned, report = clean_mesh(mesh, CleanupConfig(min_component=0.0, smooth=5, faces=2000))
    assert [s for s, _ in report.stages] == ["extracted", "smoothed", "decimated"]
    assert len(cleaned.triangles) <= 2000 and report.stages[-1][1] == len(cleaned.triangles)
    radii = np.linalg.norm(np.asarray(cleaned.vertices), axis=1)
    assert np.abs(radii - 0.5).max() < 0.02
    assert cleaned.has_vertex_normals()
