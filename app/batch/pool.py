"""Running a plan's cells: one scheduler, two executors.

The scheduler (`run_batch`) skips the cells a previous run finished, starts a distillation once its
teacher's fit is done (and fails it, naming the teacher, where that failed), keeps `OUT/batch.json`
(every cell's state and record: the driver is its only writer) and shows the batch's progress.
The executors run cells and hand back their records:

- `LocalPool`: a process per cell (`worker.py`), `jobs` at a time with `threads` each; a worker
  killed by a signal is started again (it resumes from its checkpoint) up to `retries` times.
- `RayPool`: the same cells as Ray tasks on an existing cluster (`ray.init(address=...)`), with
  `num_cpus=threads`, `num_gpus` and Ray's own `max_retries` for a worker that dies.

Ctrl-C stops the batch: the running cells save a checkpoint, and running the plan again resumes them.
"""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from onefield.errors import UserError

from .cell import is_done, read_record, run_cell, write_json
from .plan import BatchPlan, Cell

BATCH_FILE = "batch.json"
PENDING, RUNNING, DONE, SKIPPED, FAILED = "pending", "running", "done", "skipped", "failed"
INTERRUPTED = "interrupted"  # running when the batch was stopped: its checkpoint resumes it next time
LOG_TAIL = 30  # lines of a dead worker's log in its record


def cell_slug(cell: Cell, out: Path) -> str:
    """A file name for the cell: its run folder relative to the output root, '__'-joined."""
    return "__".join(Path(cell.run_dir).relative_to(out).parts)


