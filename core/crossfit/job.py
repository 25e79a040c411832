"""Entry point of a cross-fit job: `python -m core.crossfit.job <run_id>`.

Started in the background by `start_crossfit` (the page) or `resume_crossfit`: K fine-tunes and
the evaluation over every question, with progress in `progress.jsonl`, Stop between and inside
folds, and the run ended done, stopped (resume continues at the next unfinished fold) or failed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from core.runs.jobs import job_main

if TYPE_CHECKING:
    from core.crossfit.config import CrossfitConfig
    from core.runs.folders import Run

JOB_MODULE = "core.crossfit.job"


def start_crossfit(config: CrossfitConfig) -> Run:
    """Create the crossfit run (a refused configuration raises before any run exists) and run it
    as a background job; returns the run, which is `running`."""
    from core.crossfit.stage import create_crossfit_run
    from core.runs.jobs import start_job

    run = create_crossfit_run(config)
    start_job(run, module=JOB_MODULE)
    return run


def resume_crossfit(run_id: str) -> Run:
    """Run a stopped or failed cross-fit again: the finished folds are kept, the next
    unfinished one starts over."""
    from core.errors import RunError
    from core.runs.folders import load_run, status_phrase
    from core.runs.jobs import start_job

    run = load_run(run_id)
    if run.kind != "crossfit":
        raise RunError(f"Run {run_id} is a {run.kind} run, not a cross-fit.")
    if run.manifest.status not in ("stopped", "failed"):
        raise RunError(
            f"Cross-fit {run_id} {status_phrase(run.manifest.status)}; only a stopped or "
            "failed one resumes."
        )
    start_job(run, module=JOB_MODULE)
    return run


def main(argv: list[str] | None = None) -> int:
    """Run the cross-fit of the run named on the command line."""

    def work(run: Run, on_progress, should_stop) -> None:  # noqa: ANN001 - see StageWork
        from core.crossfit.stage import run_crossfit

        run_crossfit(run, on_progress=on_progress, should_stop=should_stop)

    return job_main(argv, module=JOB_MODULE, what="cross-fit", work=work)


if __name__ == "__main__":
    sys.exit(main())
