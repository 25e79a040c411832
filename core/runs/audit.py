"""The audit log: who made, started, stopped, exported or deleted which run, and who signed in,
one JSON line per event in `audit.jsonl` in the data directory.

Append-only: each event is one `write` on a file opened for appending, under an exclusive lock,
then flushed to disk (`fsync`) before the action's caller goes on. A crash mid-write can leave a
half line at the end: the next writer starts a new line after it, and readers skip it, so one
torn event never hides another.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
TAIL_BYTES = 4_000_000  # what a page reads of a long log (thousands of events)


def audit_path(root: Path | None = None) -> Path:
    """The audit log of a data directory (default: the app's)."""
    from core.config import data_dir

    return (root or data_dir()) / AUDIT_FILE


def record(
    action: str,
    run_id: str = "",
    detail: str = "",
    *,
    user: str | None = None,
    root: Path | None = None,
) -> None:
    """Append one event: now, the acting user (or `user`, for sign-ins), the action, the run and
    a detail, to the audit log of the data directory `root` (default: the app's)."""
    from core.runs.actor import acting

    actor = acting()
    event = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": user if user is not None else actor.name,
        "role": "" if user is not None else actor.role,
        "action": action,
        "run": run_id,
        "detail": detail,
    }
    line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
    path = audit_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        _lock(fd)
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":  # a torn line from a crash: close it first
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def record_export(run_ids: list[str] | tuple[str, ...], what: str) -> None:
    """One `exported` event per run that left the app (a report, a zip, a model)."""
    for run_id in run_ids:
        record("exported", run_id, what)


def _lock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):  # no fcntl (Windows): appends stay atomic
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


def _last_byte(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1)


def read_audit(limit: int | None = 500, root: Path | None = None) -> list[dict[str, Any]]:
    """The newest `limit` events (all with None), newest first; torn lines are skipped."""
    path = audit_path(root)
    if not path.exists():
        return []
    with path.open("rb") as handle:  # only the tail when a limit is given: the log only grows
        size = handle.seek(0, os.SEEK_END)
        start = 0 if limit is None else max(0, size - TAIL_BYTES)
        handle.seek(start)
        data = handle.read()
    if start:
        data = data.split(b"\n", 1)[-1]  # the first line may be cut
    events = []
    for raw in data.splitlines():
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and "action" in event:
            events.append(event)
    events.reverse()
    return events if limit is None else events[:limit]
