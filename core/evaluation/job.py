"""Entry point of a retrieval-evaluation job: `python -m core.evaluation.job <run_id>`.

Started in the background by `start_retrieval_eval` (the Retrieval eval page), so closing the tab
or refreshing loses nothing: the job reports its progress to `progress.jsonl` in the run folder,
checks the STOP file between steps, and sets the run done, stopped or failed. Exit status: 0 when
the run ends done or stopped, 1 when it failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from core.progress import ProgressEvent
from core.runs.jobs import prepare_job_process

if TYPE_CHECKING:
    from core.config import ChromaSettings
    from core.evaluation.config import RetrievalEvalConfig
    from core.runs.folders import Run

JOB_MODULE = "core.evaluation.job"


def start_retrieval_eval(config: RetrievalEvalConfig, chroma: ChromaSettings | None = None) -> Run:
    """Create the retrieval_eval run (a refused configuration raises before any run exists) and
    run it as a background job against `chroma` (default: the environment's); returns the run,
    which is `running`."""
    from core.config import chroma_env
    from core.evaluation.stage import create_retrieval_eval_run
    from core.runs.jobs import start_job

    run = create_retrieval_eval_run(config)
    start_job(run, module=JOB_MODULE, env=chroma_env(chroma) if chroma else None)
    return run


def progress_writer(run: Run):  # noqa: ANN201 - a ProgressCallback
    """A progress callback that appends each event to the run's progress.jsonl, in the shape
    `core.runs.jobs.job_status` reads (a `log` event with the count, a `phase` with the text)."""
    from core.runs.jobs import append_event

    last: list[str] = [""]

    def write(event: ProgressEvent) -> None:
        phase = f"{event.stage}: {event.message}" if event.message else event.stage
        if phase != last[0]:
            append_event(run.path, {"event": "phase", "message": phase})
            last[0] = phase
        append_event(
            run.path,
            {
                "event": "log",
                "step": event.done,
                "total_steps": event.total,
                "eta_s": event.eta_s,
            },
        )

    return write


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set the offline environment, run the evaluation."""
    parser = argparse.ArgumentParser(prog=f"python -m {JOB_MODULE}", description=__doc__)
    parser.add_argument("run_id", help="the retrieval_eval run to run (made by the page or CLI)")
    args = parser.parse_args(argv)
    prepare_job_process()
    from core.config import chroma_settings_from_env
    from core.errors import StoppedError
    from core.evaluation.stage import run_retrieval_eval
    from core.runs.folders import load_run
    from core.runs.jobs import append_event, stop_requested

    run = load_run(args.run_id)
    try:
        run_retrieval_eval(
            run,
            chroma_settings=chroma_settings_from_env(),
            on_progress=progress_writer(run),
            should_stop=lambda: stop_requested(run.path),
        )
    except StoppedError:
        append_event(run.path, {"event": "end", "status": "stopped"})
        print(f"retrieval eval {run.id} ended: stopped", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - the run is marked failed with the message
        fresh = load_run(run.id)
        if fresh.manifest.status == "running":  # failed before the stage could say so
            fresh.set_status("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        append_event(run.path, {"event": "end", "status": "failed", "error": str(exc)[:500]})
        print(f"retrieval eval {run.id} ended: failed: {exc}", flush=True)
        return 1
    append_event(run.path, {"event": "end", "status": "done"})
    print(f"retrieval eval {run.id} ended: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
