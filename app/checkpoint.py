"""Checkpoints: plain data and tensors only, no pickled classes.

A run folder holds `config.json` (what to build: backend name + its config, the data, the
trainer settings) and `checkpoints/latest/` with `model.safetensors` (field weights and the
occupancy grid, enough to render), and `trainer.safetensors` + `trainer.json` (optimizer moments,
generator state, step counters: enough to resume exactly). A checkpoint is written into a
temporary folder and renamed into place, so an interrupted write never damages the last one.
"""

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .trainer import Trainer

GRID_PREFIX = "occupancy."


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "latest"


def model_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
    tensors.update({GRID_PREFIX + k: v.cpu().contiguous() for k, v in trainer.grid.state_dict().items()})
    return tensors


def _trainer_payload(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    opt = trainer.optimizer.state_dict()
    tensors = {"generator": trainer.generator.get_state()}
    for index, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
    s = trainer.state
    plain = {"param_groups": opt["param_groups"], "n_rays": trainer._n_rays, "loss_ema": trainer._loss_ema,
             "state": {"step": s.step, "seconds": s.seconds, "loss": s.loss, "train_psnr": s.train_psnr,
                       "eval_psnr": s.eval_psnr, "eval_ssim": s.eval_ssim, "lr_scale": s.lr_scale,
                       "recoveries": s.recoveries, "rays": s.rays, "total_rays": s.total_rays,
                       "total_samples": s.total_samples, "samples_per_ray": s.samples_per_ray,
                       "occupied_fraction": s.occupied_fraction}}
    return tensors, plain


def save_checkpoint(run_dir: Path, trainer: Trainer) -> Path:
    final = checkpoint_dir(run_dir)
    tmp = final.with_name("latest.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(model_tensors(trainer), tmp / "model.safetensors")
    tensors, plain = _trainer_payload(trainer)
    save_file(tensors, tmp / "trainer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps(plain, indent=1))
    old = final.with_name("latest.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_model_weights(model: torch.nn.Module, grid: torch.nn.Module, path: Path) -> None:
    """Field weights and occupancy grid from `model.safetensors`; a mismatch names the file."""
    tensors = load_file(path)
    grid_state = {k[len(GRID_PREFIX):]: v for k, v in tensors.items() if k.startswith(GRID_PREFIX)}
    model_state = {k: v for k, v in tensors.items() if not k.startswith(GRID_PREFIX)}
    try:
        model.load_state_dict(model_state)
        grid.load_state_dict(grid_state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not match the field described by config.json: {error}") from error


def load_checkpoint(run_dir: Path, trainer: Trainer) -> None:
    """Restore everything `save_checkpoint` wrote, so training continues exactly."""
    folder = checkpoint_dir(run_dir)
    if not (folder / "trainer.json").is_file():
        raise FileNotFoundError(f"{folder}: no checkpoint to resume from (expected model.safetensors, "
                                "trainer.safetensors and trainer.json)")
    load_model_weights(trainer.model, trainer.grid, folder / "model.safetensors")
    tensors = load_file(folder / "trainer.safetensors")
    plain = json.loads((folder / "trainer.json").read_text())
    trainer.generator.set_state(tensors["generator"])
    device = trainer.device
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            opt_state.setdefault(int(index), {})[slot] = value if slot == "step" else value.to(device)
    trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": plain["param_groups"]})
    trainer._n_rays, trainer._loss_ema = plain["n_rays"], plain["loss_ema"]
    for key, value in plain["state"].items():
        setattr(trainer.state, key, value)
