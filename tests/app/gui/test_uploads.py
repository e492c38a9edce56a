"""Upload checks: what is accepted, each rejection names the file, and a rejection leaves nothing behind."""

import io
import struct
import uuid
import zipfile
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from onefield.app.gui.uploads import StagedUpload, UploadLimits, UploadRejected, stage_upload


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def upload(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    """A file the way Gradio hands it over: a temporary path (no useful name) plus the client's name."""
    path = tmp_path / "gradio" / uuid.uuid4().hex
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path, name


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_zip(data: bytes, local: int, central: int, fmt: str, value: int) -> bytes:
    """Overwrite a field of the first entry's local header and central-directory record."""
    data = bytearray(data)
    struct.pack_into(fmt, data, local, value)
    struct.pack_into(fmt, data, data.index(b"PK\x01\x02") + central, value)
    return bytes(data)


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (no pixel data needed to read the header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b"")


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "uploads" / "u1"


def rejected(files, dest: Path, *words: str, limits: UploadLimits = UploadLimits()) -> str:
    """Stage `files`, expect a rejection mentioning every word, and check nothing stayed behind."""
    with pytest.raises(UploadRejected) as caught:
        stage_upload(files, dest, limits)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert_clean(dest)
    return message


def assert_clean(dest: Path) -> None:
    assert not dest.exists()
    assert not list(dest.parent.glob(".staging-*"))


# --- accepted ----------------------------------------------------------------------------------

def test_photos_are_copied_with_their_names(tmp_path, dest):
    files = [upload(tmp_path, "a.png", image_bytes("PNG")),
             upload(tmp_path, "C:\\Users\\me\\b.JPG", image_bytes("JPEG"))]  # folders are dropped
    staged = stage_upload(files, dest)
    assert staged == StagedUpload("photos", dest, ["a.png", "b.JPG"], sum(p.stat().st_size for p, _ in files))
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.JPG"]
    for name in staged.names:
        with Image.open(dest / name) as image:
            assert image.size == (8, 6)
    assert (dest / "a.png").read_bytes() == files[0][0].read_bytes()
    assert not list(dest.parent.glob(".staging-*"))


def test_zip_is_flattened_and_junk_skipped(tmp_path, dest):
    data = zip_bytes({"set/": b"", "set/a.png": image_bytes("PNG"), "set/deeper/b.jpg": image_bytes("JPEG"),
                      "__MACOSX/set/._a.png": b"\x00\x05\x16\x07junk", "set/.DS_Store": b"junk", "Thumbs.db": b"junk"})
    staged = stage_upload([upload(tmp_path, "photos.zip", data)], dest)
    assert (staged.kind, staged.folder, staged.names) == ("photos", dest, ["a.png", "b.jpg"])
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.jpg"]
    with Image.open(dest / "b.jpg") as image:
        assert image.format == "JPEG" and image.size == (8, 6)


def test_video_is_staged_alone(tmp_path, dest):
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, np.zeros((4, 16, 16, 3), np.uint8), fps=5)
    staged = stage_upload([upload(tmp_path, "My Clip.MP4", path.read_bytes())], dest)
    assert staged == StagedUpload("video", dest, ["My Clip.MP4"], path.stat().st_size)
    assert [p.name for p in dest.iterdir()] == ["My Clip.MP4"]


# --- rejected before anything is written ---------------------------------------------------------

def test_empty_upload(dest):
    rejected([], dest, "no files uploaded")


@pytest.mark.parametrize("name", ["setup.exe", "notes.txt", "noext"])
def test_wrong_type(tmp_path, dest, name):
    rejected([upload(tmp_path, name, b"MZ\x90\x00")], dest, name, "not accepted")


@pytest.mark.parametrize("name", ["", "dir/", ".hidden.png", "a\x00.png", "a\nb.png", "x" * 300 + ".png"])
def test_unusable_name(tmp_path, dest, name):
    rejected([upload(tmp_path, name, image_bytes())], dest, repr(name), "not a usable file name")


