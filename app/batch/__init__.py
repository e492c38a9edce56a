"""Batch reconstruction: a plan of scenes x backends (with distillations and mesh exports), run on a
local process pool or an existing Ray cluster, resumable cell by cell, with a report."""

from .plan import BatchPlan, Cell, make_plan, read_plan_file
from .pool import run_batch
from .report import write_report

__all__ = ["BatchPlan", "Cell", "make_plan", "read_plan_file", "run_batch", "write_report"]
