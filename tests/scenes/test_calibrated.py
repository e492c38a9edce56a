import numpy as np
import pytest
import torch
from PIL import Image

from onefield.scenes import DatasetError, detect_format, load_scene, look_at
from onefield.scenes.calibrated import decompose_projection, read_dtu, read_strecha, read_strecha_camera


def _k(f=300.0, cx=40.0, cy=30.0):
    return np.array([[f, 0.0, cx], [0.0, f * 1.01, cy], [0.0, 0.0, 1.0]])


def test_decompose_projection_recovers_k_and_pose():
    c2w = look_at((1.0, -2.5, 0.7), (0.1, 0.0, 0.0)).double().numpy()
    r, c = c2w[:, :3].T, c2w[:, 3]
    p = _k() @ np.concatenate([r, (-r @ c)[:, None]], 1)
    for scale in (1.0, -3.0):  # a projection matrix is defined up to scale, sign included
        k, got = decompose_projection(scale * p)
        np.testing.assert_allclose(k, _k(), atol=1e-4)  # look_at is float32: R is orthonormal to ~1e-7
        np.testing.assert_allclose(got, c2w, atol=1e-6)


def _scan_cameras(n=3):
    """cameras.npz arrays of n known cameras and their OpenCV c2w in the normalised frame."""
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [0.5, -1.0, 3.0]  # normalised frame -> world: x_w = 2 x_n + (0.5, -1, 3)
    arrays, expected = {}, []
    for i, eye in enumerate([(0.0, -3.0, 1.0), (2.5, -1.0, 0.5), (-2.0, -2.0, 1.5)][:n]):
        c2w_n = look_at(eye, (0.0, 0.0, 0.0)).double().numpy()  # camera in the normalised frame
        expected.append(c2w_n)
        c_w = 2.0 * c2w_n[:, 3] + scale_mat[:3, 3]
        r = c2w_n[:, :3].T
        world = np.eye(4)
        world[:3, :4] = _k() @ np.concatenate([r, (-r @ c_w)[:, None]], 1)
        arrays[f"world_mat_{i}"], arrays[f"scale_mat_{i}"] = world, scale_mat
    return arrays, torch.tensor(np.stack(expected), dtype=torch.float32)


