"""Photos or a video -> a posed dataset, by structure-from-motion with pycolmap on the CPU.

`process` copies the photos (or picks the sharpest video frame in each of `frames` windows) into
`<out>/images`, downscaled to `max_side`; runs SIFT extraction, matching (exhaustive for photos,
sequential for video) and incremental mapping; keeps the largest model as `<out>/sparse/0`; and
writes a nerfstudio-compatible `<out>/transforms.json` (OPENCV intrinsics per frame, OpenGL
poses) centred and scaled on the sparse points. It never writes into a folder that has content.

An optional `progress(fraction, stage)` callback follows the run (for the GUI's progress bar);
raising from it cancels. Whatever escapes `process` or `import_colmap_model` (a cancel, a
`DatasetError`, Ctrl-C) removes what the run wrote, so no half-written dataset is left behind.
"""

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from onefield.errors import UserError

from .colmap import ColmapModel, read_model
from .colmap_scene import colmap_intrinsics, normalize_scene
from .dataset import DatasetError
from .frames import fit_max_side

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MIN_REGISTERED = 3

Progress = Callable[[float, str], None]
"""progress(fraction of the whole run in [0, 1], short stage description); may raise to cancel"""


@dataclass
class ProcessConfig:
    max_side: int = 1600
    """photos larger than this (longest side, pixels) are downscaled before matching"""
    frames: int = 100
    """video: number of frames to keep (the sharpest of each equal window)"""
    matcher: str = "auto"
    """auto (exhaustive for photos, sequential for video), exhaustive or sequential"""
    camera_mode: str = "auto"
    """auto (single when every photo has the same size and EXIF camera, else per_image), single or per_image"""
    camera_model: str = "OPENCV"
    """COLMAP camera model to estimate: OPENCV, SIMPLE_RADIAL, RADIAL, PINHOLE or SIMPLE_PINHOLE"""
    num_threads: int = -1
    """CPU threads for pycolmap (-1: all)"""
    seed: int = 0
    """random seed of the mapper"""
    verbose: bool = False
    """show COLMAP's progress log (otherwise only its warnings and errors)"""
    refine_principal_point: str = "auto"
    """let bundle adjustment move the principal point: auto (when 8+ photos share one camera), yes or no"""


@dataclass
class ProcessResult:
    out: Path
    total: int
    registered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def transforms(self) -> Path:
        return self.out / "transforms.json"


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: the output folder is not empty; onefield does not overwrite a dataset. "
                           "Choose a new --out folder or remove this one.")


@contextmanager
def _removed_on_error(out: Path) -> Iterator[None]:
    """Create `out` (new or empty, see `_check_out`) and, if anything escapes, remove it again (or
    empty it when it already existed): everything in it is then this run's, half-written."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for child in out.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _span(progress: Progress | None, lo: float, hi: float) -> Progress:
    """`progress` for one stage: the stage's own fraction 0..1 mapped onto [lo, hi] of the run."""
    if progress is None:
        return lambda fraction, stage: None
    return lambda fraction, stage: progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), stage)


def _save_downscaled(src: Path, dst: Path, max_side: int) -> None:
    try:
        with Image.open(src) as im:
            im.load()
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{src}: cannot read this image ({error}). Remove it from the folder or replace "
                           "it with a valid photo.") from error
    fit_max_side(im, max_side).save(dst, quality=95)


def copy_photos(source: Path, images: Path, max_side: int, progress: Progress | None = None) -> list[str]:
    """Photos of `source` (sorted; other files ignored) into `images`, downscaled; their names."""
    photos = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        others = sorted(p.name for p in source.iterdir())[:5]
        raise DatasetError(f"{source}: no photos here ({'found only ' + str(others) if others else 'empty folder'}). "
                           f"onefield reads {', '.join(IMAGE_SUFFIXES)} files or a video.")
    images.mkdir(parents=True)
    report = _span(progress, 0.0, 1.0)
    names = []
    for i, photo in enumerate(photos):
        report(i / len(photos), f"copying photos ({i + 1} / {len(photos)})")
        name = photo.stem + ".jpg"
        _save_downscaled(photo, images / name, max_side)
        names.append(name)
    return names


