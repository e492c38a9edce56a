import numpy as np
import pytest
import torch
from PIL import Image

from onefield.scenes import DatasetError, detect_format, look_at
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


def test_dtu_cameras_npz(tmp_path):
    (tmp_path / "image").mkdir()
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [0.5, -1.0, 3.0]  # normalised frame -> world: x_w = 2 x_n + (0.5, -1, 3)
    arrays, expected = {}, []
    for i, eye in enumerate([(0.0, -3.0, 1.0), (2.5, -1.0, 0.5), (-2.0, -2.0, 1.5)]):
        c2w_n = look_at(eye, (0.0, 0.0, 0.0)).double().numpy()  # camera in the normalised frame
        expected.append(c2w_n)
        c_w = 2.0 * c2w_n[:, 3] + scale_mat[:3, 3]
        r = c2w_n[:, :3].T
        world = np.eye(4)
        world[:3, :4] = _k() @ np.concatenate([r, (-r @ c_w)[:, None]], 1)
        arrays[f"world_mat_{i}"], arrays[f"scale_mat_{i}"] = world, scale_mat
        Image.new("RGB", (80, 60), (i * 50, 0, 0)).save(tmp_path / "image" / f"{i:06d}.png")
    np.savez(tmp_path / "cameras.npz", **arrays)
    assert detect_format(tmp_path) == "dtu"
    data = read_dtu(tmp_path, use_cache=False)
    torch.testing.assert_close(data.cameras.c2w, torch.tensor(np.stack(expected), dtype=torch.float32), atol=1e-5, rtol=0)
    assert float(data.cameras.fx[0]) == pytest.approx(300.0) and float(data.cameras.fy[0]) == pytest.approx(303.0)
    assert data.cascades == 2 and data.aabb == (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)

    del arrays["scale_mat_2"]
    np.savez(tmp_path / "cameras.npz", **arrays)
    with pytest.raises(DatasetError, match=r"\['scale_mat_2'\] are missing"):
        read_dtu(tmp_path, use_cache=False)


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
