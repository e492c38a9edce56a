"""Known-geometry scenes from any mesh: views rendered into a Blender dataset with the mesh as ground truth."""

import numpy as np
import pytest
import trimesh

from onefield.app.cli import main
from onefield.app.mesh_metrics import score_mesh
from onefield.scenes import read_blender
from onefield.scenes.mesh_scene import load_mesh, make_mesh_scene, normalise


def test_spot_becomes_a_dataset_with_its_ground_truth(data_root, tmp_path, capsys):
    spot = data_root / "common-3d-meshes" / "spot.obj"
    out = tmp_path / "spot"
    assert main(["mesh-scene", str(spot), str(out), "--views", "6", "--test-views", "2", "--size", "48"]) == 0
    train, test = read_blender(out, "train"), read_blender(out, "test")
    assert train.images.shape == (6, 48, 48, 4) and test.images.shape == (2, 48, 48, 4)
    coverage = train.images[..., 3].float().mean() / 255
    assert 0.05 < coverage < 0.6  # the cow fills part of each view, on a transparent background
    gt = trimesh.load(out / "mesh.ply")
    assert gt.is_watertight  # UV seams merged back: spot is a closed genus-0 surface
    assert np.abs(gt.bounds).max() == pytest.approx(0.9, abs=1e-5)
    # the ground truth is the source mesh moved into the scene: same shape up to the normalisation
    assert score_mesh(gt, normalise(load_mesh(spot), "y"), n_points=20_000).chamfer < 1e-6
    colors = train.images[..., :3][train.images[..., 3] == 255].float()
    assert colors.std(0).min() > 20  # the UV checker shows (spot's shared PNG is a preview render, not a texture)


def test_vertex_colours_and_silhouettes_are_exact(tmp_path):
    """A unit-ish box with red vertices: opaque exactly where the box projects, red under the light."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    box.export(tmp_path / "box.ply")
    scene = make_mesh_scene(tmp_path / "box.ply", tmp_path / "box", up="z", n_train=3, n_test=1, size=40,
                            supersample=1)
    images = read_blender(scene.root, "train").images
    inside = images[..., 3] == 255
    assert inside.any() and ((images[..., 3] == 0) | inside).all()  # one ray per pixel: no partial alpha
    rgb = images[..., :3][inside].float()
    assert (rgb[:, 1] == 0).all() and (rgb[:, 2] == 0).all() and rgb[:, 0].min() > 0.3 * 255


def test_bad_meshes_are_named(tmp_path, capsys):
    assert main(["mesh-scene", str(tmp_path / "missing.obj"), str(tmp_path / "out")]) == 2
    assert "missing.obj: no such mesh file" in capsys.readouterr().err
    (tmp_path / "empty.obj").write_text("# nothing\n")
    assert main(["mesh-scene", str(tmp_path / "empty.obj"), str(tmp_path / "out")]) == 2
    assert "empty.obj" in capsys.readouterr().err
