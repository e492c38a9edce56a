import numpy as np
import pytest
import torch
from PIL import Image

from onefield.errors import UserError
from onefield.scenes import DatasetError, detect_format, load_scene, read_blender
from onefield.scenes.colmap import (ColmapCamera, ColmapImage, ColmapModel, ColmapPoint, read_model, rotation_to_qvec,
                                    write_model)
from onefield.scenes.colmap_scene import read_colmap_scene


def _export(scene_root, out, model_name="PINHOLE", ext=".bin"):
    """The shapes scene as a COLMAP project (images + sparse/0 with a few 3D points)."""
    data = read_blender(scene_root, "train", use_cache=False)
    cams = data.cameras
    (out / "images").mkdir(parents=True)
    f, c = float(cams.fx[0]), float(cams.cx[0])
    params = {"PINHOLE": [f, f, c, c], "SIMPLE_RADIAL": [f, c, c, 0.0], "OPENCV_FISHEYE": [f, f, c, c, 0, 0, 0, 0]}
    cameras = {1: ColmapCamera(1, model_name, cams.width, cams.height, np.array(params[model_name]))}
    images = {}
    for i in range(len(data)):
        name = f"view_{i:03d}.png"
        Image.fromarray(data.composite(i, torch.ones(3)).mul(255).round().byte().numpy()).save(out / "images" / name)
        c2w = cams.c2w[i].double().numpy()
        r = c2w[:, :3].T
        images[i + 1] = ColmapImage(i + 1, rotation_to_qvec(r), -r @ c2w[:, 3], 1, name)
    rng = np.random.default_rng(0)
    points = {j: ColmapPoint(j, rng.uniform(-0.8, 0.8, 3), np.zeros(3, np.uint8), 0.5, np.array([1, 2], np.int32),
                             np.array([0, 0], np.int32)) for j in range(200)}
    write_model(out / "sparse" / "0", ColmapModel(cameras, images, points), ext)
    return data


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_colmap_project_reads_back_the_cameras(shapes_scene, tmp_path, ext):
    original = _export(shapes_scene.root, tmp_path, ext=ext)
    assert detect_format(tmp_path) == "colmap"
    data = read_colmap_scene(tmp_path, use_cache=False)
    assert len(data) == len(original) and data.names[0] == "view_000.png"
    a = data.transform[:, :3]
    # cameras match the originals after the normalising similarity x' = A x + b
    expected_centres = original.cameras.c2w[:, :, 3] @ a.T + data.transform[:, 3]
    torch.testing.assert_close(data.cameras.c2w[:, :, 3], expected_centres, atol=1e-5, rtol=0)
    torch.testing.assert_close(data.cameras.c2w[:, :, :3], original.cameras.c2w[:, :, :3], atol=1e-5, rtol=0)
    torch.testing.assert_close(data.cameras.fx, original.cameras.fx)
    # points spanning about +-0.8 are scaled to fill the unit box; cascades reach every camera
    assert 1.1 < float(a[0, 0]) < 1.4
    reach = float(data.cameras.c2w[:, :, 3].abs().max())
    assert 2 ** (data.cascades - 1) >= reach
    train, held_out, name = load_scene(tmp_path)
    assert len(train) + len(held_out) == len(data) and name == "every 8th view"
    # the sparse points come along in the same frame (splats start from them)
    model = read_model(tmp_path / "sparse" / "0")
    xyz = torch.tensor(np.stack([p.xyz for p in model.points.values()]), dtype=torch.float32)
    torch.testing.assert_close(data.points, xyz @ a.T + data.transform[:, 3], atol=1e-5, rtol=0)
    assert data.point_colors.dtype == torch.uint8 and data.point_colors.shape == (200, 3)
    assert torch.equal(train.points, data.points)  # the split keeps them


def test_splats_start_from_the_sparse_points(shapes_scene, tmp_path):
    from onefield import fields
    from onefield.app.runs import make_trainer
    from onefield.app.trainer import TrainerConfig
    from onefield.renderers import OccupancyGrid

    _export(shapes_scene.root, tmp_path)
    data = read_colmap_scene(tmp_path, use_cache=False)
    model = fields.build("splats", data.aabb, {"init": "points"})
    trainer = make_trainer(model, OccupancyGrid(data.aabb, 32, data.cascades), data, TrainerConfig(steps=1))
    points, colors = trainer.initial_points()
    assert torch.equal(points, data.points) and torch.equal(colors, torch.zeros(200, 3))
    trainer.step()
    assert len(model) == 200
    data.points = None
    with pytest.raises(UserError, match="no sparse points"):
        make_trainer(fields.build("splats", data.aabb, {"init": "points"}), OccupancyGrid(data.aabb, 32, data.cascades),
                     data, TrainerConfig(steps=1)).initial_points()


def test_unsupported_colmap_camera_is_named(shapes_scene, tmp_path):
    _export(shapes_scene.root, tmp_path, model_name="OPENCV_FISHEYE")
    with pytest.raises(DatasetError, match="camera 1 uses the OPENCV_FISHEYE model.*image_undistorter"):
        read_colmap_scene(tmp_path)


def test_missing_registered_images_are_named(shapes_scene, tmp_path):
    _export(shapes_scene.root, tmp_path)
    (tmp_path / "images" / "view_003.png").unlink()
    with pytest.raises(DatasetError, match=r"1 registered image\(s\) are missing, e.g. \['view_003.png'\]"):
        read_colmap_scene(tmp_path)
