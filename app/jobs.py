"""Long work in background workers: a queue of jobs with one small surface, driven by the GUI (and
usable from Python). It holds no training logic: a job is an engine job (`FitJob`, `process`, an
export) behind the `Job` protocol, and the queue only runs it, relays pause / resume / stop between
its steps and keeps a plain `JobState` that front doors read.

A job reports through `Control.report(progress, message, **info)` between steps. That call is
where it pauses (blocking the worker) and where a stop request arrives, as `JobStopped`: each job
turns that into its own clean ending (a fit saves a checkpoint first; `process` removes its
half-written dataset). A new kind of job is a class with `kind`, `title` and `run(control)`; the
queue and the GUI's job panel need no change for it.
"""

import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from onefield.errors import UserError

from .trainer import TrainingDiverged

QUEUED, RUNNING, PAUSED, DONE, STOPPED, FAILED = "queued", "running", "paused", "done", "stopped", "failed"
FINISHED = (DONE, STOPPED, FAILED)


class JobStopped(Exception):
    """Raised inside a job's `report` when a stop was requested; the job ends cleanly and re-raises."""


@dataclass
class JobState:
    """What a front door reads: plain values (and the job's own `info`, e.g. a fit's live preview)."""

    id: str
    kind: str
    title: str
    owner: str
    status: str = QUEUED
    progress: float = 0.0  # 0..1
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    queue_position: int | None = None  # 1 = next to run
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.status not in FINISHED


class Job(Protocol):
    kind: str
    title: str

    def run(self, control: "Control") -> Any:
        """Do the work, calling `control.report` between steps; the return value is the result."""
        ...


class Control:
    """The job's side of the queue: progress reports, the pause gate and stop requests."""

    def __init__(self, state: JobState):
        self.state = state
        self._resume = threading.Event()
        self._resume.set()
        self.stop_requested = False
        self.on_pause: Callable[[], None] | None = None  # e.g. a fit's checkpoint, so a paused run loses nothing

    def report(self, progress: float | None = None, message: str | None = None, **info: Any) -> None:
        s = self.state
        if progress is not None:
            s.progress = min(max(float(progress), 0.0), 1.0)
        if message is not None:
            s.message = message
        s.info.update(info)
        if not self._resume.is_set() and not self.stop_requested:
            if self.on_pause is not None:
                self.on_pause()
            s.status = PAUSED
            self._resume.wait()
            s.status = RUNNING
        if self.stop_requested:
            raise JobStopped(f"{s.title}: stopped")

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self.stop_requested = True
        self._resume.set()


class JobQueue:
    """First in, first out, `workers` jobs at a time (one by default: two trainings on two cores
    would each run at half speed and finish no sooner)."""

    def __init__(self, workers: int = 1):
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[str] = deque()
        self._jobs: dict[str, tuple[Job, Control]] = {}
        self._ids = itertools.count(1)
        self._threads = [threading.Thread(target=self._work, name=f"onefield-job-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, job: Job, owner: str) -> JobState:
        with self._lock:
            state = JobState(f"{job.kind}-{next(self._ids)}", job.kind, job.title, owner)
            self._jobs[state.id] = (job, Control(state))
            self._pending.append(state.id)
            self._number()
            self._wake.notify()
        return state

    def state(self, job_id: str, owner: str) -> JobState:
        """The job's state; another owner's job is as unknown as a job that does not exist."""
        entry = self._jobs.get(job_id)
        if entry is None or entry[1].state.owner != owner:
            raise UserError(f"no job {job_id!r} in this session")
        return entry[1].state

    def jobs(self, owner: str) -> list[JobState]:
        with self._lock:
            return [c.state for _, c in self._jobs.values() if c.state.owner == owner]

    def pause(self, job_id: str, owner: str) -> None:
        self._control(job_id, owner).pause()

    def resume(self, job_id: str, owner: str) -> None:
        self._control(job_id, owner).resume()

    def stop(self, job_id: str, owner: str) -> None:
        """A queued job is dropped; a running one ends at its next step, keeping its work."""
        control = self._control(job_id, owner)
        with self._lock:
            if job_id in self._pending:
                self._pending.remove(job_id)
                control.state.status, control.state.finished = STOPPED, time.time()
                self._number()
                return
        control.stop()

    def wait(self, job_id: str, owner: str, timeout: float | None = None) -> JobState:
        """Block until the job has finished (for scripts and tests; the GUI polls `state`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.state(job_id, owner)
        while state.active:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still {state.status} after {timeout} s")
            time.sleep(0.05)
        return state

    def _control(self, job_id: str, owner: str) -> Control:
        self.state(job_id, owner)
        return self._jobs[job_id][1]

    def _number(self) -> None:
        for position, job_id in enumerate(self._pending, 1):
            self._jobs[job_id][1].state.queue_position = position

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._wake.wait()
                job_id = self._pending.popleft()
                job, control = self._jobs[job_id]
                control.state.queue_position = None
                self._number()
            self._run(job, control)

    @staticmethod
    def _run(job: Job, control: Control) -> None:
        s = control.state
        s.status, s.started = RUNNING, time.time()
        try:
            s.result = job.run(control)
            s.status, s.progress = DONE, 1.0
        except JobStopped:
            s.status = STOPPED
        except (UserError, TrainingDiverged) as error:  # the user's to fix: one line, no traceback
            s.status, s.error = FAILED, str(error)
        except Exception as error:  # a bug: the GUI stays usable, the trace goes to the server's log
            traceback.print_exc()
            s.status, s.error = FAILED, f"{type(error).__name__}: {error}"
        finally:
            s.finished = time.time()
