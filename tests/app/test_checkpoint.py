"""Checkpoints survive a crash at any point of a save, and every loader reads the newest complete one."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from test_trainer import TINY_FIELD, TINY_TRAINER, make_trainer

from onefield import fields
from onefield.app import checkpoint
from onefield.app.checkpoint import find_checkpoint, load_checkpoint, model_tensors, save_checkpoint
from onefield.app.evaluate import evaluate_run
from onefield.app.fit import FitJob
from onefield.app.runs import DataSpec, load_trained
from onefield.app.trainer import Trainer, TrainerConfig


class Crash(Exception):
    """Stands for the process dying: raised by the k-th write step of a save."""


class CrashAt:
    """Wraps every step of `save_checkpoint` that touches the disk (tensor and JSON writes, fsyncs,
    renames, deletions) and crashes at the k-th call (1-based), leaving what a real crash there
    leaves: half a file for a write, one file gone for a deletion, nothing for a rename or fsync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, k: int):
        self.k, self.calls, self.sealed = k, 0, False
        real_save, real_json, real_rename, real_rmtree = (checkpoint.save_file, checkpoint._write_json, Path.rename,
                                                          shutil.rmtree)

        def save_file(tensors, path):
            if self._crash():
                real_save(tensors, path)
                _truncate(Path(path))
                raise Crash
            real_save(tensors, path)

        def write_json(path, data):
            if self._crash():
                Path(path).write_text(json.dumps(data)[:20])
                raise Crash
            real_json(path, data)
            self.sealed |= Path(path).name == checkpoint.MANIFEST

        def rmtree(path, *args, **kwargs):
            if self._crash():
                (Path(path) / "model.safetensors").unlink(missing_ok=True)  # the manifest survives it
                raise Crash
            real_rmtree(path, *args, **kwargs)

        def rename(path, target):
            if self._crash():
                raise Crash
            return real_rename(path, target)

        def fsync(path):
            if self._crash():
                raise Crash

        monkeypatch.setattr(checkpoint, "save_file", save_file)
        monkeypatch.setattr(checkpoint, "_write_json", write_json)
        monkeypatch.setattr(checkpoint, "_fsync", fsync)
        monkeypatch.setattr(checkpoint.shutil, "rmtree", rmtree)
        monkeypatch.setattr(Path, "rename", rename)

    def _crash(self) -> bool:
        self.calls += 1
        return self.calls == self.k


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _trainer(scene) -> Trainer:
    return make_trainer(scene, steps=40, carve=False)  # carving would triple the cost of the first step


