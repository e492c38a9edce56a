"""One batch cell in the process that runs it (a local worker or a Ray task): fit or distill into the
cell's fixed run folder, export and score its mesh, write a thumbnail and `cell.json`.

A cell is resumable by construction: a finished cell (`cell.json` says done, for the same cell) is
skipped, an interrupted one continues from its newest complete checkpoint (`resume_run`: the loop
continues bit-exactly), and one killed before its first checkpoint starts over. Every start is
appended to `attempts.jsonl` (process id, host, the step it resumed from), which is how a killed
worker's cost is measured. Errors become a failed record, never an exception: the batch goes on.
"""

import dataclasses
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import torch

from onefield import fields
from onefield.errors import UserError
from onefield.fields.registry import config_from_dict

from ..checkpoint import MissingRunFile, find_checkpoint
from ..distill import DistillConfig, DistillJob, resume_run
from ..fit import FitJob
from ..runs import DataSpec
from ..trainer import TrainerConfig
from ..view import checkpoint_key, to_uint8
from .plan import Cell, mesh_export_config

CELL_FILE = "cell.json"  # the cell's outcome, in its run folder
ATTEMPTS = "attempts.jsonl"
THUMBNAIL = Path("renders") / "thumbnail.png"  # the first held-out view, rendered by the final evaluation
BUDGET = ("steps", "minutes")  # what may change between runs of a plan without starting a cell over


class ForeignRunFolder(UserError):
    """The cell's folder holds a cell of another plan: refused, and left as it is."""


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The cell's outcome (`cell.json`), or None where it has none (yet) or it is unreadable."""
    try:
        return json.loads((Path(run_dir) / CELL_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _same_cell(recorded: dict[str, Any], cell: Cell, budget_too: bool) -> bool:
    mine = json.loads(cell.to_json())  # as recorded: tuples are lists
    if not budget_too:
        strip = lambda c: {**c, "trainer": {k: v for k, v in c["trainer"].items() if k not in BUDGET}}  # noqa: E731
        return strip(recorded) == strip(mine)
    return recorded == mine


def is_done(cell: Cell) -> bool:
    """The cell finished with exactly these settings (budget included): a rerun of the plan skips it."""
    record = read_record(Path(cell.run_dir))
    return bool(record and record.get("status") == "done" and _same_cell(record.get("cell", {}), cell, True))


def _resumable_step(run_dir: Path) -> int | None:
    """The step of the newest complete checkpoint holding the trainer's state, or None."""
    try:
        folder = find_checkpoint(run_dir)
    except MissingRunFile:
        return None
    if not (folder / "trainer.json").is_file():
        return None
    return checkpoint_key(folder)[0]


def _start(cell: Cell) -> tuple[FitJob, int | None]:
    """The cell's job: resumed from its folder where that holds a checkpoint of this cell, else new."""
    run_dir = Path(cell.run_dir)
    budget = cell.trainer["steps"], cell.trainer["minutes"]
    step = _resumable_step(run_dir) if (run_dir / "config.json").is_file() else None
    if step is not None:
        recorded = (read_record(run_dir) or {}).get("cell")
        if recorded is not None and not _same_cell(recorded, cell, False):
            raise ForeignRunFolder(f"{run_dir} holds a cell of another plan (backend, options or data differ): remove "
                             "the folder to run this plan's cell there, or give the batch another --out")
        return resume_run(run_dir, cell.device, *budget), step
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a start killed before its first checkpoint: nothing finished to keep
    out, name = run_dir.parents[2], run_dir.name
    field_config = fields.make_config(cell.field, cell.field_options)
    if cell.teacher is None:
        trainer = config_from_dict(TrainerConfig, cell.trainer, f"{cell.key} trainer")
        return FitJob.create(DataSpec(**cell.data), cell.field, field_config, trainer, out, cell.device, name=name), None
    distill = config_from_dict(DistillConfig, cell.distill, f"{cell.key} distill")
    return DistillJob.create(Path(cell.teacher), cell.field, field_config, distill, *budget, out, cell.device,
                             name), None


def write_json(path: Path, data: Any) -> None:
    """`data` as JSON at `path`, replaced whole: a reader (the driver, a rerun) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _mesh(cell: Cell, run_dir: Path) -> dict[str, Any]:
    from ..export import export_mesh
    from ..mesh_metrics import score_mesh_file

    export = export_mesh(run_dir, mesh_export_config(cell.mesh))
    result: dict[str, Any] = {"mesh": str(export.path), "mesh_faces": export.faces}
    if cell.gt_mesh is not None:
        score, path = score_mesh_file(export.path, Path(cell.gt_mesh))
        result |= {"mesh_eval": str(path), "fscore": score.fscore, "chamfer": score.chamfer}
    return result


def run_cell(cell: Cell, threads: int | None = None) -> dict[str, Any]:
    """Run the cell to its end and return its record: status 'done' (with held-out PSNR / SSIM, steps,
    seconds and the mesh scores), 'skipped' (done before) or 'failed' (with the error)."""
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(cell.run_dir)
    if is_done(cell):
        return {**read_record(run_dir), "status": "skipped"}
    started = time.time()
    record: dict[str, Any] = {"key": cell.key, "cell": dataclasses.asdict(cell), "run": str(run_dir)}
    try:
        job, resumed_from = _start(cell)
        with open(run_dir / ATTEMPTS, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                                "resumed_from": resumed_from}) + "\n")
        write_json(run_dir / CELL_FILE, record | {"status": "running"})  # names the cell: a rerun of another plan refuses it
        state = job.run()
        record |= {"steps": state.step, "seconds": state.seconds, "resumed_from": resumed_from}
        if job.final_eval is not None:
            record |= {"psnr": job.final_eval.mean_psnr, "ssim": job.final_eval.mean_ssim}
            iio.imwrite(run_dir / THUMBNAIL, to_uint8(job.final_eval.images[0]))
        if cell.mesh is not None:
            record |= _mesh(cell, run_dir)
        record["status"] = "done"
    except ForeignRunFolder as error:  # recorded by the driver only: the folder is not this cell's to write
        return record | {"status": "failed", "error": str(error), "wall_seconds": time.time() - started}
    except Exception as error:  # noqa: BLE001 - a cell's failure, whatever it is, is recorded and the batch goes on
        record |= {"status": "failed", "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()}
    record["wall_seconds"] = time.time() - started
    if (run_dir / "config.json").is_file():
        write_json(run_dir / CELL_FILE, record)
    return record
