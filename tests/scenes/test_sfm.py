import json
import shutil

import imageio.v2 as imageio_v2
import numpy as np
import pytest
from PIL import Image

from onefield.scenes import DatasetError, load_scene
from onefield.scenes.sfm import ProcessConfig, extract_frames, import_colmap_model, process, sharpness

SMALL = ProcessConfig(max_side=600, num_threads=2)


@pytest.fixture(scope="module")
def castle_subset(data_root, tmp_path_factory):
    """Six overlapping sceaux-castle photos, plus a file that is not a photo."""
    folder = tmp_path_factory.mktemp("castle")
    for photo in sorted((data_root / "sceaux-castle" / "images").iterdir())[:6]:
        shutil.copy(photo, folder)
    (folder / "notes.txt").write_text("taken on a sunny day")
    return folder


class Cancelled(Exception):
    """What a GUI's Stop button raises from the progress callback."""


@pytest.fixture(scope="module")
def castle_run(castle_subset, tmp_path_factory):
    """The processed castle subset and every progress call it made."""
    out = tmp_path_factory.mktemp("castle_out") / "dataset"
    calls: list[tuple[float, str]] = []
    return process(castle_subset, out, SMALL, progress=lambda fraction, stage: calls.append((fraction, stage))), calls


@pytest.fixture(scope="module")
def castle_processed(castle_run):
    return castle_run[0]


def cancel_at(prefix: str):
    def progress(fraction: float, stage: str) -> None:
        if stage.startswith(prefix):
            raise Cancelled(stage)
    return progress


def test_process_photos_registers_them_and_writes_a_dataset(castle_processed):
    result = castle_processed
    assert result.total == 6 and len(result.registered) == 6 and result.failed == []
    assert (result.out / "sparse" / "0" / "images.bin").is_file()
    meta = json.loads(result.transforms.read_text())
    assert len(meta["frames"]) == 6 and meta["camera_model"] == "OPENCV"
    with Image.open(result.out / "images" / result.registered[0]) as im:
        assert max(im.size) == 600
    train, held_out, name = load_scene(result.out, downscale=4)
    assert len(train) == 5 and len(held_out) == 1 and name == "every 8th view"
    # normalised on the sparse points: cameras sit outside the unit box, reached by the cascades
    reach = float(train.cameras.c2w[:, :, 3].abs().max())
    assert 1.0 < reach <= 2 ** (train.cascades - 1)


def test_progress_reports_each_stage_and_ends_at_one(castle_run):
    result, calls = castle_run
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] < 0.1 and fractions[-1] == 1.0
    stages = [s for _, s in calls]
    assert [s for s in stages if s.startswith("copying photos")] == [f"copying photos ({i} / 6)" for i in range(1, 7)]
    for stage in ("extracting features (6 images)", "matching features (exhaustive)", "writing transforms.json"):
        assert stage in stages
    # one call per registered image from the initial pair on (the mapper may retry other initial pairs)
    mapping = [s for s in stages if s.startswith("mapping (")]
    assert mapping[0] == "mapping (2 / 6 images registered)" and mapping[-1] == "mapping (6 / 6 images registered)"
    assert len(mapping) >= 5
    assert stages[-1] == f"registered {len(result.registered)} / 6 images"


def test_cancel_while_matching_leaves_no_dataset(castle_subset, tmp_path):
    out = tmp_path / "new" / "dataset"
    with pytest.raises(Cancelled):
        process(castle_subset, out, SMALL, progress=cancel_at("matching"))
    assert not out.exists()


def test_cancel_while_mapping_empties_the_chosen_folder(castle_subset, tmp_path):
    """Raised from pycolmap's mapper callback: it comes out of the mapper, and the empty folder
    the user chose stays, empty."""
    out = tmp_path / "chosen"
    out.mkdir()
    with pytest.raises(Cancelled, match="mapping \\(3 / 6"):
        process(castle_subset, out, SMALL, progress=cancel_at("mapping (3"))
    assert out.is_dir() and list(out.iterdir()) == []


