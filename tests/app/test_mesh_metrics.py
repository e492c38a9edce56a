"""`eval-mesh`: Chamfer, F-score and normal consistency against a ground-truth mesh."""

import json

import numpy as np
import pytest
import trimesh

from onefield.app.cli import main
from onefield.app.mesh_metrics import score_mesh


def ball(scale: float = 1.0) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    mesh.apply_scale(scale)
    return mesh


def test_a_mesh_against_itself_scores_perfectly():
    score = score_mesh(ball(), ball(), n_points=20_000)
    assert score.chamfer < 1e-6 and score.accuracy < 1e-6 and score.completeness < 1e-6
    assert score.fscore == {"0.5%": 1.0, "1%": 1.0}
    assert score.normal_consistency == pytest.approx(1.0, abs=1e-6)


def test_a_scaled_copy_is_off_by_the_radius_gap():
    gt = ball()
    diagonal = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    score = score_mesh(ball(1.02), gt, n_points=20_000)  # surfaces 0.01 apart
    assert score.diagonal == pytest.approx(diagonal)
    assert score.accuracy * diagonal == pytest.approx(0.01, rel=0.02)
    assert score.completeness * diagonal == pytest.approx(0.01, rel=0.02)
    # 0.01 / diagonal (1.73) = 0.58% of the diagonal: outside 0.5%, inside 1%
    assert score.fscore["0.5%"] == 0.0 and score.fscore["1%"] == 1.0
    assert score.normal_consistency > 0.999


def test_missing_half_lowers_recall_not_precision():
    gt = ball()
    half = trimesh.Trimesh(gt.vertices, gt.faces[gt.triangles_center[:, 2] > 0])  # the upper hemisphere only
    score = score_mesh(half, gt, n_points=20_000)
    assert score.precision["1%"] == pytest.approx(1.0)
    assert 0.45 < score.recall["1%"] < 0.56
    assert score.completeness > 10 * score.accuracy


def test_cli_writes_the_scores_and_rejects_a_bad_file(tmp_path, capsys):
    ball().export(tmp_path / "gt.ply")
    ball(1.02).export(tmp_path / "mesh.obj")
    assert main(["eval-mesh", str(tmp_path / "mesh.obj"), "--gt", str(tmp_path / "gt.ply"), "--points", "5000"]) == 0
    report = json.loads((tmp_path / "mesh.eval.json").read_text())
    assert report["fscore"]["1%"] == 1.0 and report["chamfer"] > 0
    assert "Chamfer" in capsys.readouterr().out
    (tmp_path / "broken.ply").write_text("ply\nnot really\n")
    assert main(["eval-mesh", str(tmp_path / "broken.ply"), "--gt", str(tmp_path / "gt.ply")]) == 2
    assert "broken.ply" in capsys.readouterr().err