def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image [H, W, 3] uint8: low for blurred frames."""
    g = frame.astype(np.float32).mean(-1)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def extract_frames(video: Path, images: Path, n_frames: int, max_side: int,
                   progress: Progress | None = None) -> list[str]:
    """The sharpest frame of each of `n_frames` equal windows of the video, as JPEGs."""
    import imageio.v2 as imageio_v2

    report = _span(progress, 0.0, 1.0)
    report(0.0, "scoring video frames")  # one pass of unknown length: the frame count is not known up front
    try:
        with imageio_v2.get_reader(video) as reader:
            scores = [sharpness(f[::4, ::4]) for f in reader]
    except (OSError, RuntimeError) as error:
        raise DatasetError(f"{video}: cannot decode this video ({error}). Convert it to H.264 mp4.") from error
    if not scores:
        raise DatasetError(f"{video}: the video has no frames.")
    windows = np.array_split(np.arange(len(scores)), min(n_frames, len(scores)))
    keep = {int(w[np.argmax([scores[i] for i in w])]) for w in windows if len(w)}
    images.mkdir(parents=True)
    names = []
    with imageio_v2.get_reader(video) as reader:
        for i, frame in enumerate(reader):
            if i in keep:
                report(0.5 + 0.5 * len(names) / len(keep), f"extracting video frames ({len(names) + 1} / {len(keep)})")
                name = f"frame_{i:05d}.jpg"
                fit_max_side(Image.fromarray(frame).convert("RGB"), max_side).save(images / name, quality=95)
                names.append(name)
    return names


def _camera_signature(path: Path) -> tuple:
    with Image.open(path) as im:
        exif = im.getexif()
        return im.size, exif.get(0x010F), exif.get(0x0110)  # size, EXIF make, EXIF model


def choose_camera_mode(config: ProcessConfig, source_photos: list[Path]) -> str:
    """'single' when every photo has one size and one EXIF camera (one device, its intrinsics
    shared and well constrained), else 'per_image' (mixed cameras, unknown intrinsics)."""
    if config.camera_mode != "auto":
        return config.camera_mode
    return "single" if len({_camera_signature(p) for p in source_photos}) == 1 else "per_image"


def run_sfm(out: Path, config: ProcessConfig, sequential: bool, camera_mode: str,
            progress: Progress | None = None) -> Path:
    """Extraction, matching and mapping into `<out>/sparse/0` (the largest model)."""
    import pycolmap

    if camera_mode not in ("single", "per_image"):
        raise UserError(f"camera_mode must be auto, single or per_image, got {camera_mode!r}")
    if config.refine_principal_point not in ("auto", "yes", "no"):
        raise UserError(f"refine_principal_point must be auto, yes or no, got {config.refine_principal_point!r}")
    n_images = sum(1 for _ in (out / "images").iterdir())
    quiet_level = pycolmap.logging.minloglevel
    if not config.verbose:
        pycolmap.logging.minloglevel = 1  # warnings and errors only
    try:
        return _sfm(out, config, sequential, camera_mode, n_images, _span(progress, 0.0, 1.0))
    finally:
        pycolmap.logging.minloglevel = quiet_level


def _sfm(out: Path, config: ProcessConfig, sequential: bool, camera_mode: str, n_images: int,
         report: Progress) -> Path:
    import pycolmap

    images, database = out / "images", out / "database.db"
    modes = {"single": pycolmap.CameraMode.SINGLE, "per_image": pycolmap.CameraMode.PER_IMAGE}
    refine_pp = config.refine_principal_point == "yes" or (
        config.refine_principal_point == "auto" and camera_mode == "single" and n_images >= 8)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = config.num_threads
    extraction.use_gpu = False
    report(0.0, f"extracting features ({n_images} images)")
    pycolmap.extract_features(database, images, camera_mode=modes[camera_mode], reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    report(0.3, f"matching features ({'sequential' if sequential else 'exhaustive'})")
    if sequential:
        pycolmap.match_sequential(database, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions()
    options.min_model_size = MIN_REGISTERED
    options.num_threads = config.num_threads
    options.random_seed = config.seed
    options.ba_refine_principal_point = refine_pp
    registered, most = 0, 0  # images in the model being built; the most any model reached

    def on_register(initial_pair: bool) -> None:
        # the mapper may restart from a new initial pair (a failed or a further model), so the
        # count restarts while the fraction keeps to the most any model reached
        nonlocal registered, most
        registered = 2 if initial_pair else min(registered + 1, n_images)
        most = max(most, registered)
        report(0.5 + 0.5 * most / n_images, f"mapping ({registered} / {n_images} images registered)")

    report(0.5, "mapping")
    # an exception raised in these callbacks propagates out of incremental_mapping (pycolmap 4.2)
    models = pycolmap.incremental_mapping(database, images, out / "sparse_all", options=options,
                                          initial_image_pair_callback=lambda: on_register(True),
                                          next_image_callback=lambda: on_register(False))
    if not models:
        raise DatasetError(f"{images}: structure-from-motion found no model (no image pair with enough matches). "
                           "Take photos with more overlap (each part of the scene in 3+ photos), less blur, "
                           "and texture in view.")
    best = max(models.values(), key=lambda m: m.num_reg_images())
    target = out / "sparse" / "0"
    target.mkdir(parents=True)
    best.write(target)
    shutil.rmtree(out / "sparse_all", ignore_errors=True)
    return target


def write_transforms(model: ColmapModel, model_dir: Path, out: Path, image_prefix: str = "images") -> Path:
    """nerfstudio-style transforms.json of a COLMAP model, normalised on its sparse points."""
    ordered = sorted(model.images.values(), key=lambda im: im.name)
    points = np.stack([p.xyz for p in model.points.values()]) if model.points else None
    c2w, transform, cascades = normalize_scene(np.stack([im.c2w() for im in ordered]), points)
    frames = []
    for im, pose in zip(ordered, c2w):
        cam = model.cameras[im.camera_id]
        fx, fy, cx, cy, k1, k2, p1, p2 = colmap_intrinsics(cam, model_dir)
        gl = np.eye(4)
        gl[:3, :4] = pose * np.array([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
        frames.append({"file_path": f"{image_prefix}/{im.name}", "transform_matrix": gl.tolist(),
                       "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": cam.width, "h": cam.height,
                       "k1": k1, "k2": k2, "p1": p1, "p2": p2})
    meta = {"camera_model": "OPENCV", "aabb": [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], "aabb_scale": 2 ** (cascades - 1),
            "applied_transform": transform.tolist(), "frames": frames}
    path = out / "transforms.json"
    path.write_text(json.dumps(meta, indent=1))
    return path


def process(source: str | Path, out: str | Path, config: ProcessConfig = ProcessConfig(),
            progress: Progress | None = None) -> ProcessResult:
    """Photos folder or video -> `<out>` with images/, sparse/0 and transforms.json.

    `progress` gets non-decreasing fractions, ending with 1.0 once the dataset is complete; if it
    raises (or anything else does), `out` is removed, or emptied when it existed (empty) before."""
    source, out = Path(source), Path(out)
    start = time.perf_counter()
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder.")
    _check_out(out)
    is_video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    if source.is_file() and not is_video:
        raise DatasetError(f"{source}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of photos.")
    # shares of the run per stage, roughly as the time goes on a few dozen photos
    prepare, sfm, write = (0.0, 0.1), (0.1, 0.95), (0.95, 1.0)
    with _removed_on_error(out):
        if is_video:
            names = extract_frames(source, out / "images", config.frames, config.max_side, _span(progress, *prepare))
            camera_mode = "single" if config.camera_mode == "auto" else config.camera_mode
        else:
            names = copy_photos(source, out / "images", config.max_side, _span(progress, *prepare))
            camera_mode = choose_camera_mode(config, sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if len(names) < MIN_REGISTERED:
            raise DatasetError(f"{source}: {len(names)} image(s); structure-from-motion needs at least {MIN_REGISTERED} "
                               "overlapping photos (20-100 is typical).")
        matcher = config.matcher if config.matcher != "auto" else ("sequential" if is_video else "exhaustive")
        if matcher not in ("exhaustive", "sequential"):
            raise UserError(f"matcher must be auto, exhaustive or sequential, got {config.matcher!r}")
        model_dir = run_sfm(out, config, matcher == "sequential", camera_mode, _span(progress, *sfm))
        model = read_model(model_dir)
        registered = sorted(im.name for im in model.images.values())
        result = ProcessResult(out, len(names), registered, sorted(set(names) - set(registered)))
        if len(registered) < MIN_REGISTERED:
            raise DatasetError(f"{out}: only {len(registered)} of {len(names)} images registered; failed: "
                               f"{result.failed[:10]}. Add overlapping photos of the same scene.")
        _span(progress, *write)(0.0, "writing transforms.json")
        write_transforms(model, model_dir, out)
        result.seconds = time.perf_counter() - start
        _span(progress, *write)(1.0, f"registered {len(registered)} / {len(names)} images")
    return result


def import_colmap_model(model_dir: str | Path, images: str | Path, out: str | Path,
                        progress: Progress | None = None) -> ProcessResult:
    """An existing COLMAP model and its images -> `<out>` with the same layout as `process`
    (`progress` and the clean-up on errors as there)."""
    model_dir, images, out = Path(model_dir), Path(images), Path(out)
    _check_out(out)
    model = read_model(model_dir)
    missing = [im.name for im in model.images.values() if not (images / im.name).is_file()]
    if missing:
        raise DatasetError(f"{images}: {len(missing)} image(s) of the model are missing, e.g. {missing[:3]}.")
    report = _span(progress, 0.0, 1.0)
    total, copied = sum(1 for p in images.rglob("*") if p.is_file()), 0

    def copy_one(src: str, dst: str) -> None:
        nonlocal copied
        report(0.9 * copied / total, f"copying images ({copied + 1} / {total})")
        shutil.copy2(src, dst)
        copied += 1

    with _removed_on_error(out):
        shutil.copytree(images, out / "images", copy_function=copy_one)
        shutil.copytree(model_dir, out / "sparse" / "0")
        report(0.9, "writing transforms.json")
        write_transforms(model, model_dir, out)
        names = sorted(im.name for im in model.images.values())
        report(1.0, f"imported {len(names)} images")
    return ProcessResult(out, len(names), names, [])
