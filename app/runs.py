"""Run folders: `runs/<scene>/<backend>/<timestamp>/` with `config.json`, `checkpoints/`,
`metrics.jsonl`, `renders/` and `exports/`. Every command after `fit` takes the run folder."""

import dataclasses
import datetime
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onefield import fields
from onefield.fields import Field
from onefield.renderers import OccupancyGrid
from onefield.scenes import DatasetError, MissingFramesWarning, PosedImages, read_blender

from .checkpoint import checkpoint_dir, load_model_weights
from .trainer import TrainerConfig

FORMAT_VERSION = 1


@dataclass
class DataSpec:
    path: str
    """scene folder (Blender/NeRF-Synthetic layout: transforms_<split>.json)"""
    downscale: float = 1.0
    """divide the image size by this on load (cached outside the repository)"""
    train_split: str = "train"
    eval_split: str = "auto"
    """held-out split: 'auto' takes test, else val"""

    def held_out_split(self) -> str | None:
        if self.eval_split != "auto":
            return self.eval_split
        for split in ("test", "val"):
            if (Path(self.path) / f"transforms_{split}.json").is_file():
                return split
        return None

    def read(self, split: str) -> PosedImages:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingFramesWarning)
            data = read_blender(self.path, split, self.downscale)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
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
    model = fields.build(config.field, config.aabb, config.field_config, device=device)
    grid = OccupancyGrid(config.aabb, config.grid_resolution).to(device)
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


def check_data(spec: DataSpec) -> None:
    if not Path(spec.path).is_dir():
        raise DatasetError(f"{spec.path}: no such folder. Pass a scene folder holding transforms_train.json.")


def torch_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu")
    return device
