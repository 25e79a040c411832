"""Stages that fail leave nothing half-made: `stage_run` marks a run failed (or stopped) with the
error when its stage raises; `discard_on_failure` deletes the runs a refused stage created."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import RagbenchError, RunError, StoppedError
from core.runs.folders import delete_run

if TYPE_CHECKING:
    from core.runs.folders import Run


INTERRUPTED = (
    "Interrupted before the stage finished (the page was left, the process was stopped, or "
    "Ctrl-C); what it finished is kept."
)


@contextlib.contextmanager
def discard_on_failure(root: Path | None = None) -> Iterator[list[Run]]:
    """Runs appended to the yielded list are deleted when the block raises (newest first), so
    a failed or refused stage leaves no half-made run behind; the error is re-raised."""
    created: list[Run] = []
    try:
        yield created
    except BaseException:
        for run in reversed(created):
            with contextlib.suppress(RunError, OSError):
                delete_run(run.id, root=root, force=True)
        raise


def failure_message(exc: BaseException) -> str:
    """What a failed run says: a project error's own sentence, else the exception's type and
    text (at most 2,000 characters)."""
    message = str(exc) if isinstance(exc, RagbenchError) else f"{type(exc).__name__}: {exc}"
    return message[:2000]


@contextlib.contextmanager
def stage_run(run: Run, on_failure: Callable[[BaseException], None] | None = None) -> Iterator[Run]:
    """Mark `run` stopped (StoppedError, or an interruption that is not an error: Ctrl-C, a page
    left mid-run) or failed (any other error, with its message) when the block raises, then
    re-raise; no user sees a bare internal exception name. `on_failure` runs first, e.g. to save what was learned."""
    try:
        yield run
    except StoppedError as exc:
        run.set_status("stopped", error=str(exc))
        raise
    except Exception as exc:
        if on_failure is not None:
            on_failure(exc)
        run.set_status("failed", error=failure_message(exc))
        raise
    except BaseException as exc:  # Ctrl-C, a page left mid-run (Streamlit's StopException), exit
        if on_failure is not None:
            on_failure(exc)
        run.set_status("stopped", error=INTERRUPTED)
        raise