def _steps(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The weights after one more step."""
    trainer.step()
    return {k: v.clone() for k, v in model_tensors(trainer).items()}


def _assert_restored(scene, run_dir: Path, step: int, weights: dict[str, torch.Tensor]) -> None:
    resumed = _trainer(scene)
    load_checkpoint(run_dir, resumed)
    assert resumed.state.step == step
    got = model_tensors(resumed)
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)


def _calls_per_save(monkeypatch: pytest.MonkeyPatch, run_dir: Path, trainer: Trainer) -> int:
    with monkeypatch.context() as m:
        counter = CrashAt(m, k=0)
        save_checkpoint(run_dir, trainer)
    return counter.calls


def test_a_crash_at_any_point_of_a_save_resumes_from_the_newest_complete_checkpoint(shapes_scene, tmp_path,
                                                                                     monkeypatch):
    """For every k, the save of step 2 over a checkpoint of step 1 crashes at its k-th disk step:
    resume restores step 2 exactly once its manifest is written, step 1 exactly before, and the next
    save leaves one clean `latest`."""
    trainer = _trainer(shapes_scene)
    weights = {1: _steps(trainer)}
    save_checkpoint(tmp_path / "first", trainer)
    weights[2] = _steps(trainer)
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in weights[1])  # the two are told apart
    n = _calls_per_save(monkeypatch, tmp_path / "probe", trainer)
    assert n >= 10  # writes, fsyncs, renames and deletions all counted
    restored = set()
    for k in range(1, n + 1):
        run_dir = tmp_path / f"crash-{k}"
        shutil.copytree(tmp_path / "first", run_dir)
        with monkeypatch.context() as m:
            crash = CrashAt(m, k)
            with pytest.raises(Crash):
                save_checkpoint(run_dir, trainer)
        step = 2 if crash.sealed else 1
        _assert_restored(shapes_scene, run_dir, step, weights[step])
        restored.add(step)
        save_checkpoint(run_dir, trainer)  # the next save recovers from whatever the crash left
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest"]
        _assert_restored(shapes_scene, run_dir, 2, weights[2])
    assert restored == {1, 2}


def test_a_crash_during_the_first_save_leaves_no_checkpoint_or_a_complete_one(shapes_scene, tmp_path, monkeypatch):
    trainer = _trainer(shapes_scene)
    weights = _steps(trainer)
    n = _calls_per_save(monkeypatch, tmp_path / "probe", trainer)
    sealed = []
    for k in range(1, n + 1):
        run_dir = tmp_path / f"crash-{k}"
        with monkeypatch.context() as m:
            crash = CrashAt(m, k)
            with pytest.raises(Crash):
                save_checkpoint(run_dir, trainer)
        sealed.append(crash.sealed)
        if crash.sealed:
            _assert_restored(shapes_scene, run_dir, 1, weights)
        else:
            missing = re.escape(f"{run_dir / 'checkpoints'}: no complete checkpoint")
            with pytest.raises(FileNotFoundError, match=missing):
                load_checkpoint(run_dir, _trainer(shapes_scene))
    assert any(sealed) and not all(sealed)


def test_a_save_after_an_interrupted_rename_keeps_the_newest_checkpoint(shapes_scene, tmp_path, monkeypatch):
    """A crash between the renames leaves `latest.old` (step 1) and a complete `latest.tmp` (step 2); a
    later save (step 3) that crashes while writing its tensors must not have thrown step 2 away."""
    trainer = _trainer(shapes_scene)
    _steps(trainer)
    save_checkpoint(tmp_path, trainer)
    weights = _steps(trainer)
    real_rename = Path.rename
    with monkeypatch.context() as m:
        m.setattr(Path, "rename", lambda path, target: _raise() if Path(target).name == "latest"
                  else real_rename(path, target))
        with pytest.raises(Crash):
            save_checkpoint(tmp_path, trainer)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.old", "latest.tmp"]
    assert find_checkpoint(tmp_path).name == "latest.tmp"
    _steps(trainer)
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_file", lambda tensors, path: _raise())
        with pytest.raises(Crash):
            save_checkpoint(tmp_path, trainer)
    _assert_restored(shapes_scene, tmp_path, 2, weights)


def _raise() -> None:
    raise Crash


def _fit_job(scene, tmp_path: Path, steps: int) -> FitJob:
    config = TrainerConfig(steps=steps, carve=False, **TINY_TRAINER)
    return FitJob.create(DataSpec(str(scene.root)), "hashgrid", fields.make_config("hashgrid", TINY_FIELD), config,
                         tmp_path / "runs")


@pytest.mark.parametrize("damaged", ["model.safetensors", "trainer.safetensors", "trainer.json"])
def test_a_truncated_file_in_latest_falls_back_to_latest_old(shapes_scene, tmp_path, monkeypatch, damaged):
    """`latest` (step 2) with one file cut in half after its save: resume and `load_trained` read
    `latest.old` (step 1), left there by a crash just before the save's last deletion."""
    job = _fit_job(shapes_scene, tmp_path, steps=40)
    weights = _steps(job.trainer)
    save_checkpoint(job.run_dir, job.trainer)
    _steps(job.trainer)
    with monkeypatch.context() as m:
        m.setattr(checkpoint.shutil, "rmtree", lambda path, ignore_errors=False: None)
        save_checkpoint(job.run_dir, job.trainer)
    assert find_checkpoint(job.run_dir).name == "latest"
    _truncate(job.run_dir / "checkpoints" / "latest" / damaged)
    assert find_checkpoint(job.run_dir).name == "latest.old"
    assert FitJob.resume(job.run_dir).trainer.state.step == 1
    _, model, grid = load_trained(job.run_dir)
    got = model.state_dict() | {checkpoint.GRID_PREFIX + k: v for k, v in grid.state_dict().items()}
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)


def test_a_run_without_a_complete_checkpoint_names_its_folder(shapes_scene, tmp_path):
    job = _fit_job(shapes_scene, tmp_path, steps=40)
    folder = job.run_dir / "checkpoints"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{folder}: no complete checkpoint")):
        load_trained(job.run_dir)
    (folder / "latest.tmp").mkdir()
    (folder / "latest.tmp" / "model.safetensors").write_bytes(b"\0" * 64)  # a save that stopped early
    with pytest.raises(FileNotFoundError, match=re.escape(f"{folder}: no complete checkpoint")):
        FitJob.resume(job.run_dir)


def test_eval_reports_the_step_seconds_and_field_of_the_checkpoint(shapes_scene, tmp_path):
    job = _fit_job(shapes_scene, tmp_path, steps=12)
    job.run()
    metrics = evaluate_run(job.run_dir)
    assert metrics["step"] == 12 and metrics["field"] == "hashgrid"
    assert metrics["seconds"] == pytest.approx(job.trainer.state.seconds) and metrics["seconds"] > 0
    assert json.loads((job.run_dir / "eval" / "metrics.json").read_text())["step"] == 12