def test_per_file_size_cap(tmp_path, dest):
    big = image_bytes(size=(64, 64))
    rejected([upload(tmp_path, "small.png", image_bytes()), upload(tmp_path, "big.png", big)], dest,
             "big.png", "limit per file", limits=UploadLimits(max_file_bytes=len(big) - 1))


def test_total_size_cap(tmp_path, dest):
    files = [upload(tmp_path, f"{i}.png", image_bytes()) for i in range(3)]
    size = files[0][0].stat().st_size
    rejected(files, dest, "3 uploaded files", "limit per upload",
             limits=UploadLimits(max_file_bytes=size, max_total_bytes=3 * size - 1))


def test_too_many_files(tmp_path, dest):
    files = [upload(tmp_path, f"{i}.png", image_bytes()) for i in range(3)]
    rejected(files, dest, "3 files", "at most 2", limits=UploadLimits(max_files=2))


@pytest.mark.parametrize("names", [["clip.mp4", "a.png"], ["a.zip", "b.zip"], ["a.mp4", "b.mov"], ["a.zip", "b.png"]])
def test_mixing_kinds(tmp_path, dest, names):
    data = {".mp4": b"\x00\x00\x00\x18ftypisom", ".mov": b"\x00\x00\x00\x18ftypqt  ",
            ".zip": zip_bytes({"x.png": image_bytes()}), ".png": image_bytes()}
    files = [upload(tmp_path, name, data[Path(name).suffix]) for name in names]
    rejected(files, dest, *names, "one video", "not a mix")


def test_same_name_twice(tmp_path, dest):
    # Same stem, different suffix: the dataset step writes both as a.jpg.
    rejected([upload(tmp_path, "a.png", image_bytes()), upload(tmp_path, "A.jpg", image_bytes("JPEG"))], dest,
             "a.png and A.jpg", "same name")


def test_dest_exists(tmp_path, dest):
    # Reported before any file is read: the bad image would otherwise be the complaint.
    dest.mkdir(parents=True)
    with pytest.raises(UploadRejected, match="already exists"):
        stage_upload([upload(tmp_path, "fake.png", b"not an image")], dest)
    assert list(dest.iterdir()) == [] and not list(dest.parent.glob(".staging-*"))


# --- rejected by content -----------------------------------------------------------------------

def test_text_named_jpg(tmp_path, dest):
    rejected([upload(tmp_path, "a.png", image_bytes()), upload(tmp_path, "fake.jpg", b"hello, not an image\n")],
             dest, "fake.jpg", "not a readable image")


