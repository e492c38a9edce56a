"""Run folders: `runs/<scene>/<backend>/<timestamp>/` with `config.json`, `checkpoints/`,
`metrics.jsonl`, `renders/` and `exports/`. Every command after `fit` takes the run folder."""

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onefield import fields
from onefield.cuda_ext.geometry import MAX_CASCADES
from onefield.errors import UserError
from onefield.fields import Field
from onefield.renderers import OccupancyGrid
from onefield.scenes import PosedImages
from onefield.scenes.load import load_scene
from onefield.scenes.undistort import undistorted

from .checkpoint import MissingRunFile, find_checkpoint, load_model_weights
from .trainer import Trainer, TrainerConfig

FORMAT_VERSION = 1


@dataclass
class DataSpec:
    path: str
    """dataset folder: Blender/NeRF-Synthetic, instant-ngp/nerfstudio transforms.json, LLFF, COLMAP project,
    DTU/IDR scan or Strecha"""
    downscale: float = 1.0
    """divide the image size by this on load (cached outside the repository)"""
    eval_split: str = "auto"
    """held-out views: 'auto' (Blender: test, else val; otherwise every 8th view), a split name, or 'none'"""
    format: str = "auto"
    """dataset format: auto (detected from the folder's files), blender, transforms (instant-ngp/nerfstudio), llff,
    colmap, dtu (DTU/IDR) or strecha"""
    aabb: tuple[float, float, float, float, float, float] | None = None
    """scene box (min xyz, max xyz) replacing the reader's choice"""
    near: float | None = None
    """ray start distance replacing the reader's choice"""
    far: float | None = None
    """ray end distance replacing the reader's choice"""
    cascades: int | None = None
    """occupancy cascades replacing the reader's choice (the scene reaches the box scaled by 2^(cascades-1))"""
    undistort: bool = False
    """resample images with lens distortion to ideal pinholes on load (set by the fit for backends that model no
    lens, `Field.pinhole_only`; the volumes bend their rays instead)"""

    def load(self) -> tuple[PosedImages, PosedImages | None, str | None]:
        """(training views, held-out views or None, name of the held-out set), with the overrides."""
        if not self.downscale >= 1:  # also refuses NaN
            raise UserError(f"downscale must be >= 1 (8 divides the width and height by 8), got {self.downscale}")
        train, held_out, name = load_scene(self.path, self.format, self.downscale, self.eval_split)
        if self.undistort:
            train, held_out = undistorted(train), (undistorted(held_out) if held_out is not None else None)
        return self._override(train), (self._override(held_out) if held_out is not None else None), name

    def _override(self, data: PosedImages) -> PosedImages:
        if self.aabb is not None:
            if len(self.aabb) != 6 or any(hi <= lo for lo, hi in zip(self.aabb[:3], self.aabb[3:])):
                raise UserError(f"aabb must be min xyz then max xyz with max > min, got {list(self.aabb)}")
            data.aabb = tuple(float(v) for v in self.aabb)  # type: ignore[assignment]
        if self.cascades is not None:
            if not 1 <= self.cascades <= MAX_CASCADES:
                raise UserError(f"cascades must be 1..{MAX_CASCADES}, got {self.cascades}")
            data.cascades = self.cascades
        if self.near is not None:
            data.cameras.near = self.near
        if self.far is not None:
            data.cameras.far = self.far
        if data.cameras.far <= data.cameras.near:
            raise UserError(f"far ({data.cameras.far}) must exceed near ({data.cameras.near})")
        return data


