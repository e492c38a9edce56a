import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from onefield.scenes import Cameras, DatasetError, MissingFramesWarning, read_blender, write_blender
from onefield.scenes.frames import load_rgba


def test_lego_test_frame(data_root):
    root = data_root / "nerfstudio-lego-test" / "lego_test"
    data = read_blender(root, "train")
    assert len(data) == 1 and data.images.shape == (1, 50, 50, 4) and data.has_alpha
    meta = json.loads((root / "transforms_train.json").read_text())
    focal = 25.0 / np.tan(0.5 * meta["camera_angle_x"])
    assert float(data.cameras.fx[0]) == pytest.approx(focal, rel=1e-6)
    assert float(data.cameras.cx[0]) == 25.0
    # OpenGL -> OpenCV: the camera's +z (forward) is the file's -z column, and it looks at the object
    m = torch.tensor(meta["frames"][0]["transform_matrix"])
    torch.testing.assert_close(data.cameras.c2w[0, :, 2], -m[:3, 2])
    torch.testing.assert_close(data.cameras.c2w[0, :, 3], m[:3, 3])
    eye, forward = data.cameras.c2w[0, :, 3], data.cameras.c2w[0, :, 2]
    assert float(forward @ -eye) / float(eye.norm()) > 0.95
    # the object pixels are in the middle; the corners are transparent
    alpha = data.images[0, ..., 3]
    assert alpha[0, 0] == 0 and alpha[20:30, 20:30].float().mean() > 128


def test_mic_downscaled_and_cached(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ONEFIELD_CACHE", str(tmp_path / "cache"))
    root = data_root / "nerf-synthetic-mic"
    train = read_blender(root, "train", downscale=8)
    assert train.images.shape == (100, 100, 100, 4) and train.cameras.width == 100
    assert float(train.cameras.fx[0]) == pytest.approx(400 / np.tan(0.5 * 0.6911112070083618) / 8, rel=1e-4)
    cached = list((tmp_path / "cache" / "images").glob("*.npy"))
    assert len(cached) == 1
    again = read_blender(root, "train", downscale=8)
    assert torch.equal(again.images, train.images)
    # area downscaling of premultiplied colour: compositing commutes with it (to rounding)
    full = torch.from_numpy(load_rgba(root / "train" / "r_3.png")).float() / 255
    bg = torch.tensor([0.2, 0.9, 0.4])
    composite_full = full[..., :3] + (1 - full[..., 3:]) * bg
    pooled = torch.nn.functional.avg_pool2d(composite_full.permute(2, 0, 1)[None], 8)[0].permute(1, 2, 0)
    assert (train.composite(3, bg) - pooled).abs().max() < 2.5 / 255


def test_mic_val_skips_missing_frames_with_a_warning(data_root):
    with pytest.warns(MissingFramesWarning, match=r"50 of 100 listed frames have no image.*\./val/r_1\b"):
        val = read_blender(data_root / "nerf-synthetic-mic", "val", downscale=16)
    assert len(val) == 50 and val.names[:2] == ["r_0.png", "r_2.png"]


def _tiny_scene(root, n=3, size=8):
    eye = torch.tensor([0.0, -4.0, 0.0])
    c2w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # looks along +y
    cams = Cameras(torch.cat([c2w, eye[:, None]], 1)[None].repeat(n, 1, 1), 10.0, 10.0, size / 2, size / 2,
                   size, size, 1.0, 7.0)
    images = torch.randint(0, 256, (n, size, size, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    write_blender(root, "train", cams, images, aabb=(-1, -1, -1, 1, 1, 1))
    return cams, images


def test_write_then_read_round_trip(tmp_path):
    cams, images = _tiny_scene(tmp_path)
    data = read_blender(tmp_path, "train", use_cache=False)
    torch.testing.assert_close(data.cameras.c2w, cams.c2w)
    torch.testing.assert_close(data.cameras.fx, cams.fx)
    assert (data.cameras.near, data.cameras.far, data.aabb) == (1.0, 7.0, (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
    alpha = images[..., 3:].float() / 255
    expected = torch.cat([(images[..., :3].float() * alpha).round(), images[..., 3:].float()], -1)
    assert (data.images.float() - expected).abs().max() <= 1


def test_bad_inputs_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"transforms_train.json: no such file \(the folder has no"):
        read_blender(tmp_path, "train")
    _tiny_scene(tmp_path)
    with pytest.raises(DatasetError, match=r"found \['transforms_train.json'\]"):
        read_blender(tmp_path, "test")

    (tmp_path / "train" / "r_1.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"r_1.png: cannot read this image.*remove its frame"):
        read_blender(tmp_path, "train", use_cache=False)

    meta_path = tmp_path / "transforms_train.json"
    meta_path.write_text("{'frames': [")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_blender(tmp_path, "train")
    meta_path.write_text(json.dumps({"frame": []}))
    with pytest.raises(DatasetError, match="needs a 'frames' list"):
        read_blender(tmp_path, "train")
    meta_path.write_text(json.dumps({"camera_angle_x": 0.5, "frames": [{"file_path": "./train/r_0",
                                                                       "transform_matrix": [[1, 0], [0, 1]]}]}))
    with pytest.raises(DatasetError, match="frame 0 'transform_matrix' must be a 4x4 matrix, got 2x2"):
        read_blender(tmp_path, "train")

    shutil.rmtree(tmp_path / "train")
    meta_path.write_text(json.dumps({"camera_angle_x": 0.5, "frames": [{"file_path": "./train/r_0",
                                                                       "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(DatasetError, match="none of the 1 listed images exist"):
        read_blender(tmp_path, "train")


def test_images_of_different_sizes_are_rejected(tmp_path):
    _tiny_scene(tmp_path)
    Image.new("RGBA", (5, 8)).save(tmp_path / "train" / "r_2.png")
    with pytest.raises(DatasetError, match="r_2.png: image is 5x8 but r_0.png is 8x8"):
        read_blender(tmp_path, "train", use_cache=False)


def test_missing_intrinsics_are_named(tmp_path):
    _tiny_scene(tmp_path)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    del meta["camera_angle_x"]
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="frame 0 has no focal length: give 'fl_x'"):
        read_blender(tmp_path, "train", use_cache=False)
