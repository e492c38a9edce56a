import shutil

import numpy as np
import pytest
import torch

from onefield.scenes import DatasetError
from onefield.scenes.llff import read_llff


def test_fern(data_root):
    data = read_llff(data_root / "llff-fern", factor=8)
    assert data.images.shape == (20, 378, 504, 4) and not data.has_alpha
    assert data.names[0] == "image000.png"
    raw = np.load(data_root / "llff-fern" / "poses_bounds.npy")
    assert float(data.cameras.fx[0]) == pytest.approx(raw[0, 14] / 8, rel=1e-5)
    cams = data.cameras
    # recentred: the mean camera sits at the origin looking along +z; forward-facing, small baseline
    forward = cams.c2w[:, :, 2]
    assert float(forward.mean(0)[2]) > 0.99
    assert float(cams.c2w[:, :, 3].mean(0).norm()) < 1e-4
    assert float(cams.c2w[:, :, 3].norm(dim=-1).max()) < 0.4 * cams.near
    # scaled so the nearest bound is at 1/0.75 (our near is 0.9 of it)
    assert cams.near == pytest.approx(0.9 / 0.75, rel=1e-5)
    lo, hi = torch.tensor(data.aabb[:3]), torch.tensor(data.aabb[3:])
    # the box holds the points along every camera's central ray between near and far
    for depth in (cams.near, cams.far):
        points = cams.c2w[:, :, 3] + forward * depth
        assert bool(((points >= lo - 1e-5) & (points <= hi + 1e-5)).all())
    train, test = data.split_every(8)
    assert len(train) == 17 and test.names == ["image000.png", "image008.png", "image016.png"]


def test_fern_sparse_points_project_into_the_images(data_root):
    """The COLMAP points of fern (LLFF poses share COLMAP's world), mapped by the reader's
    transform, lie in front of the cameras between near and far and project into the images:
    poses, intrinsics, the axis conversion and the recentring agree."""
    from onefield.scenes.colmap import read_model

    data = read_llff(data_root / "llff-fern", factor=16)
    model = read_model(data_root / "llff-fern" / "sparse" / "0", require=("cameras", "points3D"))
    xyz = torch.tensor(np.stack([p.xyz for p in model.points.values()]), dtype=torch.float32)  # [P, 3]
    ours = xyz @ data.transform[:, :3].T + data.transform[:, 3]
    cams = data.cameras
    for i in (0, 10, 19):
        r, c = cams.c2w[i, :, :3], cams.c2w[i, :, 3]
        p_cam = (ours - c) @ r  # world -> camera
        depth = p_cam[:, 2]
        assert float(((depth > cams.near * 0.9) & (depth < cams.far)).float().mean()) > 0.95
        u = p_cam[:, 0] / depth * cams.fx[i] + cams.cx[i]
        v = p_cam[:, 1] / depth * cams.fy[i] + cams.cy[i]
        inside = (u > -2) & (u < cams.width + 2) & (v > -2) & (v < cams.height + 2)
        assert float(inside.float().mean()) > 0.8, i


def test_bad_llff_folders(tmp_path, data_root):
    with pytest.raises(DatasetError, match="poses_bounds.npy: no such file"):
        read_llff(tmp_path)
    shutil.copy(data_root / "llff-fern" / "poses_bounds.npy", tmp_path)
    with pytest.raises(DatasetError, match=r"images_8: no such folder \(found no image folders\)"):
        read_llff(tmp_path)
    shutil.copytree(data_root / "llff-fern" / "images_16", tmp_path / "images_16")
    (tmp_path / "images_16" / "IMG_4026.png").unlink()
    (tmp_path / "images_16" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"19 images for 20 poses.*ignored non-image files: \['notes.txt'\]"):
        read_llff(tmp_path, factor=16)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 12)))
    with pytest.raises(DatasetError, match=r"expected finite \[N, 17\]"):
        read_llff(tmp_path, factor=16)
