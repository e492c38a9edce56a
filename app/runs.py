"""Run folders: `runs/<scene>/<backend>/<timestamp>/` with `config.json`, `checkpoints/`,
`metrics.jsonl`, `renders/` and `exports/`. Every command after `fit` takes the run folder."""

import dataclasses
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onefield import fields
from onefield.fields import Field
from onefield.renderers import OccupancyGrid
from onefield.scenes import PosedImages
from onefield.scenes.load import load_scene

from .checkpoint import checkpoint_dir, load_model_weights
from .trainer import TrainerConfig

FORMAT_VERSION = 1


@dataclass
class DataSpec:
    path: str
    """dataset folder: Blender/NeRF-Synthetic, instant-ngp/nerfstudio transforms.json, or LLFF"""
    downscale: float = 1.0
    """divide the image size by this on load (cached outside the repository)"""
    eval_split: str = "auto"
    """held-out views: 'auto' (Blender: test, else val; otherwise every 8th view), a split name, or 'none'"""
    format: str = "auto"
    """dataset format: auto, blender, transforms, llff, colmap, dtu or strecha"""
    aabb: tuple[float, float, float, float, float, float] | None = None
    """scene box (min xyz, max xyz) replacing the reader's choice"""
    near: float | None = None
    """ray start distance replacing the reader's choice"""
    far: float | None = None
    """ray end distance replacing the reader's choice"""
    cascades: int | None = None
    """occupancy cascades replacing the reader's choice (the scene reaches the box scaled by 2^(cascades-1))"""

    def load(self) -> tuple[PosedImages, PosedImages | None, str | None]:
        """(training views, held-out views or None, name of the held-out set), with the overrides."""
        train, held_out, name = load_scene(self.path, self.format, self.downscale, self.eval_split)
        return self._override(train), (self._override(held_out) if held_out is not None else None), name

    def _override(self, data: PosedImages) -> PosedImages:
        if self.aabb is not None:
            if len(self.aabb) != 6 or any(hi <= lo for lo, hi in zip(self.aabb[:3], self.aabb[3:])):
                raise ValueError(f"aabb must be min xyz then max xyz with max > min, got {list(self.aabb)}")
            data.aabb = tuple(float(v) for v in self.aabb)  # type: ignore[assignment]
        if self.cascades is not None:
            if not 1 <= self.cascades <= 8:
                raise ValueError(f"cascades must be 1..8, got {self.cascades}")
            data.cascades = self.cascades
        if self.near is not None:
            data.cameras.near = self.near
        if self.far is not None:
            data.cameras.far = self.far
        if data.cameras.far <= data.cameras.near:
            raise ValueError(f"far ({data.cameras.far}) must exceed near ({data.cameras.near})")
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
    version: int = FORMAT_VERSION

    def save(self, run_dir: Path) -> None:
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> "RunConfig":
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: not a run folder (no config.json). Pass the folder `onefield fit` "
                                    "printed, e.g. runs/<scene>/<backend>/<timestamp>.")
        try:
            raw = json.loads(path.read_text())
            raw["data"] = DataSpec(**raw["data"])
            return cls(**raw)
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise ValueError(f"{path}: not a valid onefield run config ({error}).") from error

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(**self.trainer)


def new_run_dir(out: Path, scene: str, backend: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / scene / backend
    run_dir, n = base / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    for sub in ("checkpoints", "renders", "exports"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    return run_dir


def build_model(config: RunConfig, device: str) -> tuple[Field, OccupancyGrid]:
    """The field (contracting space beyond the base box when there are several cascades) and the
    cascaded occupancy grid, both over the same scene."""
    grid = OccupancyGrid(config.aabb, config.grid_resolution, config.grid_levels).to(device)
    model = fields.build(config.field, config.aabb, config.field_config, device=device, cascades=config.grid_levels)
    return model, grid


def load_trained(run_dir: Path, device: str = "cpu") -> tuple[RunConfig, Field, OccupancyGrid]:
    """Config, field and occupancy grid of a run's latest checkpoint, ready to render."""
    config = RunConfig.load(run_dir)
    weights = checkpoint_dir(Path(run_dir)) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the run has no checkpoint yet; run `onefield fit --resume {run_dir}`.")
    model, grid = build_model(config, device)
    load_model_weights(model, grid, weights)
    return config, model, grid


def scene_name(path: str | Path) -> str:
    return Path(path).resolve().name or "scene"


def torch_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu")
    return device
