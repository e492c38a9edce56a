"""Rich progress for a fit job in a terminal: loss, PSNR, samples per ray, rays/s and ETA."""

import math
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .fit import FitJob
from .trainer import TrainingDiverged, TrainState


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def status_line(s: TrainState) -> str:
    eta = "-" if s.eta_seconds is None else f"{s.eta_seconds:.0f}s"
    held = f" | held-out {_fmt(s.eval_psnr, '.2f')} dB" if s.eval_psnr is not None else ""
    return (f"loss {_fmt(s.loss, '.4f')} | PSNR {_fmt(s.train_psnr, '.2f')} dB{held} | "
            f"{s.samples_per_ray:.1f} samples/ray | {s.rays_per_second / 1000:.1f}k rays/s | ETA {eta}")


@contextmanager
def stop_on_ctrl_c() -> Iterator[list[bool]]:
    """Ctrl-C sets a flag that the loop checks between steps, so the run stops at a step boundary.
    Python's own handler raises KeyboardInterrupt wherever the main thread is, which can be inside
    a finalizer, where it is printed and dropped (the run went on). A second Ctrl-C raises at once."""
    requested = [False]

    def handler(signum, frame):
        if requested[0]:
            raise KeyboardInterrupt
        requested[0] = True

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield requested
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def train_with_progress(job: FitJob, console: Console | None = None) -> int:
    """Run `job` with a progress bar; returns the command's exit code."""
    console = console or Console(stderr=True)
    trainer = job.trainer
    console.print(f"run: {job.run_dir}")
    columns = (TextColumn("[bold]fit"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    try:
        with stop_on_ctrl_c() as interrupted, Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("fit", total=trainer.config.steps, completed=trainer.state.step, status="")

            def on_step(s: TrainState) -> None:
                if interrupted[0]:
                    raise KeyboardInterrupt  # job.run saves the checkpoint
                if s.step % 10 == 0:
                    progress.update(task, completed=s.step, status=status_line(s))

            state = job.run(on_step)
            progress.update(task, completed=state.step, status=status_line(state))
    except KeyboardInterrupt:
        console.print(f"interrupted at step {trainer.state.step}; checkpoint saved. Continue with: "
                      f"onefield resume {job.run_dir}")
        return 130
    except TrainingDiverged as error:
        console.print(f"onefield fit: {error}\ncheckpoint of the last good state: {job.run_dir}/checkpoints/latest")
        return 3
    if job.final_eval is not None:
        r = job.final_eval
        print(f"held-out PSNR {r.mean_psnr:.2f} dB, SSIM {r.mean_ssim:.4f} over {len(r.psnr)} views "
              f"after {state.step} steps ({state.seconds:.0f} s of training)")
    print(f"run: {job.run_dir.resolve()}")
    sys.stdout.flush()
    return 0


def batch_with_progress(plan, console: Console | None = None, **options) -> int:
    """Run a batch plan (`app.batch.run_batch` options) with one bar for the whole batch and a line per
    finished cell; returns the command's exit code (1 when a cell failed)."""
    import time

    from .batch.pool import DONE, FAILED, PENDING, RUNNING, SKIPPED, eta_seconds, run_batch

    console = console or Console(stderr=True, soft_wrap=True)  # a line per cell, also in logs
    columns = (TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("batch", total=None, status="")
        announced = []

        def on_change(batch, cell) -> None:
            if not announced:
                announced.append(True)
                console.print(f"batch: {len(batch.states)} cell(s) in {batch.out} on {batch.executor_name}; "
                              f"{batch.count(SKIPPED)} finished before")
            if cell is not None and cell.status in (DONE, FAILED):
                r = cell.record
                what = (f"{r['psnr']:.2f} dB, {r['steps']} steps in {r['seconds']:.0f} s" if r.get("psnr") is not None
                        else r.get("error", "").splitlines()[0] if cell.status == FAILED else "no held-out views")
                console.print(f"{cell.status:>6} {cell.cell.key}: {what}")
            eta = eta_seconds(list(batch.states.values()), batch.slots, time.time())
            status = (f"{batch.count(DONE)} done, {batch.count(RUNNING)} running, {batch.count(FAILED)} failed, "
                      f"{batch.count(PENDING)} waiting | ETA {'-' if eta is None else f'{eta:.0f}s'}")
            progress.update(task, total=len(batch.states), completed=batch.count(DONE, SKIPPED, FAILED), status=status)

        try:
            batch = run_batch(plan, on_change=on_change, **options)
        except KeyboardInterrupt:
            console.print("interrupted: the running cells saved a checkpoint. Run the same plan again to go on "
                          "(finished cells are skipped).")
            return 130
    console.print(f"report: {batch.out / 'report.html'} (results.csv, results.json)")
    return 1 if batch.count(FAILED) else 0
