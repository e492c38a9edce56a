"""Checkpoints: plain data and tensors only, no pickled classes.

A run folder holds `config.json` (what to build: backend name + its config, the data, the
trainer settings) and `checkpoints/latest/` with `model.safetensors` (field weights, the
occupancy grid, and the proposal networks and pose / colour corrections where the run learns them:
enough to render; `Trainer.learned` names them, each under its prefix), `trainer.safetensors` + `trainer.json` (optimizer moments,
generator state, step counters: enough to resume exactly) and `manifest.json` (step and file sizes).

A save writes `latest.tmp/`, flushes its files to disk, then writes the manifest: a folder whose
manifest lists files of exactly those sizes is complete. It then renames `latest` to `latest.old`
and `latest.tmp` to `latest`, and deletes `latest.old`. A crash at any point leaves at least one
complete folder of the three, and readers take the newest (`find_checkpoint`).
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from onefield.errors import UserError

from .trainer import LEARNED_BESIDE_FIELD, Trainer

GRID_PREFIX = "occupancy."
NOT_FIELD = tuple(f"{name}." for name in LEARNED_BESIDE_FIELD)  # prefixes of what is saved beside the field
MANIFEST = "manifest.json"


class MissingRunFile(UserError, FileNotFoundError):
    """A run folder lacks what a command reads (config.json, a complete checkpoint)."""


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a checkpoint is written; read with `find_checkpoint`, which also sees interrupted saves."""
    return Path(run_dir) / "checkpoints" / "latest"


def _prefix(name: str) -> str:
    return f"{name}." if name else ""


def model_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {_prefix(name) + k: v.detach().cpu().contiguous()
            for name, module in trainer.learned().items() for k, v in module.state_dict().items()}


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
                       "total_hidden": s.total_hidden, "hidden_share": s.hidden_share,
                       "evaluated_share": s.evaluated_share, "total_unmarched": s.total_unmarched,
                       "occupied_fraction": s.occupied_fraction, "gaussians": s.gaussians,
                       "stage": s.stage}}
    return tensors, plain


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk (POSIX allows both through a read-only fd)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def _seal(folder: Path, step: int) -> None:
    """Make `folder` a complete checkpoint: its files reach the disk before the manifest that vouches
    for them, so a manifest never describes data a power cut could still lose."""
    files = sorted(folder.iterdir())
    for path in files:
        _fsync(path)
    _write_json(folder / MANIFEST, {"step": step, "files": {p.name: p.stat().st_size for p in files}})
    _fsync(folder / MANIFEST)
    _fsync(folder)