def test_import_colmap_model(castle_processed, tmp_path):
    out = tmp_path / "imported"
    calls = []
    result = import_colmap_model(castle_processed.out / "sparse" / "0", castle_processed.out / "images", out,
                                 progress=lambda fraction, stage: calls.append(fraction))
    assert result.registered == castle_processed.registered
    assert calls == sorted(calls) and calls[-1] == 1.0 and len(calls) == 6 + 2
    a = json.loads((out / "transforms.json").read_text())
    b = json.loads(castle_processed.transforms.read_text())
    assert a["frames"] == b["frames"]
    cancelled = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        import_colmap_model(castle_processed.out / "sparse" / "0", castle_processed.out / "images", cancelled,
                            progress=cancel_at("copying images (3"))
    assert not cancelled.exists()


def test_process_refuses_bad_input(tmp_path, castle_subset, castle_processed):
    with pytest.raises(DatasetError, match="not empty; onefield does not overwrite"):
        process(castle_subset, castle_processed.out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty: no photos here \\(empty folder\\)"):
        process(empty, tmp_path / "o1")
    (empty / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match=r"found only \['readme.md'\]"):
        process(empty, tmp_path / "o2")
    few = tmp_path / "few"
    few.mkdir()
    for photo in sorted(castle_subset.glob("*.[jJ][pP][gG]"))[:2]:
        shutil.copy(photo, few)
    with pytest.raises(DatasetError, match="2 image\\(s\\); structure-from-motion needs at least 3"):
        process(few, tmp_path / "o3", SMALL)
    broken = sorted(few.iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:2000])  # a truncated JPEG
    with pytest.raises(DatasetError, match=f"{broken.name}: cannot read this image.*Remove it"):
        process(few, tmp_path / "o4", SMALL)
    with pytest.raises(DatasetError, match="no such file or folder"):
        process(tmp_path / "nowhere", tmp_path / "o5")


def test_unrelated_photos_give_no_model(tmp_path, data_root, castle_subset):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for photo in sorted(castle_subset.glob("*.[jJ][pP][gG]"))[:2]:
        shutil.copy(photo, mixed)
    for photo in sorted((data_root / "strecha-Herz-Jesus-P8" / "images").iterdir())[:1]:
        shutil.copy(photo, mixed / f"herz_{photo.name}")
    with pytest.raises(DatasetError, match="found no model.*more overlap"):
        process(mixed, tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()  # a failed run leaves no half-written dataset behind


def test_video_frames_skip_blurred_ones(tmp_path):
    rng = np.random.default_rng(0)
    base = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    frames = []
    for i in range(12):
        frame = np.roll(base, i, axis=1)
        if i == 4:  # a blurred frame: box filter
            frame = (sum(np.roll(np.roll(frame.astype(float), dx, 0), dy, 1) for dx in range(-2, 3)
                         for dy in range(-2, 3)) / 25).astype(np.uint8)
        frames.append(frame)
    video = tmp_path / "walk.mp4"
    with imageio_v2.get_writer(video, fps=10, codec="libx264", quality=10, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
    assert sharpness(frames[4]) < 0.5 * sharpness(frames[5])
    names = extract_frames(video, tmp_path / "images", n_frames=4, max_side=48)
    assert len(names) == 4 and "frame_00004.jpg" not in names
    with Image.open(tmp_path / "images" / names[0]) as im:
        assert im.size == (48, 32)


def test_colmap_project_reader_on_a_real_model(castle_processed):
    """The sparse model pycolmap wrote, read as a COLMAP project, agrees with transforms.json."""
    from onefield.scenes.colmap_scene import read_colmap_scene
    from onefield.scenes.transforms import read_transforms

    colmap = read_colmap_scene(castle_processed.out, downscale=4)
    transforms = read_transforms(castle_processed.out, downscale=4)
    assert colmap.names == transforms.names and len(colmap) == 6
    assert colmap.cascades == transforms.cascades
    np.testing.assert_allclose(colmap.cameras.c2w.numpy(), transforms.cameras.c2w.numpy(), atol=1e-4)
    np.testing.assert_allclose(colmap.cameras.fx.numpy(), transforms.cameras.fx.numpy(), rtol=1e-5)
    assert colmap.cameras.distortion is not None  # OPENCV: k1, k2, p1, p2 estimated
