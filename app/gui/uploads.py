"""Check what a browser uploaded and stage it, all or nothing, as photos or one video.

`stage_upload` takes Gradio's temporary files with their client names and accepts exactly one of:
photos, one .zip of photos (folders flattened, Mac/Windows junk skipped) or one video. Type, count
and size caps are checked before anything is written; the files are then copied or unpacked into
a fresh `.staging-*` folder beside `dest`, checked there (images fully decoded, video container
signature, zip-slip, zip bombs) and renamed to `dest`. Any failure removes the staging folder, so
a rejection leaves nothing behind. Rejections are `UploadRejected`, one line naming the file.
"""

import shutil
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Literal, Sequence

from PIL import Image

from onefield.errors import UserError
from onefield.scenes.sfm import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MiB = 1 << 20
ACCEPTED = f"photos ({', '.join(IMAGE_SUFFIXES)}), one .zip of photos, or one video ({', '.join(VIDEO_SUFFIXES)})"
ZIP_JUNK = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini"}
# Only the decoders for the accepted suffixes (JPEG also opens phones' multi-picture MPO files), so
# a renamed EPS/PSD/... file never reaches its plugin (EPS would run Ghostscript).
PIL_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
# Box types that open an ISO-BMFF (mp4/m4v) or QuickTime (mov) file at offset 4; older QuickTime
# writers start with moov/mdat/wide/free instead of ftyp.
BMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free"}


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int = 200 * MiB
    """each uploaded file, and each zip entry, at most this big"""
    max_total_bytes: int = 1024 * MiB
    """all uploaded files together"""
    max_files: int = 2000
    """photos per upload (files, or images in the zip)"""
    max_zip_entries: int = 5000
    """entries in a zip, junk and folders included"""
    max_unpacked_bytes: int = 2048 * MiB
    """declared uncompressed size of a zip, all entries together"""
    max_ratio: float = 200
    """declared uncompressed / compressed size of one zip entry"""
    max_pixels: int = 100_000_000
    """width * height of one image, read from its header before decoding"""


class UploadRejected(UserError):
    """An upload that breaks a rule; the message names the file and what to upload instead."""


@dataclass
class StagedUpload:
    kind: Literal["photos", "video"]
    folder: Path
    """photos: a folder of only the decoded images; video: the folder holding the one video"""
    names: list[str]
    bytes: int


def stage_upload(files: Sequence[tuple[Path, str]], dest: Path, limits: UploadLimits = UploadLimits()) -> StagedUpload:
    """Check `files` ((temporary path, client file name) pairs) and move them into `dest` (which must not exist)."""
    if not files:
        raise UploadRejected(f"no files uploaded; upload {ACCEPTED}.")
    if dest.exists():
        raise UploadRejected(f"{dest} already exists; choose a new name for this upload.")
    if len(files) > limits.max_files:
        raise UploadRejected(f"{len(files)} files uploaded, at most {limits.max_files} allowed; upload fewer photos.")
    named = [(Path(path), _base_name(original, original)) for path, original in files]
    total = 0
    for path, name in named:
        if Path(name).suffix.lower() not in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES, ".zip"):
            raise UploadRejected(f"{name}: this file type is not accepted; upload {ACCEPTED}.")
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise UploadRejected(f"{name}: {size / MiB:.1f} MiB, over the {limits.max_file_bytes / MiB:.0f} MiB "
                                 "limit per file; upload a smaller file.")
        total += size
    if total > limits.max_total_bytes:
        raise UploadRejected(f"the {len(named)} uploaded files: {total / MiB:.1f} MiB in all, over the "
                             f"{limits.max_total_bytes / MiB:.0f} MiB limit per upload; upload fewer or smaller files.")
    suffixes = [Path(n).suffix.lower() for _, n in named]
    videos, zips = sum(s in VIDEO_SUFFIXES for s in suffixes), suffixes.count(".zip")
    if (videos or zips) and len(named) > 1:
        raise UploadRejected(f"{', '.join(n for _, n in named[:3])}: mixed or several videos/zips; "
                             f"upload {ACCEPTED}, not a mix.")
    _unique([(n, n) for _, n in named])

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        if videos:
            (path, name), = named
            shutil.copyfile(path, staging / name)
            _check_video(staging / name, name)
            labels = {name: name}
        elif zips:
            (path, name), = named
            labels = _unpack_zip(path, name, staging, limits)
        else:
            labels = {name: name for _, name in named}
            for path, name in named:
                shutil.copyfile(path, staging / name)
        if not videos:
            for name, label in labels.items():
                _check_image(staging / name, label, limits)
        written = sum((staging / name).stat().st_size for name in labels)
        if dest.exists():  # created while we checked; rename would replace an empty folder
            raise UploadRejected(f"{dest} already exists; choose a new name for this upload.")
        staging.rename(dest)
    except BaseException:  # anything, even a bug or Ctrl-C: never leave a half-written upload
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedUpload("video" if videos else "photos", dest, sorted(labels), written)


def _base_name(original: str, label: str) -> str:
    """The file name without any folders (client names may carry / or \\); odd names rejected."""
    name = original.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name.startswith(".") or any(ord(c) < 32 or ord(c) == 127 for c in name) \
            or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise UploadRejected(f"{label!r}: not a usable file name (empty, hidden, control characters or too long); "
                             "rename the file and upload it again.")
    return name


