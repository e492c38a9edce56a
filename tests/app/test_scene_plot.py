import shutil

import numpy as np
import pytest
import torch

from onefield.app.scene_plot import scene_figure, scene_summary
from onefield.scenes import load_scene
from onefield.scenes.colmap import read_model
from onefield.scenes.sfm import ProcessConfig, process
from onefield.scenes.shapes import SHAPES_AABB


def trace(figure, prefix: str):
    found = [t for t in figure.data if t.name.startswith(prefix)]
    assert len(found) == 1, [t.name for t in figure.data]
    return found[0]


def xyz(t) -> np.ndarray:
    """[K, 3] the points of a markers trace."""
    return np.stack([np.asarray(t.x, dtype=float), np.asarray(t.y, dtype=float), np.asarray(t.z, dtype=float)], -1)


@pytest.fixture(scope="module")
def castle_dataset(data_root, tmp_path_factory):
    """Five sceaux-castle photos through `process`: transforms.json, sparse/0 and images."""
    photos = tmp_path_factory.mktemp("photos")
    for photo in sorted((data_root / "sceaux-castle" / "images").iterdir())[:5]:
        shutil.copy(photo, photos)
    out = tmp_path_factory.mktemp("castle") / "dataset"
    return process(photos, out, ProcessConfig(max_side=500, num_threads=2)).out


def test_shapes_scene_shows_each_training_camera_and_the_box(shapes_scene):
    figure = scene_figure(shapes_scene.root)
    train, _, _ = load_scene(shapes_scene.root, "auto", 1, "none")
    np.testing.assert_allclose(xyz(trace(figure, "cameras")), train.cameras.c2w[:, :, 3].numpy(), atol=1e-5)
    assert len(train) == shapes_scene.n_train
    box = xyz(trace(figure, "scene box"))
    box = box[~np.isnan(box).any(1)]
    np.testing.assert_allclose(np.concatenate([box.min(0), box.max(0)]), SHAPES_AABB)
    frustums = xyz(trace(figure, "frustums"))
    assert np.isnan(frustums[:, 0]).sum() == 10 * shapes_scene.n_train  # 10 segments per camera
    assert not [t for t in figure.data if t.name.startswith("sparse points")]  # a Blender scene has no model
    assert figure.layout.scene.aspectmode == "data"
    summary = scene_summary(shapes_scene.root)
    assert summary == {"format": "blender", "cameras": shapes_scene.n_train, "image_size": (40, 40), "points": 0,
                       "box": list(SHAPES_AABB), "cascades": 1}


def test_processed_dataset_points_land_on_their_keypoints(castle_dataset, tmp_path):
    """The plotted points, seen through the cameras onefield trains with, fall where COLMAP
    measured them in the image that sees most of them: the normalisation is applied right."""
    figure = scene_figure(castle_dataset, max_points=10 ** 6)
    points = trace(figure, "sparse points")
    plotted = dict(zip(np.asarray(points.customdata)[:, 0].astype(int).tolist(), xyz(points)))
    model = read_model(castle_dataset / "sparse" / "0")
    assert len(plotted) > 0.9 * len(model.points)  # only strays outside the scene are left out
    image = max(model.images.values(), key=lambda im: int((im.point3D_ids >= 0).sum()))
    seen = [(int(pid), xy) for pid, xy in zip(image.point3D_ids, image.xys) if pid in plotted]
    assert len(seen) > 100
    views, _, _ = load_scene(castle_dataset, "auto", 1, "none")
    cams, index = views.cameras, views.names.index(image.name)
    uv, z = cams.project(torch.tensor(np.stack([plotted[pid] for pid, _ in seen]), dtype=torch.float32), index)
    uv = uv.double().numpy()
    inside = (z.numpy() > 0) & (uv >= 0).all(1) & (uv[:, 0] <= cams.width) & (uv[:, 1] <= cams.height)
    assert inside.mean() > 0.9
    error = np.linalg.norm(uv - np.stack([xy for _, xy in seen]), axis=1)
    assert np.median(error) < 2.0, np.median(error)

    # the same model read as a COLMAP project (no transforms.json) is drawn in the same place
    project = tmp_path / "project"
    shutil.copytree(castle_dataset / "images", project / "images")
    shutil.copytree(castle_dataset / "sparse", project / "sparse")
    again = trace(scene_figure(project, max_points=10 ** 6), "sparse points")
    np.testing.assert_allclose(xyz(again), xyz(points), atol=1e-4)
    summary = scene_summary(castle_dataset)
    assert summary["cameras"] == len(model.images) and summary["points"] == len(plotted)
    assert summary["format"] == "transforms"


def test_points_are_subsampled_with_a_fixed_seed(castle_dataset):
    a, b = (trace(scene_figure(castle_dataset, max_points=300), "sparse points") for _ in range(2))
    assert len(a.x) == 300 and list(a.customdata[:, 0]) == list(b.customdata[:, 0])
    colours = read_model(castle_dataset / "sparse" / "0").points
    first = colours[int(a.customdata[0, 0])].rgb
    assert a.marker.color[0] == f"rgb({first[0]},{first[1]},{first[2]})"


def test_llff_points_fall_inside_the_forward_facing_views(data_root):
    """LLFF recentres and rescales its poses; fern's points (the model has no images.bin) must follow."""
    figure = scene_figure(data_root / "llff-fern")
    points = torch.tensor(xyz(trace(figure, "sparse points")), dtype=torch.float32)
    views, _, _ = load_scene(data_root / "llff-fern", "auto", 8, "none")
    for index in (0, len(views) - 1):
        uv, z = views.cameras.project(points, index)
        inside = (z > 0) & (uv >= 0).all(1) & (uv[:, 0] <= views.cameras.width) & (uv[:, 1] <= views.cameras.height)
        assert inside.float().mean() > 0.9
