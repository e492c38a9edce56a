"""The job queue on its own: order and queue positions, stop and pause between steps, a paused job
giving its worker back and resuming under its id, failures kept as messages, owners kept apart,
and nothing of a finished job kept in memory."""

import threading
import weakref

import pytest

from onefield.app.jobs import JobQueue, JobStopped
from onefield.errors import UserError


class Counter:
    """Counts to `n`, reporting after each count; `gate` holds it before its first step."""

    kind = "count"

    def __init__(self, n: int, start: int = 0, gate: threading.Event | None = None, fail_at: int | None = None):
        self.n, self.count, self.gate, self.fail_at = n, start, gate, fail_at
        self.title = f"count to {n}"
        self.stopped_at: int | None = None

    def run(self, control):
        if self.gate is not None:
            self.gate.wait(10)
        try:
            while self.count < self.n:
                self.count += 1
                if self.count == self.fail_at:
                    raise UserError(f"bad input at {self.count}")
                control.report(self.count / self.n, f"at {self.count}", count=self.count)
                threading.Event().wait(0.002)
        except JobStopped:
            self.stopped_at = self.count  # the job's clean ending: its work so far is kept
            raise
        return self.count


class Resumable(Counter):
    def resumed(self):
        return Resumable(self.n, self.count)


def test_jobs_run_in_order_and_queued_ones_know_their_place():
    queue, gate = JobQueue(1), threading.Event()
    first = queue.submit(Counter(5, gate=gate), "a")
    second, third = queue.submit(Counter(3), "a"), queue.submit(Counter(2), "b")
    while first.status != "running":
        threading.Event().wait(0.01)
    assert (second.queue_position, third.queue_position) == (1, 2)
    gate.set()
    assert [queue.wait(s.id, s.owner, 10).result for s in (first, second, third)] == [5, 3, 2]
    assert third.queue_position is None and third.progress == 1.0 and third.status == "done"
    assert len({first.id, second.id, third.id, JobQueue(1).submit(Counter(1), "a").id}) == 4  # ids never repeat


def test_stop_ends_a_running_job_between_steps_and_drops_a_queued_one():
    queue, gate = JobQueue(1), threading.Event()
    running_job = Counter(10_000, gate=gate)
    running = queue.submit(running_job, "a")
    queued = queue.submit(Counter(3), "a")
    queue.stop(queued.id, "a")
    assert queued.status == "stopped" and queued.result is None
    gate.set()
    while running.info.get("count", 0) < 5:
        threading.Event().wait(0.01)
    queue.stop(running.id, "a")
    assert queue.wait(running.id, "a", 10).status == "stopped"
    assert running_job.stopped_at == running.info["count"] < 10_000


def test_pause_gives_the_worker_back_and_resume_continues_under_the_same_id():
    queue = JobQueue(1)
    job = queue.submit(Resumable(3000), "a")
    while job.info.get("count", 0) < 5:
        threading.Event().wait(0.01)
    queue.pause(job.id, "a")
    while job.status != "paused":
        threading.Event().wait(0.01)
    paused_at = job.info["count"]
    other = queue.submit(Counter(3), "a")
    assert queue.wait(other.id, "a", 10).result == 3  # ran while the first was paused
    assert job.info["count"] == paused_at
    queue.resume(job.id, "a")
    assert queue.wait(job.id, "a", 30).result == 3000 and job.status == "done"
    with pytest.raises(UserError, match="not paused"):
        queue.resume(job.id, "a")


def test_a_job_that_cannot_pause_says_so():
    queue, gate = JobQueue(1), threading.Event()
    job = queue.submit(Counter(100, gate=gate), "a")
    with pytest.raises(UserError, match="cannot pause"):
        queue.pause(job.id, "a")
    gate.set()
    queue.wait(job.id, "a", 10)


def test_failures_are_messages_and_the_queue_goes_on():
    queue = JobQueue(1)
    bad = queue.submit(Counter(10, fail_at=4), "a")
    good = queue.submit(Counter(2), "a")
    assert queue.wait(bad.id, "a", 10).status == "failed" and bad.error == "bad input at 4"
    assert queue.wait(good.id, "a", 10).result == 2


def test_owners_are_kept_apart():
    queue = JobQueue(1)
    job = queue.submit(Counter(1), "a")
    for call in (queue.state, queue.stop, queue.pause, queue.resume):
        with pytest.raises(UserError, match="no job"):
            call(job.id, "b")
    assert queue.jobs("b") == [] and [s.id for s in queue.jobs("a")] == [job.id]


def test_a_finished_job_is_not_kept_in_memory():
    queue = JobQueue(1)
    work = Counter(3)
    alive = weakref.ref(work)
    state = queue.submit(work, "a")
    del work
    queue.wait(state.id, "a", 10)
    assert alive() is None  # its trainer, images and model would be freed with it