def _unique(pairs: list[tuple[str, str]]) -> None:
    """Reject two (name, label) pairs with the same stem, ignoring case: the dataset step saves every
    photo as <stem>.jpg, and a case-insensitive disk would merge them too."""
    seen: dict[str, str] = {}
    for name, label in pairs:
        key = Path(name).stem.lower()
        if key in seen:
            raise UploadRejected(f"{seen[key]} and {label}: two photos with the same name; rename one and "
                                 "upload again.")
        seen[key] = label


def _unpack_zip(src: Path, label: str, out: Path, limits: UploadLimits) -> dict[str, str]:
    """Extract the photos of zip `src` flat into `out`; {written name: 'zip:entry'}. Checks every
    header before extracting anything, then counts the bytes actually inflated."""
    try:
        archive = zipfile.ZipFile(src)  # does zipfile.is_zipfile's check, then parses the directory
    except zipfile.BadZipFile as error:
        raise UploadRejected(f"{label}: not a readable zip file ({error}); upload a .zip of photos.") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_entries:
            raise UploadRejected(f"{label}: {len(infos)} entries, at most {limits.max_zip_entries} allowed; "
                                 "zip fewer files.")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_unpacked_bytes:
            raise UploadRejected(f"{label}: unpacks to {declared / MiB:.0f} MiB, over the "
                                 f"{limits.max_unpacked_bytes / MiB:.0f} MiB limit; zip fewer or smaller photos.")
        chosen: list[tuple[str, zipfile.ZipInfo]] = []
        for info in infos:
            where = f"{label}:{info.filename}"
            parts = info.filename.replace("\\", "/").split("/")
            # Rejected although we flatten: no honest zip has such entries, so the archive is hostile.
            if info.filename.startswith(("/", "\\")) or PureWindowsPath(info.filename).drive or ".." in parts:
                raise UploadRejected(f"{where}: entry points outside the zip's folder; rebuild the zip from a "
                                     "folder of photos.")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UploadRejected(f"{where}: symbolic link in the zip; zip the photos themselves.")
            if info.is_dir() or any(p.lower() in ZIP_JUNK for p in parts) or parts[-1].startswith("._"):
                continue
            if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                raise UploadRejected(f"{where}: not a photo ({', '.join(IMAGE_SUFFIXES)}); remove it from the zip.")
            if info.flag_bits & 0x1:
                raise UploadRejected(f"{where}: encrypted entry; zip the photos without a password.")
            if info.file_size > limits.max_file_bytes:
                raise UploadRejected(f"{where}: {info.file_size / MiB:.1f} MiB, over the "
                                     f"{limits.max_file_bytes / MiB:.0f} MiB limit per file; use smaller photos.")
            if info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise UploadRejected(f"{where}: compressed over {limits.max_ratio:.0f}x (a zip bomb?); "
                                     "zip ordinary photos.")
            chosen.append((_base_name(parts[-1], where), info))
        _unique([(name, f"{label}:{info.filename}") for name, info in chosen])
        if not chosen:
            raise UploadRejected(f"{label}: no photos ({', '.join(IMAGE_SUFFIXES)}) in the zip; "
                                 "zip a folder of photos.")
        if len(chosen) > limits.max_files:
            raise UploadRejected(f"{label}: {len(chosen)} photos, at most {limits.max_files} allowed; "
                                 "zip fewer photos.")
        for name, info in chosen:
            where = f"{label}:{info.filename}"
            try:
                # zipfile reads at most the declared size (a lying header then fails its CRC, a
                # BadZipFile), so the caps checked on the headers above hold for what is written
                with archive.open(info) as entry, open(out / name, "xb") as target:
                    shutil.copyfileobj(entry, target, MiB)
            # NotImplementedError is zipfile's answer to a compression method it lacks (e.g. PPMd)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
                raise UploadRejected(f"{where}: corrupt or unsupported zip entry ({error}); rebuild the zip.") from None
    return {name: f"{label}:{info.filename}" for name, info in chosen}


def _check_image(path: Path, label: str, limits: UploadLimits) -> None:
    """Decode `path` fully, after checking its pixel count from the header; nothing is kept in memory."""
    too_big = f"over the {limits.max_pixels / 1e6:g} Mpx limit per photo; downscale it and upload it again."
    try:
        with Image.open(path, formats=PIL_FORMATS) as image:
            if image.width * image.height > limits.max_pixels:
                raise UploadRejected(f"{label}: {image.width}x{image.height} px, {too_big}")
            image.verify()  # structure and checksums (PNG CRCs) before the full decode
        with Image.open(path, formats=PIL_FORMATS) as image:
            image.load()  # a truncated or corrupt file fails here
    except UploadRejected:
        raise
    except Image.DecompressionBombError:  # PIL's own guard (over 2 * Image.MAX_IMAGE_PIXELS) fired first
        raise UploadRejected(f"{label}: {too_big}") from None
    except Exception as error:  # decoders raise many types (OSError, SyntaxError, struct.error...) on bad data
        detail = "not a JPEG, PNG, TIFF, BMP or WebP file" if isinstance(error, Image.UnidentifiedImageError) else error
        raise UploadRejected(f"{label}: not a readable image ({detail}); upload the original photo.") from None


def _check_video(path: Path, label: str) -> None:
    """A plausible container signature: ISO-BMFF/QuickTime box at offset 4, EBML (mkv/webm), RIFF AVI.
    Only a sniff; decoding is left to the frame extractor."""
    with open(path, "rb") as file:
        head = file.read(12)
    if not (head[4:8] in BMFF_BOXES or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4], head[8:12]) == (b"RIFF", b"AVI ")):
        raise UploadRejected(f"{label}: not a video container (mp4, mov, mkv, webm or avi); "
                             "upload the original video.")