def _promote(tmp: Path) -> None:
    """Rename the complete `tmp` to `latest`, keeping the previous `latest` as `latest.old` until then."""
    final, old = tmp.with_name("latest"), tmp.with_name("latest.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    _fsync(final.parent)  # the renames are on disk before the previous checkpoint is deleted
    shutil.rmtree(old, ignore_errors=True)


def _save(run_dir: Path, trainer: Trainer, with_trainer: bool) -> Path:
    final = checkpoint_dir(run_dir)
    tmp = final.with_name("latest.tmp")
    if _newest(final) == tmp:
        _promote(tmp)  # an earlier save stopped between its renames: finish it before reusing the name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(model_tensors(trainer), tmp / "model.safetensors")
    if with_trainer:
        tensors, plain = _trainer_payload(trainer)
        save_file(tensors, tmp / "trainer.safetensors")
        _write_json(tmp / "trainer.json", plain)
    _seal(tmp, trainer.state.step)
    _promote(tmp)
    return final


def save_checkpoint(run_dir: Path, trainer: Trainer) -> Path:
    """Everything needed to render and to resume exactly."""
    return _save(run_dir, trainer, with_trainer=True)


def save_weights(run_dir: Path, trainer: Trainer) -> Path:
    """What the run learned (field, occupancy grid, proposal networks and corrections), without the
    optimizer: enough to evaluate, render and export (`onefield slim`)."""
    return _save(run_dir, trainer, with_trainer=False)


def _complete_step(folder: Path) -> int | None:
    """The step of `folder` if its manifest is readable and every file it lists has the listed size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if all((folder / name).stat().st_size == size for name, size in manifest["files"].items()):
            return int(manifest["step"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, truncated or half-deleted: not a checkpoint
    return None


def _newest(final: Path) -> Path | None:
    """The complete folder with the highest step among `latest`, `latest.tmp` and `latest.old` (`latest`
    first on a tie), or None."""
    steps = {f: _complete_step(f) for f in (final, final.with_name("latest.tmp"), final.with_name("latest.old"))}
    complete = [f for f, step in steps.items() if step is not None]
    return max(complete, key=lambda f: steps[f]) if complete else None


def find_checkpoint(run_dir: Path) -> Path:
    """The checkpoint folder to read: the newest complete one, wherever a crash during a save left it.
    A `latest/` without a manifest (written before checkpoints had one) is read as it is when nothing
    else is complete."""
    final = checkpoint_dir(run_dir)
    newest = _newest(final)
    if newest is not None:
        return newest
    if (final / "model.safetensors").is_file() and not (final / MANIFEST).exists():
        return final
    raise MissingRunFile(f"{final.parent}: no complete checkpoint (latest, latest.tmp and latest.old are missing "
                         "or incomplete). A fit writes one every `checkpoint_every` steps and when it stops.")


def _load_modules(modules: dict[str, torch.nn.Module], path: Path, every: bool) -> None:
    """Each module's tensors (under its prefix; the field's under none) from `path`; a mismatch names the
    file. `every`: the modules are all the run has, so the file may hold nothing else."""
    tensors = load_file(path)
    unread = sorted({k.split(".", 1)[0] for k in tensors if k.startswith(NOT_FIELD)} - set(modules))
    if every and unread:
        raise UserError(f"{path} holds {', '.join(unread)} weights that the trainer settings in config.json do "
                        "not use (sampler, refine_poses, appearance): the checkpoint and config.json disagree.")
    try:
        for name, module in modules.items():
            if name:
                state = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(_prefix(name))}
            else:
                state = {k: v for k, v in tensors.items() if not k.startswith(NOT_FIELD)}
            module.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"{path} does not match the run described by config.json: {error}") from error


def load_model_weights(model: torch.nn.Module, grid: torch.nn.Module, path: Path) -> None:
    """The field's weights and the occupancy grid from `model.safetensors` (what else it holds, proposal
    networks or corrections, is left: `load_weights` reads a whole run)."""
    _load_modules({"": model, "occupancy": grid}, path, every=False)


def load_weights(trainer: Trainer, folder: Path) -> None:
    """Everything `model.safetensors` of checkpoint `folder` holds into the trainer's modules."""
    _load_modules(trainer.learned(), folder / "model.safetensors", every=True)


def load_progress(trainer: Trainer, folder: Path) -> dict[str, Any] | None:
    """Set the trainer's state (step, seconds, losses...) from `folder/trainer.json` and return that
    file's contents; None, leaving the state alone, for a weights-only checkpoint."""
    path = folder / "trainer.json"
    if not path.is_file():
        return None
    plain = json.loads(path.read_text())
    for key, value in plain["state"].items():
        setattr(trainer.state, key, value)
    return plain


def load_checkpoint(run_dir: Path, trainer: Trainer) -> None:
    """Restore everything `save_checkpoint` wrote, so training continues exactly."""
    folder = find_checkpoint(run_dir)
    plain = load_progress(trainer, folder)
    if plain is None:
        raise MissingRunFile(f"{folder}: holds the field's weights only (no trainer.json), nothing to resume")
    load_weights(trainer, folder)
    tensors = load_file(folder / "trainer.safetensors")
    trainer.generator.set_state(tensors["generator"])
    device = trainer.device
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            opt_state.setdefault(int(index), {})[slot] = value if slot == "step" else value.to(device)
    try:
        trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": plain["param_groups"]})
    except ValueError as error:  # another number or size of parameter groups
        raise UserError(f"{folder}/trainer.json does not match the optimizer config.json describes ({error}): the "
                        "checkpoint and config.json disagree.") from error
    trainer._n_rays, trainer._loss_ema = plain["n_rays"], plain["loss_ema"]
