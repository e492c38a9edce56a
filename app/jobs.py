"""Long work in background workers: a queue of jobs with one small surface, driven by the GUI (and
usable from Python). It holds no training logic: a job is an engine job (`FitJob`, `process`)
behind the `Job` protocol, and the queue only runs it, relays pause / resume / stop between its
steps and keeps a plain `JobState` that front doors read.

A job reports through `Control.report(progress, message, **info)` between steps; that call is
where a stop or a pause arrives, as `JobStopped` (or its subclass `JobPaused`). Each job turns it
into its own clean ending: a fit saves a checkpoint first, `process` removes its half-written
dataset. A paused job gives its worker back (a paused training must not hold up everyone
else's); `resume` queues the job's `resumed()` continuation (a fit: `FitJob.resume` from that
checkpoint), under the same id. A new kind of job is a class with `kind`, `title` and
`run(control)` (and `resumed()` if it can pause); the queue and the GUI's job panel need no change.
"""

import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from onefield.errors import UserError

from .trainer import TrainingDiverged

QUEUED, RUNNING, PAUSED, DONE, STOPPED, FAILED = "queued", "running", "paused", "done", "stopped", "failed"
FINISHED = (DONE, STOPPED, FAILED)
_ids = itertools.count(1)  # one numbering for every queue of the process: ids never collide


class JobStopped(Exception):
    """Raised inside a job's `report` when a stop was requested; the job ends cleanly and re-raises."""


class JobPaused(JobStopped):
    """A pause: the job ends like a stop (its work saved), and `resume` continues it."""


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
    """The job's side of the queue: progress, and the point where stop and pause requests arrive."""

    def __init__(self, state: JobState):
        self.state = state
        self.request: type[JobStopped] | None = None  # JobStopped or JobPaused, once asked for

    def update(self, progress: float | None = None, message: str | None = None, **info: Any) -> None:
        """Record progress without being interruptible (e.g. the report of a finished job)."""
        s = self.state
        if progress is not None:
            s.progress = min(max(float(progress), 0.0), 1.0)
        if message is not None:
            s.message = message
        s.info.update(info)

    def report(self, progress: float | None = None, message: str | None = None, **info: Any) -> None:
        """Record progress; raise the requested JobStopped / JobPaused, if any (between two steps)."""
        self.update(progress, message, **info)
        if self.request is not None:
            raise self.request(f"{self.state.title}: {'paused' if self.request is JobPaused else 'stopped'}")


class JobQueue:
    """First in, first out, `workers` jobs at a time (one by default: two trainings on two cores
    would each run at half speed and finish no sooner)."""

    def __init__(self, workers: int = 1):
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[str] = deque()
        self._jobs: dict[str, Job | None] = {}  # None once finished: nothing of a done job stays in memory
        self._controls: dict[str, Control] = {}
        self._threads = [threading.Thread(target=self._work, name=f"onefield-job-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, job: Job, owner: str, **info: Any) -> JobState:
        """Queue `job` for `owner`; `info` seeds its state (e.g. the run it will write)."""
        with self._lock:
            state = JobState(f"{job.kind}-{next(_ids)}", job.kind, job.title, owner, info=dict(info))
            self._jobs[state.id], self._controls[state.id] = job, Control(state)
            self._enqueue(state.id)
        return state

    def state(self, job_id: str, owner: str) -> JobState:
        """The job's state; another owner's job is as unknown as a job that does not exist."""
        control = self._controls.get(job_id) if isinstance(job_id, str) else None
        if control is None or control.state.owner != owner:
            raise UserError(f"no job {job_id!r} in this session")
        return control.state

    def jobs(self, owner: str) -> list[JobState]:
        with self._lock:
            return [c.state for c in self._controls.values() if c.state.owner == owner]

    def pause(self, job_id: str, owner: str) -> None:
        state = self.state(job_id, owner)
        if not hasattr(self._jobs.get(job_id), "resumed"):
            raise UserError(f"{state.title} cannot pause; stop it instead")
        if state.status == RUNNING:
            self._controls[job_id].request = JobPaused

    def resume(self, job_id: str, owner: str) -> None:
        """Queue a paused job's continuation (at the back: a paused job has no claim on the worker)."""
        state = self.state(job_id, owner)
        with self._lock:
            job = self._jobs.get(job_id)
            if state.status != PAUSED or job is None:
                raise UserError(f"{state.title} is {state.status}, not paused")
            self._jobs[job_id] = job.resumed()  # type: ignore[attr-defined]
            self._controls[job_id].request = None
            state.status = QUEUED
            self._enqueue(job_id)

    def stop(self, job_id: str, owner: str) -> None:
        """A queued or paused job is dropped (a paused fit keeps its checkpoint); a running one ends
        at its next step, keeping its work."""
        state = self.state(job_id, owner)
        with self._lock:
            if state.status in (QUEUED, PAUSED):
                if job_id in self._pending:
                    self._pending.remove(job_id)
                    self._number()
                self._finish(job_id, STOPPED)
                return
        if state.status == RUNNING:
            self._controls[job_id].request = JobStopped

    def wait(self, job_id: str, owner: str, timeout: float | None = None) -> JobState:
        """Block until the job has finished (for scripts and tests; the GUI polls `state`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.state(job_id, owner)
        while state.active:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still {state.status} after {timeout} s")
            time.sleep(0.05)
        return state

    def _enqueue(self, job_id: str) -> None:  # with the lock held
        self._pending.append(job_id)
        self._number()
        self._wake.notify()

    def _number(self) -> None:  # with the lock held
        for position, job_id in enumerate(self._pending, 1):
            self._controls[job_id].state.queue_position = position

    def _finish(self, job_id: str, status: str) -> None:
        state = self._controls[job_id].state
        state.status, state.finished, state.queue_position = status, time.time(), None
        if status in FINISHED:
            self._jobs[job_id] = None

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._wake.wait()
                job_id = self._pending.popleft()
                self._controls[job_id].state.queue_position = None
                self._number()
            self._run(job_id)  # holds the job only while it runs

    def _run(self, job_id: str) -> None:
        job, control = self._jobs[job_id], self._controls[job_id]
        assert job is not None
        s = control.state
        s.status, s.started, s.error = RUNNING, s.started or time.time(), None
        status = DONE
        try:
            s.result = job.run(control)
            s.progress = 1.0
        except JobPaused:
            status = PAUSED
        except JobStopped:
            status = STOPPED
        except (UserError, TrainingDiverged) as error:  # the user's to fix: one line, no traceback
            status, s.error = FAILED, str(error)
        except Exception as error:  # a bug: the GUI stays usable, the trace goes to the server's log
            traceback.print_exc()
            status, s.error = FAILED, f"{type(error).__name__}: {error}"
        del job  # a paused job lives on in `_jobs` for its `resumed()`; a finished one nowhere
        with self._lock:
            self._finish(job_id, status)