@dataclass
class RunConfig:
    scene: str
    data: DataSpec
    field: str
    field_config: dict[str, Any]
    aabb: list[float]
    grid_resolution: int
    trainer: dict[str, Any]
    device: str = "cpu"
    grid_levels: int = 1
    distill: dict[str, Any] | None = None  # a distilled run: its teacher run and the distillation settings
    version: int = FORMAT_VERSION

    def save(self, run_dir: Path) -> None:
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> "RunConfig":
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise MissingRunFile(f"{run_dir}: not a run folder (no config.json). Pass the folder `onefield fit` "
                                 "printed, e.g. runs/<scene>/<backend>/<timestamp>.")
        try:
            raw = json.loads(path.read_text())
            raw["data"] = DataSpec(**raw["data"])
            return cls(**raw)
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise UserError(f"{path}: not a valid onefield run config ({error}).") from error

    def raise_budget(self, steps: int | None, minutes: float | None) -> None:
        """Give a resumed run a new step limit and / or time budget (None keeps the saved one)."""
        if steps is not None:
            self.trainer["steps"] = steps
        if minutes is not None:
            self.trainer["minutes"] = minutes

    def trainer_config(self) -> TrainerConfig:
        """The run's trainer settings; runs saved before the sampler and distortion options existed
        trained with the grid and no distortion loss."""
        return TrainerConfig(**{"sampler": "grid", "distortion": 0.0, **self.trainer})


def check_output_folder(path: Path) -> Path:
    """`path` if it is, or can be created as, a writable folder; else a UserError naming it."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{existing} is a file, not a folder: the output (--out {path}) must be a folder, "
                        "created if missing")
    if not os.access(existing, os.W_OK):
        raise UserError(f"{existing} is not writable: choose another output folder (--out)")
    return path


def unique_child(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name-2`, `-3`... when taken."""
    path, n = Path(folder) / name, 1
    while path.exists():
        n += 1
        path = Path(folder) / f"{name}-{n}"
    return path


def new_run_dir(out: Path, scene: str, backend: str, name: str | None = None) -> Path:
    """`out/scene/backend/<timestamp>`, or `out/scene/backend/name` (a batch cell's fixed place), which
    must not exist yet."""
    check_output_folder(out)
    if name is None:
        run_dir = unique_child(Path(out) / scene / backend, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    else:
        run_dir = Path(out) / scene / backend / name
        if run_dir.exists():
            raise UserError(f"{run_dir} exists already: resume it (`onefield resume {run_dir}`) or remove it")
    for sub in ("checkpoints", "renders", "exports"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    return run_dir


def build_model(config: RunConfig, device: str) -> tuple[Field, OccupancyGrid]:
    """The field (contracting space beyond the base box when there are several cascades) and the
    cascaded occupancy grid, both over the same scene."""
    grid = OccupancyGrid(config.aabb, config.grid_resolution, config.grid_levels).to(device)
    model = fields.build(config.field, config.aabb, config.field_config, device=device, cascades=config.grid_levels,
                         seed=config.trainer_config().seed)
    return model, grid


def make_trainer(model: torch.nn.Module, grid: OccupancyGrid, train: PosedImages, config: TrainerConfig,
                 held_out: PosedImages | None = None, device: str = "cpu") -> Trainer:
    """The trainer of the model's kind: the volumetric `Trainer`, or `SplatTrainer` for splats."""
    if getattr(model, "kind", "volume") == "splats":
        from .splat_trainer import SplatTrainer

        return SplatTrainer(model, grid, train, config, held_out, device)
    return Trainer(model, grid, train, config, held_out, device)


def load_field(config: RunConfig, checkpoint: Path, device: str) -> tuple[Field, OccupancyGrid]:
    """The run's field and occupancy grid with the weights of the checkpoint folder `checkpoint`."""
    model, grid = build_model(config, device)
    load_model_weights(model, grid, checkpoint / "model.safetensors")
    return model, grid


def load_trained(run_dir: Path, device: str = "cpu") -> tuple[RunConfig, Field, OccupancyGrid]:
    """Config, field and occupancy grid of a run's newest complete checkpoint, ready to render."""
    config = RunConfig.load(run_dir)
    return config, *load_field(config, find_checkpoint(run_dir), device)


def scene_name(path: str | Path) -> str:
    return Path(path).resolve().name or "scene"


def torch_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu")
    return device
