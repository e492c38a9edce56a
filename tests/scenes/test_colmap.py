import numpy as np
import pytest

from onefield.scenes import DatasetError
from onefield.scenes.colmap import (ColmapCamera, ColmapImage, ColmapModel, ColmapPoint, read_model,
                                    rotation_to_qvec, write_model)


def _random_model(seed: int = 0) -> ColmapModel:
    rng = np.random.default_rng(seed)
    cameras = {1: ColmapCamera(1, "OPENCV", 640, 480, rng.normal(size=8)),
               3: ColmapCamera(3, "SIMPLE_RADIAL", 320, 200, rng.normal(size=4))}
    images = {}
    for iid in (1, 2, 5):
        q = rng.normal(size=4)
        k = int(rng.integers(0, 5))
        images[iid] = ColmapImage(iid, q / np.linalg.norm(q), rng.normal(size=3), 1 if iid < 5 else 3,
                                  f"frame {iid:03d}.jpg", rng.normal(size=(k, 2)) * 100,
                                  rng.integers(-1, 50, size=k).astype(np.int64))
    points = {pid: ColmapPoint(pid, rng.normal(size=3), rng.integers(0, 256, 3).astype(np.uint8),
                               float(rng.random()), rng.integers(1, 6, 3).astype(np.int32),
                               rng.integers(0, 9, 3).astype(np.int32)) for pid in (7, 8, 40)}
    points[9] = ColmapPoint(9, np.zeros(3), np.zeros(3, np.uint8), 0.0, np.zeros(0, np.int32), np.zeros(0, np.int32))
    return ColmapModel(cameras, images, points)


def _assert_same(a: ColmapModel, b: ColmapModel) -> None:
    assert a.cameras.keys() == b.cameras.keys() and a.images.keys() == b.images.keys()
    assert a.points.keys() == b.points.keys()
    for k, c in a.cameras.items():
        d = b.cameras[k]
        assert (c.model, c.width, c.height) == (d.model, d.width, d.height)
        np.testing.assert_array_equal(c.params, d.params)
    for k, im in a.images.items():
        jm = b.images[k]
        assert (im.name, im.camera_id) == (jm.name, jm.camera_id)
        for x, y in ((im.qvec, jm.qvec), (im.tvec, jm.tvec), (im.xys, jm.xys), (im.point3D_ids, jm.point3D_ids)):
            np.testing.assert_array_equal(x, y)
    for k, p in a.points.items():
        q = b.points[k]
        assert p.error == q.error
        for x, y in ((p.xyz, q.xyz), (p.rgb, q.rgb), (p.image_ids, q.image_ids), (p.point2D_idxs, q.point2D_idxs)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_write_read_round_trip(tmp_path, ext):
    model = _random_model()
    write_model(tmp_path, model, ext)
    _assert_same(model, read_model(tmp_path))
    # and across formats: text written from a binary read is the same model
    write_model(tmp_path / "other", read_model(tmp_path), ".txt" if ext == ".bin" else ".bin")
    _assert_same(model, read_model(tmp_path / "other"))


def test_pose_conversion():
    model = _random_model(1)
    for im in model.images.values():
        c2w = im.c2w()
        r = im.rotation()
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(r @ c2w[:, 3] + im.tvec, 0, atol=1e-12)  # camera centre maps to the origin
        np.testing.assert_allclose(rotation_to_qvec(r), im.qvec * np.sign(im.qvec[0]), atol=1e-12)


def test_fern_sparse_model(data_root):
    model = read_model(data_root / "llff-fern" / "sparse" / "0", require=("cameras", "points3D"))
    (camera,) = model.cameras.values()
    assert (camera.model, camera.width, camera.height) == ("SIMPLE_RADIAL", 4032, 3024)
    assert 2000 < camera.params[0] < 5000 and camera.params[1] == pytest.approx(2016, rel=0.05)
    assert len(model.points) == 10091 and model.images == {}
    xyz = np.stack([p.xyz for p in model.points.values()])
    assert np.isfinite(xyz).all()
    assert all(len(p.image_ids) >= 2 for p in model.points.values())  # every point is triangulated


def test_bad_models_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="no COLMAP model here"):
        read_model(tmp_path)
    write_model(tmp_path, _random_model(), ".bin")
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="images.bin: .*(ends early|not terminated)"):
        read_model(tmp_path)
    (tmp_path / "images.bin").unlink()
    with pytest.raises(DatasetError, match="images.bin: missing"):
        read_model(tmp_path)
    write_model(tmp_path / "t", _random_model(), ".txt")
    (tmp_path / "t" / "cameras.txt").write_text("1 FISHEYE_624 10 10 1 2 3\n")
    with pytest.raises(DatasetError, match="unknown camera model 'FISHEYE_624'"):
        read_model(tmp_path / "t")
    (tmp_path / "t" / "cameras.txt").write_text("1 PINHOLE 10 10 1 2 3\n")
    with pytest.raises(DatasetError, match="cameras.txt:1: cannot parse a camera.*takes 4 parameters"):
        read_model(tmp_path / "t")