def default_layout(jobs: int | None, threads: int | None, device: str, cores: int | None = None) -> tuple[int, int]:
    """(jobs, threads per job) filling the machine: jobs x threads = cores. Two threads per job unless told
    (the kernels scale sub-linearly: more jobs of fewer threads finish a batch sooner); one job per GPU."""
    cores = cores or len(os.sched_getaffinity(0))
    if threads is None:
        threads = max(1, cores // jobs) if jobs else min(2, cores)
    if jobs is None:
        jobs = 1 if device.startswith("cuda") else max(1, cores // threads)
    if jobs < 1 or threads < 1:
        raise UserError(f"--jobs and --threads must be at least 1, got {jobs} and {threads}")
    return jobs, threads


class Executor(Protocol):
    slots: int  # cells it runs at once
    name: str

    def start(self, cell: Cell) -> None: ...

    def wait(self, timeout: float) -> list[tuple[Cell, dict[str, Any]]]:
        """The cells that ended within `timeout` seconds, each with its record."""

    def stop(self, signalled: bool) -> None:
        """Stop the running cells, each saving a checkpoint (`signalled`: they had the Ctrl-C already)."""

    def close(self) -> None: ...


def failed_record(cell: Cell, error: str) -> dict[str, Any]:
    return {"key": cell.key, "cell": dataclasses.asdict(cell), "run": cell.run_dir, "status": FAILED, "error": error}


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _Worker:
    cell: Cell
    process: subprocess.Popen
    result: Path
    log: Path
    attempts: int


class LocalPool:
    """Cells as worker processes on this machine."""

    def __init__(self, out: Path, jobs: int, threads: int, retries: int):
        self.out, self.slots, self.threads, self.retries = out, jobs, threads, retries
        self.name = f"local: {jobs} job(s) x {threads} thread(s)"
        self.spool, self.logs = out / ".batch", out / "logs"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers: list[_Worker] = []

    def start(self, cell: Cell, attempts: int = 1) -> None:
        slug = cell_slug(cell, self.out)
        spec, result, log = self.spool / f"{slug}.cell.json", self.spool / f"{slug}.result.json", self.logs / f"{slug}.log"
        spec.write_text(cell.to_json())
        result.unlink(missing_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        with open(log, "a") as f:
            f.write(f"---- attempt {attempts}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            f.flush()
            process = subprocess.Popen([sys.executable, "-m", "onefield.app.batch.worker", str(spec), str(result),
                                        str(self.threads)], stdout=f, stderr=subprocess.STDOUT, env=env)
        self.workers.append(_Worker(cell, process, result, log, attempts))

    def _ended(self, w: _Worker) -> dict[str, Any] | None:
        """The record of a worker that exited; None where it was killed and is started again."""
        code = w.process.returncode
        if code == 0 and w.result.is_file():
            return json.loads(w.result.read_text())
        if code < 0 and -code != signal.SIGINT and w.attempts <= self.retries:
            self.start(w.cell, w.attempts + 1)  # resumes from the cell's newest checkpoint
            return None
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return failed_record(w.cell, f"the worker {how} (attempt {w.attempts} of {self.retries + 1}); the end of "
                                     f"its log {w.log}:\n{_tail(w.log)}")

    def wait(self, timeout: float) -> list[tuple[Cell, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            ended = [w for w in self.workers if w.process.poll() is not None]
            finished = []
            for w in ended:
                self.workers.remove(w)
                record = self._ended(w)
                if record is not None:
                    finished.append((w.cell, record))
            if finished or time.monotonic() >= deadline:
                return finished
            time.sleep(0.2)

    def stop(self, signalled: bool) -> None:
        for w in self.workers:
            if not signalled:  # a Ctrl-C in the terminal reached the workers with the driver
                w.process.send_signal(signal.SIGINT)
        for w in self.workers:
            try:
                w.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                w.process.kill()
        self.workers.clear()

    def close(self) -> None:
        self.stop(signalled=False)


def _ray_cell(cell_json: str, threads: int, log: str) -> dict[str, Any]:
    """A cell as a Ray task; its output goes to the batch's log of the cell, as the local pool's does."""
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"---- ray task, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        return run_cell(Cell.from_json(cell_json), threads)


class RayPool:
    """Cells as tasks of an existing Ray cluster. The nodes must see the datasets and OUT at the same
    paths (one machine, or a shared file system) and have onefield installed."""

    def __init__(self, address: str, out: Path, threads: int, gpus: float, retries: int):
        import ray

        self.ray, self.out, self.threads = ray, out, threads
        try:
            ray.init(address=address, logging_level="warning", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"cannot reach the Ray cluster at {address} ({error}); start one with `ray start --head` "
                            "or pass the address `ray status` shows") from error
        cpus, have_gpus = ray.cluster_resources().get("CPU", 0), ray.cluster_resources().get("GPU", 0)
        if gpus > have_gpus:
            raise UserError(f"each cell asks for {gpus} GPU(s) but the cluster at {address} has {have_gpus}")
        if threads > cpus:
            raise UserError(f"each cell asks for {threads} CPUs (--threads) but the cluster at {address} has {cpus:g}")
        by_gpu = int(have_gpus // gpus) if gpus else 1 << 30
        self.slots = max(1, min(int(cpus // threads), by_gpu))
        self.name = f"ray {address}: {self.slots} task(s) x {threads} CPU(s)" + (f", {gpus:g} GPU(s)" if gpus else "")
        self.task = ray.remote(_ray_cell).options(num_cpus=threads, num_gpus=gpus, max_retries=retries,
                                                  retry_exceptions=False)
        self.retries = retries
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.refs: dict[Any, Cell] = {}

    def start(self, cell: Cell) -> None:
        log = self.out / "logs" / f"{cell_slug(cell, self.out)}.log"
        self.refs[self.task.remote(cell.to_json(), self.threads, str(log))] = cell

    def wait(self, timeout: float) -> list[tuple[Cell, dict[str, Any]]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        finished = []
        for ref in ready:
            cell = self.refs.pop(ref)
            try:
                finished.append((cell, self.ray.get(ref)))
            except self.ray.exceptions.RayError as error:  # the worker died more than max_retries times
                finished.append((cell, failed_record(cell, f"the Ray task failed after {self.retries} retries: "
                                                           f"{type(error).__name__}: {error}")))
        return finished

    def stop(self, signalled: bool) -> None:
        for ref in self.refs:
            self.ray.cancel(ref)  # a KeyboardInterrupt in the task: it saves a checkpoint
        self.refs.clear()

    def close(self) -> None:
        self.stop(signalled=False)
        self.ray.shutdown()  # the driver leaves; the cluster stays


@dataclass
class CellState:
    cell: Cell
    status: str = PENDING
    record: dict[str, Any] | None = None
    started: float | None = None

    def row(self) -> dict[str, Any]:
        return {"key": self.cell.key, "run": self.cell.run_dir, "status": self.status, **(self.record or {})}


def eta_seconds(states: list[CellState], slots: int, now: float) -> float | None:
    """Seconds until the batch ends: the cells left, each expected to take the mean wall time of the cells
    this run finished (before any: its time budget), spread over the executor's slots; None when unknown."""
    walls = [s.record["wall_seconds"] for s in states if s.status in (DONE, FAILED) and s.record
             and "wall_seconds" in s.record]
    mean = sum(walls) / len(walls) if walls else None
    work = 0.0
    for s in states:
        if s.status not in (PENDING, RUNNING):
            continue
        minutes = s.cell.trainer.get("minutes")
        expected = mean if mean is not None else (60.0 * minutes if minutes else None)
        if expected is None:
            return None
        work += max(expected - (now - s.started if s.status == RUNNING and s.started else 0.0), 0.0)
    return work / max(slots, 1)


def _dependency(state: CellState, states: dict[str, CellState]) -> str | None:
    """PENDING while the cell's teacher runs, FAILED where it failed, None when the cell may start."""
    if state.cell.teacher is None:
        return None
    teacher = states[state.cell.teacher].status
    return None if teacher in (DONE, SKIPPED) else FAILED if teacher == FAILED else PENDING


class Batch:
    """A plan's cells and their states, written to OUT/batch.json after every change."""

    def __init__(self, out: Path, cells: list[Cell], executor_name: str, slots: int):
        self.out = out
        self.states = {c.run_dir: CellState(c) for c in cells}
        for s in self.states.values():
            if is_done(s.cell):
                s.status, s.record = SKIPPED, read_record(Path(s.cell.run_dir))
        self.started, self.executor_name, self.slots = time.time(), executor_name, slots

    def count(self, *statuses: str) -> int:
        return sum(s.status in statuses for s in self.states.values())

    def save(self) -> None:
        data = {"started": self.started, "executor": self.executor_name,
                "counts": {k: self.count(k) for k in (PENDING, RUNNING, DONE, SKIPPED, FAILED)},
                "cells": [s.row() for s in self.states.values()]}
        write_json(self.out / BATCH_FILE, data)

    def ready(self) -> Iterator[CellState]:
        """Pending cells that may start; cells whose teacher failed are marked failed on the way."""
        for s in self.states.values():
            if s.status != PENDING:
                continue
            blocked = _dependency(s, self.states)
            if blocked == FAILED:
                s.status, s.record = FAILED, failed_record(s.cell, f"its teacher {s.cell.teacher} failed")
            elif blocked is None:
                yield s


def run_batch(plan: BatchPlan, jobs: int | None = None, threads: int | None = None, ray: str | None = None,
              gpus: float = 0.0, retries: int = 2,
              on_change: Callable[[Batch, CellState | None], None] | None = None) -> Batch:
    """Run every cell of the plan not finished before, `jobs` at a time with `threads` each (or on the Ray
    cluster at `ray`), then write the report. `on_change(batch, cell)` is called as a cell starts or ends,
    and with cell None about every second."""
    plan.check()
    out = Path(plan.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = plan.cells()
    write_json(out / "plan.json", [dataclasses.asdict(c) for c in cells])
    jobs, threads = default_layout(jobs, threads, plan.device)
    executor: Executor = RayPool(ray, out, threads, gpus, retries) if ray else LocalPool(out, jobs, threads, retries)
    batch = Batch(out, cells, executor.name, executor.slots)
    notify = on_change or (lambda b, c: None)
    batch.save()
    notify(batch, None)
    try:
        while batch.count(PENDING, RUNNING):
            for s in batch.ready():
                if batch.count(RUNNING) >= executor.slots:
                    break
                executor.start(s.cell)
                s.status, s.started = RUNNING, time.time()
                notify(batch, s)
            for cell, record in executor.wait(1.0):
                s = batch.states[cell.run_dir]
                s.status, s.record = (record["status"] if record["status"] in (DONE, SKIPPED) else FAILED), record
                notify(batch, s)
            batch.save()
            notify(batch, None)
    except BaseException as error:
        executor.stop(signalled=isinstance(error, KeyboardInterrupt))
        for s in batch.states.values():
            if s.status == RUNNING:
                s.status = INTERRUPTED
        raise
    finally:
        executor.close()
        batch.save()
    from .report import write_report

    write_report(out)
    return batch