def test_truncated_jpeg(tmp_path, dest):
    data = image_bytes("JPEG", size=(64, 64))
    rejected([upload(tmp_path, "cut.jpg", data[: len(data) // 2])], dest, "cut.jpg", "not a readable image")


def test_renamed_format_outside_the_accepted_decoders(tmp_path, dest):
    rejected([upload(tmp_path, "anim.png", image_bytes("GIF"))], dest, "anim.png", "not a readable image")


def test_over_max_pixels(tmp_path, dest):
    rejected([upload(tmp_path, "wide.png", image_bytes(size=(20, 20)))], dest, "wide.png", "20x20 px",
             "Mpx limit", limits=UploadLimits(max_pixels=399))


def test_pil_decompression_bomb_guard(tmp_path, dest):
    # 400 Mpx claimed in a 50-byte file: PIL refuses it in Image.open, before our own check.
    rejected([upload(tmp_path, "bomb.png", png_with_size(20_000, 20_000))], dest, "bomb.png", "Mpx limit")


def test_video_without_container_signature(tmp_path, dest):
    rejected([upload(tmp_path, "clip.mp4", b"just some text, long enough")], dest, "clip.mp4", "not a video")


def test_unexpected_error_still_cleans_up(tmp_path, dest):
    # A folder where a file is expected fails inside shutil.copyfile, after a.png was staged.
    folder = tmp_path / "gradio" / "folder"
    folder.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        stage_upload([upload(tmp_path, "a.png", image_bytes()), (folder, "b.png")], dest)
    assert_clean(dest)


# --- zips ----------------------------------------------------------------------------------------

def test_not_a_zip(tmp_path, dest):
    rejected([upload(tmp_path, "photos.zip", b"PK but not really a zip")], dest, "photos.zip", "not a readable zip")


@pytest.mark.parametrize("entry", ["../evil.png", "set/../../evil.png", "/etc/x.png", "C:/x.png",
                                   "\\\\host\\share\\x.png"])
def test_zip_slip(tmp_path, dest, entry):
    data = zip_bytes({"ok.png": image_bytes(), entry: image_bytes()})
    rejected([upload(tmp_path, "photos.zip", data)], dest, f"photos.zip:{entry}", "outside the zip")
    assert not (tmp_path / "uploads" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_zip_symlink(tmp_path, dest):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, image_bytes())  # a real image, so only the symlink check can catch it
    rejected([upload(tmp_path, "photos.zip", buffer.getvalue())], dest, "photos.zip:link.png", "symbolic link")


def test_zip_bomb_ratio(tmp_path, dest):
    data = zip_bytes({"bomb.png": bytes(5_000_000)})
    assert len(data) < 10_000
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:bomb.png", "compressed over 200x")


def test_zip_unpacked_size_cap(tmp_path, dest):
    noise = np.random.default_rng(0).bytes(600_000)  # incompressible: the ratio check does not fire
    data = zip_bytes({"a.png": noise, "b.png": noise})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip", "unpacks to", "limit",
             limits=UploadLimits(max_unpacked_bytes=1_000_000))


def test_zip_entry_size_cap(tmp_path, dest):
    # 200 kB that deflate about 4x: the zip is under the per-file cap, the entry is not.
    big = np.random.default_rng(0).integers(0, 4, 200_000, np.uint8).tobytes()
    data = zip_bytes({"a.png": image_bytes(), "big.png": big})
    assert len(data) < 100_000
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:big.png", "limit per file",
             limits=UploadLimits(max_file_bytes=100_000))


def test_zip_too_many_entries(tmp_path, dest):
    data = zip_bytes({f"{i}.png": image_bytes() for i in range(4)})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip", "4 entries", "at most 3",
             limits=UploadLimits(max_zip_entries=3))


def test_zip_too_many_photos(tmp_path, dest):
    data = zip_bytes({"__MACOSX/": b"", **{f"{i}.png": image_bytes() for i in range(3)}})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip", "3 photos", "at most 2",
             limits=UploadLimits(max_files=2))


def test_zip_duplicate_names(tmp_path, dest):
    data = zip_bytes({"day1/x.png": image_bytes(), "day2/x.png": image_bytes()})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:day1/x.png and photos.zip:day2/x.png")


def test_zip_non_image_entry(tmp_path, dest):
    data = zip_bytes({"a.png": image_bytes(), "notes.txt": b"hi"})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:notes.txt", "not a photo")


def test_zip_without_photos(tmp_path, dest):
    rejected([upload(tmp_path, "photos.zip", zip_bytes({"__MACOSX/._a.png": b"x", "d/": b""}))], dest,
             "photos.zip", "no photos")


def test_zip_corrupt_image_after_a_good_one(tmp_path, dest):
    # a.png is already unpacked when b.png fails: the staging folder must go with it.
    data = zip_bytes({"a.png": image_bytes(), "b.png": image_bytes()[:40]})
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:b.png", "not a readable image")


def test_zip_lying_header(tmp_path, dest):
    # The headers declare 10 bytes fewer than the entry holds; unpacking must not trust them.
    good = image_bytes()
    data = patch_zip(zip_bytes({"a.png": good}, zipfile.ZIP_STORED), 22, 24, "<I", len(good) - 10)
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:a.png", "rebuild the zip")


def test_zip_encrypted_entry(tmp_path, dest):
    data = patch_zip(zip_bytes({"a.png": image_bytes()}), 6, 8, "<H", 0x1)
    rejected([upload(tmp_path, "photos.zip", data)], dest, "photos.zip:a.png", "encrypted")
