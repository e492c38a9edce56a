"""How close a mesh is to a ground-truth mesh: Chamfer distance, F-score, normal consistency.

Each mesh is sampled uniformly by area (`n_points` points, with their face normals) and every sample
is measured against the *other mesh's surface* (open3d's exact closest-point queries), not against
the other point set: a mesh scored against itself is exactly 0 and two concentric spheres differ by
exactly their radius gap, with no sampling bias. Distances are relative to the ground truth's
bounding-box diagonal so that scores compare across scenes.

- accuracy: mean distance from the mesh's samples to the ground truth; completeness: the reverse;
  Chamfer = (accuracy + completeness) / 2 (the DTU / Tanks-and-Temples convention).
- F-score at tau: harmonic mean of precision (mesh samples within tau of the ground truth) and
  recall (ground-truth samples within tau of the mesh).
- normal consistency: mean |n . n'| between each sample's face normal and that of its closest
  ground-truth (or mesh) triangle, over both directions (Occupancy Networks' definition).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

from onefield.errors import UserError
from onefield.scenes.mesh_scene import load_mesh

DEFAULT_THRESHOLDS = (0.005, 0.01)  # F-score thresholds as fractions of the ground truth's diagonal


@dataclass
class MeshScore:
    chamfer: float  # (accuracy + completeness) / 2, relative to the diagonal
    accuracy: float
    completeness: float
    fscore: dict[str, float]  # threshold label ("0.5%") -> F-score
    precision: dict[str, float]
    recall: dict[str, float]
    normal_consistency: float
    diagonal: float  # of the ground truth's bounding box, world units
    n_points: int

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_label(tau: float) -> str:
    return f"{100 * tau:g}%"


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points [n, 3] uniformly by area on the mesh and their face normals [n, 3]."""
    if len(mesh.faces) == 0 or mesh.area <= 0:
        raise UserError("the mesh has no faces (or zero area): nothing to sample")
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(points, dtype=np.float32), np.asarray(mesh.face_normals[faces], dtype=np.float32)


class SurfaceQuery:
    """Exact closest points on a triangle mesh (open3d's raycasting scene)."""

    def __init__(self, mesh: trimesh.Trimesh):
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                                 o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
        self.face_normals = np.asarray(mesh.face_normals, dtype=np.float32)

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances [n] from points [n, 3] to the surface and the normals [n, 3] of the closest triangles."""
        answer = self.scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
        nearest = answer["points"].numpy()
        triangles = answer["primitive_ids"].numpy().astype(np.int64)
        return np.linalg.norm(points - nearest, axis=1), self.face_normals[triangles]


def score_mesh(mesh: trimesh.Trimesh, gt: trimesh.Trimesh, n_points: int = 200_000,
               thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS, seed: int = 0) -> MeshScore:
    """Score `mesh` against the ground truth `gt` (see the module docstring)."""
    diagonal = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    if diagonal <= 0:
        raise UserError("the ground-truth mesh has an empty bounding box")
    points, normals = sample_surface(mesh, n_points, seed)
    gt_points, gt_normals = sample_surface(gt, n_points, seed)
    to_gt, gt_normal_at = SurfaceQuery(gt).closest(points)
    to_mesh, mesh_normal_at = SurfaceQuery(mesh).closest(gt_points)
    to_gt, to_mesh = to_gt / diagonal, to_mesh / diagonal
    fscore, precision, recall = {}, {}, {}
    for tau in thresholds:
        p, r = float((to_gt < tau).mean()), float((to_mesh < tau).mean())
        key = threshold_label(tau)
        precision[key], recall[key] = p, r
        fscore[key] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    consistency = 0.5 * (np.abs((normals * gt_normal_at).sum(1)).mean()
                         + np.abs((gt_normals * mesh_normal_at).sum(1)).mean())
    accuracy, completeness = float(to_gt.mean()), float(to_mesh.mean())
    return MeshScore(chamfer=0.5 * (accuracy + completeness), accuracy=accuracy, completeness=completeness,
                     fscore=fscore, precision=precision, recall=recall, normal_consistency=float(consistency),
                     diagonal=diagonal, n_points=n_points)


def score_mesh_file(mesh: Path, gt: Path, n_points: int = 200_000, out: Path | None = None) -> tuple[MeshScore, Path]:
    """Score the mesh file `mesh` against the file `gt` and write the scores as JSON (default: MESH with
    the suffix .eval.json); returns (scores, JSON path)."""
    score = score_mesh(load_mesh(mesh), load_mesh(gt), n_points)
    path = Path(out) if out is not None else Path(mesh).with_suffix(".eval.json")
    path.write_text(json.dumps({"mesh": str(mesh), "gt": str(gt), **score.to_dict()}, indent=1))
    return score, path
