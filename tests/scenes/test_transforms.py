import json

import pytest
import torch
from PIL import Image

from onefield.scenes import DatasetError, MissingFramesWarning
from onefield.scenes.transforms import read_transforms


def test_ingp_fox(data_root):
    root = data_root / "ingp-fox"
    meta = json.loads((root / "transforms.json").read_text())
    with pytest.warns(MissingFramesWarning, match="17 of 67 listed frames have no image"):
        data = read_transforms(root, downscale=8)
    assert data.images.shape == (50, 240, 135, 4) and not data.has_alpha
    cams = data.cameras
    assert float(cams.fx[0]) == pytest.approx(meta["fl_x"] * 135 / 1080, rel=1e-5)
    assert float(cams.fy[0]) == pytest.approx(meta["fl_y"] * 240 / 1920, rel=1e-5)
    assert float(cams.cy[0]) == pytest.approx(meta["cy"] * 240 / 1920, rel=1e-5)
    torch.testing.assert_close(cams.distortion[0], torch.tensor([meta["k1"], meta["k2"], meta["p1"], meta["p2"]]))
    assert data.cascades == 3  # aabb_scale 4
    assert data.aabb == pytest.approx((-1 / 0.66,) * 3 + (1 / 0.66,) * 3)
    # a real capture around the fox: every camera looks towards the middle of the box
    forward, eye = cams.c2w[:, :, 2], cams.c2w[:, :, 3]
    assert float(torch.nn.functional.cosine_similarity(forward, -eye, dim=-1).min()) > 0.7


def _write(tmp_path, meta, size=(6, 4)):
    (tmp_path / "images").mkdir(exist_ok=True)
    for i in range(len(meta["frames"])):
        Image.new("RGB", size, (i * 40, 10, 10)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "transforms.json").write_text(json.dumps(meta))


def _frame(i, **extra):
    pose = torch.eye(4)
    pose[0, 3] = i
    return {"file_path": f"images/{i}.png", "transform_matrix": pose.tolist(), **extra}


def test_per_frame_intrinsics_and_stated_size(tmp_path):
    # intrinsics stated for 12x8 images, files on disk are 6x4: they scale with the image
    meta = {"w": 12, "h": 8, "fl_x": 10.0, "fl_y": 11.0, "cx": 6.0, "cy": 4.0, "camera_model": "OPENCV",
            "frames": [_frame(0), _frame(1, fl_x=20.0, cx=5.0)], "near": 0.5, "far": 9.0,
            "aabb": [-1, -1, -1, 1, 1, 1]}
    _write(tmp_path, meta)
    data = read_transforms(tmp_path, use_cache=False)
    assert data.cameras.fx.tolist() == [5.0, 10.0] and data.cameras.fy.tolist() == [5.5, 5.5]
    assert data.cameras.cx.tolist() == [3.0, 2.5] and data.cameras.distortion is None
    assert (data.cameras.near, data.cameras.far, data.cascades) == (0.5, 9.0, 1)
    assert data.images[1, 0, 0, 0] == 40


def test_unsupported_inputs_are_named(tmp_path):
    _write(tmp_path, {"fl_x": 5.0, "camera_model": "OPENCV_FISHEYE", "frames": [_frame(0)]})
    with pytest.raises(DatasetError, match="camera model 'OPENCV_FISHEYE' is not supported.*image_undistorter"):
        read_transforms(tmp_path, use_cache=False)
    _write(tmp_path, {"fl_x": 5.0, "k3": 0.1, "frames": [_frame(0)]})
    with pytest.raises(DatasetError, match="'k3' is not supported"):
        read_transforms(tmp_path, use_cache=False)
    _write(tmp_path, {"fl_x": "five", "frames": [_frame(0)]})
    with pytest.raises(DatasetError, match="'fl_x' must be a finite number"):
        read_transforms(tmp_path, use_cache=False)
    _write(tmp_path, {"fl_x": 5.0, "aabb_scale": 3, "frames": [_frame(0)]})
    with pytest.raises(DatasetError, match="'aabb_scale' must be a power of two"):
        read_transforms(tmp_path, use_cache=False)
    nan_pose = _frame(1)
    nan_pose["transform_matrix"][2][3] = float("nan")  # json writes NaN, and reads it back
    _write(tmp_path, {"fl_x": 5.0, "frames": [_frame(0), nan_pose]})
    with pytest.raises(DatasetError, match=r"frame 1 'transform_matrix' has non-finite values \(NaN/inf\); fix or "
                       "remove that frame"):
        read_transforms(tmp_path, use_cache=False)
    short_pose = _frame(1)
    short_pose["transform_matrix"] = short_pose["transform_matrix"][:3]
    _write(tmp_path, {"fl_x": 5.0, "frames": [_frame(0), short_pose]})
    with pytest.raises(DatasetError, match="frame 1 'transform_matrix' must be a 4x4 matrix, got 3x4; fix or remove"):
        read_transforms(tmp_path, use_cache=False)
    (tmp_path / "transforms.json").unlink()
    with pytest.raises(DatasetError, match="transforms.json: no such file"):
        read_transforms(tmp_path)
