"""What the GUI's View and Compare pages show (and the CLI may reuse): a free orbit around a run's
scene rendered as colour, depth or opacity, turntable videos, and a summary table of runs with the
same camera rendered by each.

The orbit frame comes from the run's training cameras: centred on the scene box, `up` the mean
image-up direction of the training views, azimuth measured from a horizontal axis fixed by `up`
alone. `evaluate.turntable_cameras` builds its frames from the same `Orbit`, so the View page's
default orbit at azimuth 0 is the first frame of `onefield render`'s turntable.
"""

import dataclasses
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imageio.v2 as imageio_v2
import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open
from torch import Tensor

from onefield.errors import UserError
from onefield.renderers.image import expected_depth
from onefield.scenes import Cameras
from onefield.scenes.rays import look_at, orbit_up

from .checkpoint import MANIFEST, NOT_FIELD, find_checkpoint, load_progress, load_weights
from .runs import RunConfig, build_model, make_trainer, torch_device
from .trainer import Trainer

Output = Literal["rgb", "depth", "opacity"]
OUTPUTS: tuple[Output, ...] = ("rgb", "depth", "opacity")
PREVIEW_SIZE = 64  # longer side while a slider is dragged: ~1/4 of the rays of a 128-px frame
CACHED_VIEWS = 4  # open runs kept by `open_view` (each holds a field, no images)


def to_uint8(image: Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_video(frames: Sequence[np.ndarray], path: Path, fps: int) -> Path:
    """H.264 mp4 of uint8 frames [H, W, 3], cropped to even sizes (yuv420p needs them)."""
    h, w = frames[0].shape[:2]
    with imageio_v2.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame[: h - h % 2, : w - w % 2])
    return Path(path)