def _assert_cameras(data, expected):
    torch.testing.assert_close(data.cameras.c2w, expected, atol=1e-5, rtol=0)
    assert float(data.cameras.fx[0]) == pytest.approx(300.0) and float(data.cameras.fy[0]) == pytest.approx(303.0)
    assert float(data.cameras.cx[0]) == pytest.approx(40.0) and float(data.cameras.cy[0]) == pytest.approx(30.0)
    assert data.cascades == 2 and data.aabb == (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


def test_dtu_cameras_npz(tmp_path):
    (tmp_path / "image").mkdir()
    arrays, expected = _scan_cameras()
    for i in range(3):
        Image.new("RGB", (80, 60), (i * 50, 0, 0)).save(tmp_path / "image" / f"{i:06d}.png")
    np.savez(tmp_path / "cameras.npz", **arrays)
    assert detect_format(tmp_path) == "dtu"
    data = read_dtu(tmp_path, use_cache=False)
    _assert_cameras(data, expected)
    assert not data.has_alpha

    del arrays["scale_mat_2"]
    np.savez(tmp_path / "cameras.npz", **arrays)
    with pytest.raises(DatasetError, match=r"\['scale_mat_2'\] are missing"):
        read_dtu(tmp_path, use_cache=False)


def test_monosdf_scan(tmp_path):
    arrays, expected = _scan_cameras()
    np.savez(tmp_path / "cameras.npz", **arrays)
    for i in range(3):
        Image.new("RGB", (80, 60), (i * 50, 7, 0)).save(tmp_path / f"{i:06d}_rgb.png")
        np.save(tmp_path / f"{i:06d}_depth.npy", np.ones((60, 80), np.float32))  # priors: not read
        np.save(tmp_path / f"{i:06d}_normal.npy", np.ones((3, 60, 80), np.float32))
        Image.new("L", (32, 32)).save(tmp_path / f"{i:06d}_depth.png")  # a picture of the prior: not an image
    assert detect_format(tmp_path) == "dtu"
    data, held_out, _ = load_scene(tmp_path, eval_split="none")
    assert held_out is None and data.names == ["000000_rgb.png", "000001_rgb.png", "000002_rgb.png"]
    _assert_cameras(data, expected)
    assert not data.has_alpha and data.images[2, 0, 0].tolist() == [100, 7, 0, 255]


def _mask(value_right: int) -> Image.Image:
    """80x60 mask: object (white) on the left half, `value_right` on the right half."""
    mask = np.full((60, 80), value_right, np.uint8)
    mask[:, :40] = 255
    return Image.fromarray(mask)


@pytest.mark.parametrize("cameras, image_name, mask_name", [
    ("cameras_sphere.npz", "{:03d}.png", "{:03d}.png"),  # NeuS public_data/<case>
    ("cameras.npz", "{:06d}.png", "{:03d}.png"),  # IDR's DTU scans: masks numbered with 3 digits
])
def test_masks_become_alpha(tmp_path, cameras, image_name, mask_name):
    arrays, expected = _scan_cameras()
    arrays["camera_mat_0"] = np.eye(4)  # NeuS and IDR also store it; not needed
    np.savez(tmp_path / cameras, **arrays)
    (tmp_path / "image").mkdir()
    (tmp_path / "mask").mkdir()
    for i in range(3):
        Image.new("RGB", (80, 60), (200, 100, i * 50)).save(tmp_path / "image" / image_name.format(i))
        _mask(0 if i < 2 else 128).save(tmp_path / "mask" / mask_name.format(i))
    assert detect_format(tmp_path) == "dtu"
    data, _, _ = load_scene(tmp_path, eval_split="none")
    _assert_cameras(data, expected)
    assert data.has_alpha
    assert data.images[1, 5, 10].tolist() == [200, 100, 50, 255]  # inside the mask: the image, opaque
    assert data.images[1, 5, 70].tolist() == [0, 0, 0, 0]  # outside: transparent
    assert data.images[2, 5, 70].tolist() == [100, 50, 50, 128]  # a grey mask: premultiplied by 128/255


def _neus_scan(root):
    arrays, _ = _scan_cameras()
    np.savez(root / "cameras_sphere.npz", **arrays)
    (root / "image").mkdir()
    (root / "mask").mkdir()
    for i in range(3):
        Image.new("RGB", (80, 60)).save(root / "image" / f"{i:03d}.png")
        _mask(0).save(root / "mask" / f"{i:03d}.png")


def test_bad_masks_are_named(tmp_path):
    _neus_scan(tmp_path)
    (tmp_path / "mask" / "001.png").unlink()
    with pytest.raises(DatasetError, match=r"mask: no mask for 1 of 3 images \(001.png\)\. Add a mask named like "
                       r"each image \(e.g. mask/001.png\), or remove mask/"):
        read_dtu(tmp_path, use_cache=False)
    (tmp_path / "mask" / "001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"mask/001.png: cannot read this mask .*valid PNG"):
        read_dtu(tmp_path, use_cache=False)
    Image.new("L", (40, 30), 255).save(tmp_path / "mask" / "001.png")
    with pytest.raises(DatasetError, match=r"mask/001.png: mask is 40x30 but its image is 80x60; save each mask at"):
        read_dtu(tmp_path, use_cache=False)


def test_scan_without_images_is_named(tmp_path):
    np.savez(tmp_path / "cameras.npz", **_scan_cameras()[0])
    with pytest.raises(DatasetError, match=r"no images; a DTU scan keeps them in image/ \(IDR, NeuS\) or as "
                       r"000000_rgb.png"):
        load_scene(tmp_path)


def test_strecha_herz_jesus(data_root):
    root = data_root / "strecha-Herz-Jesus-P8"
    k, radial, c2w, size = read_strecha_camera(root / "gt_dense_cameras" / "0000.jpg.camera")
    assert size == (3072, 2048) and k[0, 0] == pytest.approx(2759.48) and not radial.any()
    np.testing.assert_allclose(c2w[:, :3] @ c2w[:, :3].T, np.eye(3), atol=1e-4)
    assert detect_format(root) == "strecha"
    data = read_strecha(root, downscale=16)
    assert data.images.shape == (8, 128, 192, 4) and data.cameras.distortion is None
    assert float(data.cameras.fx[0]) == pytest.approx(2759.48 / 16, rel=1e-4)
    torch.testing.assert_close(data.cameras.c2w[0], torch.tensor(c2w, dtype=torch.float32))
    # the eight cameras look at one facade: their optical axes nearly agree
    forward = data.cameras.c2w[:, :, 2]
    assert float(torch.nn.functional.cosine_similarity(forward, forward.mean(0, keepdim=True)).min()) > 0.8
