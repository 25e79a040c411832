"""Waiting for background jobs in tests (the pages start them and return at once)."""

from __future__ import annotations

import time

from core.runs.folders import Run, list_runs
from core.runs.jobs import job_status, tail_log


def wait_for_job(run: Run, timeout: float = 300) -> str:
    """Wait until the run's job has ended; return its status (the job log is in the message
    of the assertion when it did not end in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job_status(run)
        if status.finished:
            return status.status
        time.sleep(0.5)
    raise AssertionError(f"job {run.id} did not end in {timeout} s:\n{tail_log(run)}")


def only_job(kind: str, timeout: float = 300) -> Run:
    """The one run of `kind` (a page just started its job), once its job has ended."""
    (run,) = list_runs(kind)
    wait_for_job(run, timeout)
    return run