# ---- orbits ---------------------------------------------------------------------------------------
def horizontal_axes(up: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit axes [3] orthogonal to `up` [3]: azimuth 0 along the first, 90 along the second."""
    ref = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = torch.nn.functional.normalize(torch.linalg.cross(up, ref), dim=0)
    return a, torch.linalg.cross(up, a)


@dataclass
class Orbit:
    """A camera on a sphere around the scene's centre, looking at it, `up` up in the image."""

    azimuth: float  # degrees about `up`, from the frame's first horizontal axis
    elevation: float  # degrees above the horizontal plane, in (-90, 90)
    distance: float  # world units from the centre
    fov: float  # vertical field of view, degrees

    def __post_init__(self) -> None:
        if not abs(self.elevation) < 90:
            raise UserError(f"elevation must be strictly between -90 and 90 degrees, got {self.elevation}")
        if not self.distance > 0:
            raise UserError(f"distance must be positive, got {self.distance}")
        if not 0 < self.fov < 180:
            raise UserError(f"field of view must be between 0 and 180 degrees, got {self.fov}")

    def eye(self, center: Tensor, up: Tensor) -> Tensor:
        """[3] the camera centre for the frame `center` [3], `up` [3] (unit)."""
        a, b = horizontal_axes(up)
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        ring = self.distance * math.cos(el)
        return center + up * (self.distance * math.sin(el)) + ring * (math.cos(az) * a + math.sin(az) * b)

    def c2w(self, center: Tensor, up: Tensor) -> Tensor:
        """[3, 4] camera-to-world (OpenCV axes) looking from `eye` at `center`."""
        return look_at(self.eye(center, up), center, up)

    def cameras(self, center: Tensor, up: Tensor, width: int, height: int, near: float = 0.0,
                far: float = 1e10) -> Cameras:
        """One pinhole camera (square pixels, centred principal point) at this orbit."""
        fy = 0.5 * height / math.tan(math.radians(self.fov) / 2)
        return Cameras(self.c2w(center, up)[None], fy, fy, width / 2, height / 2, width, height, near, far)

    @classmethod
    def from_camera(cls, cameras: Cameras, index: int, center: Tensor, up: Tensor) -> "Orbit":
        """The orbit whose eye is camera `index`'s and whose fov is its vertical one (roll about the
        viewing axis, and an off-centre gaze, are not representable and are dropped)."""
        offset = cameras.c2w[index, :, 3].float().cpu() - center  # [3]
        a, b = horizontal_axes(up)
        distance = float(offset.norm())
        fov = 2 * math.degrees(math.atan(0.5 * cameras.height / float(cameras.fy[index])))
        return cls(math.degrees(math.atan2(float(offset @ b), float(offset @ a))),
                   math.degrees(math.asin(max(-1.0, min(1.0, float(offset @ up) / distance)))), distance, fov)


def default_orbit(train: Cameras, center: Tensor) -> Orbit:
    """Azimuth 0 at the training cameras' median distance from `center` [3] and their mean height
    above it (as an elevation), with the first camera's vertical field of view."""
    up = orbit_up(train)
    offsets = train.c2w[:, :, 3].float().cpu() - center  # [N, 3]
    radius = float(offsets.norm(dim=-1).median())
    height = float((offsets @ up).mean())
    ring = math.sqrt(max(radius**2 - height**2, 1e-6))  # cameras on average higher than far: nearly overhead
    fov = 2 * math.degrees(math.atan(0.5 * train.height / float(train.fy[0])))
    return Orbit(0.0, math.degrees(math.atan2(height, ring)), math.hypot(height, ring), fov)


# ---- images ---------------------------------------------------------------------------------------
def turbo(x: np.ndarray) -> np.ndarray:
    """[..., 3] float colours of the Turbo colormap at x [...] in [0, 1] (Google's polynomial fit)."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    powers = np.concatenate([x**k for k in range(6)], -1)  # [..., 6]
    coeffs = np.array([[0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
                       [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
                       [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973]])
    return np.clip(powers @ coeffs.T, 0.0, 1.0)


def colorize_depth(depth: np.ndarray, opacity: np.ndarray, near: float) -> np.ndarray:
    """uint8 [H, W, 3]: the expected depth [H, W] through Turbo from `near` to the 99th percentile of
    solid pixels (opacity > 0.5; a few stray far samples do not wash out the map), darkened by
    opacity [H, W] so empty space is black."""
    solid = opacity > 0.5
    far = float(np.percentile(depth[solid], 99)) if solid.any() else float(depth.max(initial=near))
    x = (depth - near) / max(far - near, 1e-6)
    return (turbo(x) * np.clip(opacity, 0, 1)[..., None] * 255 + 0.5).astype(np.uint8)


def side_by_side(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, gap: int = 2) -> np.ndarray:
    """uint8 [H, sum W + gaps, 3]: `images` [H_i, W_i, 3] left to right on mid grey (shorter ones
    top-aligned), each labelled in its top-left corner when `labels` are given."""
    height = max(im.shape[0] for im in images)
    width = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = np.full((height, width, 3), 128, np.uint8)
    x = 0
    for im in images:
        canvas[: im.shape[0], x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    if not labels:
        return canvas
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    x = 0
    for im, label in zip(images, labels):
        box = draw.textbbox((x + 2, 1), label)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(0, 0, 0))
        draw.text((x + 2, 1), label, fill=(255, 255, 255))
        x += im.shape[1] + gap
    return np.asarray(picture)


# ---- an open run ----------------------------------------------------------------------------------
def checkpoint_key(folder: Path) -> tuple[int | None, int]:
    """(step from the manifest, or None for a legacy checkpoint without one; mtime of the weights):
    changes whenever a new checkpoint is saved, so a run still training is re-read."""
    manifest = folder / MANIFEST
    step = json.loads(manifest.read_text())["step"] if manifest.is_file() else None
    return step, (folder / "model.safetensors").stat().st_mtime_ns


class RunView:
    """A run's newest checkpoint, opened once and rendered from any orbit."""

    def __init__(self, run_dir: Path, device: str = "cpu", previous: "RunView | None" = None):
        self.run_dir = Path(run_dir).resolve()
        self.config = RunConfig.load(self.run_dir)
        self.device = torch_device(device)
        checkpoint = find_checkpoint(self.run_dir)
        self.key = checkpoint_key(checkpoint)
        model, grid = build_model(self.config, self.device)
        if previous is not None and previous.config == self.config:
            poses, self.held_out_as_read = previous.trainer.train_data, previous.held_out_as_read  # no re-decoding
        else:
            train, held_out, _ = self.config.data.load()
            self.held_out_as_read: Cameras | None = held_out.cameras if held_out is not None else None
            # The trainer only renders here, which reads poses, never pixels: a zero-stride stand-in
            # keeps the training images (hundreds of MB at full size) out of the cache.
            n, h, w = len(train), train.cameras.height, train.cameras.width
            stand_in = torch.zeros(1, 1, 1, 4, dtype=torch.uint8, device=self.device).expand(n, h, w, 4)
            poses = dataclasses.replace(train, images=stand_in)
        self.train_cameras: Cameras = poses.cameras
        self.trainer = make_trainer(model, grid, poses, self.config.trainer_config(), None, self.device)
        load_weights(self.trainer, checkpoint)
        load_progress(self.trainer, checkpoint)
        # held-out cameras where the evaluation sees them (refined poses: like their nearest training view)
        self.held_out_cameras = (None if self.held_out_as_read is None
                                 else self.trainer.refined(self.held_out_as_read).to("cpu"))
        aabb = torch.tensor(self.config.aabb)
        self.center: Tensor = (aabb[:3] + aabb[3:]) / 2  # [3]
        self.up: Tensor = orbit_up(poses.cameras)  # [3]

    @property
    def step(self) -> int:
        return self.trainer.state.step

    def default_orbit(self) -> Orbit:
        return default_orbit(self.train_cameras, self.center)

    def orbit_of(self, cameras: Cameras, index: int) -> Orbit:
        """The orbit at camera `index` of `cameras` (e.g. a held-out view), in this run's frame."""
        return Orbit.from_camera(cameras, index, self.center, self.up)

    def image_size(self, size: int) -> tuple[int, int]:
        """(width, height) with `size` the longer side and the training views' aspect."""
        if size < 1:
            raise UserError(f"image size must be at least 1 pixel, got {size}")
        w, h = self.train_cameras.width, self.train_cameras.height
        if w >= h:
            return size, max(1, round(size * h / w))
        return max(1, round(size * w / h)), size

    def camera(self, orbit: Orbit, size: int) -> Cameras:
        """One camera at `orbit`, `size` pixels on its longer side, with the run's near and far."""
        width, height = self.image_size(size)
        return orbit.cameras(self.center, self.up, width, height, self.train_cameras.near, self.train_cameras.far)

    @torch.inference_mode()
    def render_camera(self, camera: Cameras, output: Output = "rgb") -> np.ndarray:
        """uint8 [H, W, 3] of camera 0 of `camera`: colour on white, depth colour-mapped, or opacity as grey."""
        if output not in OUTPUTS:
            raise UserError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        # Steps at least one pixel's footprint long (dt = t / focal): a 128-px view marches ~3x fewer
        # samples than the training step gives, at 48 dB from the exact render (BENCHMARKS.md).
        cone = max(self.trainer.cone_angle, 1.0 / float(camera.fy[0]))
        out = self.trainer.render_view(camera, 0, cone_angle=cone)
        if output == "rgb":
            return to_uint8(out["rgb"])
        opacity = out["opacity"].float().cpu().numpy()  # [H, W]
        if output == "opacity":
            return np.repeat((np.clip(opacity, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None], 3, -1)
        depth = expected_depth(out["depth"], out["opacity"]).float().cpu().numpy()  # [H, W]
        return colorize_depth(depth, opacity, camera.near)

    def render(self, orbit: Orbit, size: int, output: Output = "rgb") -> np.ndarray:
        """uint8 [H, W, 3] at `orbit`, `size` pixels on the longer side."""
        return self.render_camera(self.camera(orbit, size), output)

    def preview(self, orbit: Orbit, output: Output = "rgb") -> np.ndarray:
        """A coarse render (PREVIEW_SIZE px) for while a control is being dragged."""
        return self.render(orbit, PREVIEW_SIZE, output)

    def turntable(self, orbit: Orbit, size: int, frames: int, fps: int, path: Path,
                  output: Output = "rgb") -> Path:
        """An mp4 of `frames` views circling once about `up` from `orbit` (its elevation, distance, fov)."""
        if frames < 1 or fps < 1:
            raise UserError(f"the turntable needs frames >= 1 and fps >= 1, got frames={frames}, fps={fps}")
        images = [self.render(dataclasses.replace(orbit, azimuth=orbit.azimuth + 360.0 * k / frames), size, output)
                  for k in range(frames)]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return write_video(images, Path(path), fps)


_views: OrderedDict[tuple[Path, str], RunView] = OrderedDict()
_views_lock = threading.Lock()  # GUI callbacks run in worker threads


def open_view(run_dir: Path, device: str = "cpu") -> RunView:
    """The RunView of `run_dir`, kept open between calls (the last CACHED_VIEWS runs) and re-opened
    when a newer checkpoint has been saved since."""
    run_dir = Path(run_dir).resolve()
    RunConfig.load(run_dir)  # a folder that is no run says so, not that it lacks a checkpoint
    for attempt in range(3):  # a run still training renames its checkpoint folders as it saves
        try:
            key = checkpoint_key(find_checkpoint(run_dir))
            with _views_lock:
                previous = _views.get((run_dir, device))
                if previous is not None and previous.key == key:
                    _views.move_to_end((run_dir, device))
                    return previous
            view = RunView(run_dir, device, previous)  # outside the lock: other runs need not wait
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    with _views_lock:
        _views[(run_dir, device)] = view
        _views.move_to_end((run_dir, device))
        while len(_views) > CACHED_VIEWS:
            _views.popitem(last=False)
    return view


# ---- comparing runs -------------------------------------------------------------------------------
def _held_out_metrics(run_dir: Path) -> dict | None:
    """The newest held-out evaluation: {'psnr', 'ssim', 'step'} from `eval/metrics.json` or the
    metrics log's `final_eval` / `eval` records (the highest step wins; on a tie the full
    evaluation over a periodic one, which may cover fewer views)."""
    candidates = []  # (step, rank, metrics)
    eval_file = run_dir / "eval" / "metrics.json"
    if eval_file.is_file():
        m = json.loads(eval_file.read_text())
        candidates.append((m.get("step", -1), 2, {"psnr": m["mean"]["psnr"], "ssim": m["mean"]["ssim"],
                                                 "step": m.get("step")}))
    log = run_dir / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written by a run still training
            if record.get("event") in ("final_eval", "eval"):
                candidates.append((record["step"], 1 if record["event"] == "final_eval" else 0,
                                   {"psnr": record["psnr"], "ssim": record["ssim"], "step": record["step"]}))
    return max(candidates, key=lambda c: c[:2])[2] if candidates else None


def _field_parameters(weights: Path) -> int:
    """Floating-point values of the field in `weights`, read from the safetensors header only (the
    field's parameters plus its few float buffers such as the 6-value box; what the run learns beside
    it, the occupancy grid, proposal networks and corrections, excluded)."""
    with safe_open(weights, "pt") as f:
        total = 0
        for name in f.keys():
            part = f.get_slice(name)
            if not name.startswith(NOT_FIELD) and part.get_dtype().startswith(("F", "BF")):
                total += math.prod(part.get_shape())
    return total


def run_summary(run_dir: Path) -> dict:
    """One row of the Compare table: run, scene, field, steps, seconds (training), psnr, ssim and
    eval_step (held-out, newest evaluation; None without one), size_mb (the checkpoint's
    model.safetensors) and parameters."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    checkpoint = find_checkpoint(run_dir)
    weights = checkpoint / "model.safetensors"
    steps, _ = checkpoint_key(checkpoint)
    seconds = None
    progress = checkpoint / "trainer.json"
    if progress.is_file():
        state = json.loads(progress.read_text())["state"]
        steps, seconds = state["step"], state["seconds"]
    metrics = _held_out_metrics(run_dir) or {}
    return {"run": str(run_dir), "scene": config.scene, "field": config.field, "steps": steps, "seconds": seconds,
            "psnr": metrics.get("psnr"), "ssim": metrics.get("ssim"), "eval_step": metrics.get("step"),
            "size_mb": weights.stat().st_size / 1e6, "parameters": _field_parameters(weights)}


def compare_runs(run_dirs: Sequence[Path], orbit: Orbit | None = None, size: int = 128, output: Output = "rgb",
                 device: str = "cpu") -> tuple[list[dict], list[np.ndarray]]:
    """(a run_summary row per run, the same camera rendered by each). The camera is `orbit` (default:
    the first run's default orbit) in the first run's frame and image size, so every run is seen
    from one pose even where their boxes differ."""
    if not run_dirs:
        raise UserError("pick at least one run to compare")
    views = [open_view(d, device) for d in run_dirs]
    first = views[0]
    camera = first.camera(orbit if orbit is not None else first.default_orbit(), size)
    images = []
    for view in views:
        own = dataclasses.replace(camera, near=view.train_cameras.near, far=view.train_cameras.far)
        images.append(view.render_camera(own, output))
    return [run_summary(d) for d in run_dirs], images
