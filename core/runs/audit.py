"""The audit log: who made, started, stopped, exported or deleted which run, and who signed in,
one JSON line per event in `audit.jsonl` in the data directory.

Append-only: each event is one `write` on a file opened for appending, under an exclusive lock,
then flushed to disk (`fsync`) before the action's caller goes on. A crash mid-write can leave a
half line at the end: the next writer starts a new line after it, and readers skip it, so one
torn event never hides another.

Rotated by size: when a line would take the file past `RAGBENCH_AUDIT_MAX_MB` (10 MB), the file
is renamed `audit-<time>.jsonl` (kept, never deleted) and a new one begun; readers go on into the
rotated files when the current one holds too few events.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
ROTATED_GLOB = "audit-*.jsonl"
MAX_ENV = "RAGBENCH_AUDIT_MAX_MB"
TAIL_BYTES = 4_000_000  # what a page reads of a long log (thousands of events)


def max_bytes() -> int:
    """The size past which the log is rotated."""
    try:
        return max(1, int(float(os.environ.get(MAX_ENV) or 10) * 1024 * 1024))
    except ValueError:
        return 10 * 1024 * 1024


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
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            _lock(fd)
            if not _is_current(fd, path):  # rotated while we waited for the lock: reopen
                continue
            size = os.fstat(fd).st_size
            if size and size + len(line) > max_bytes():
                _rotate(path)
                continue
            if size and _last_byte(path, size) != b"\n":  # a torn line from a crash: close it
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
            return
        finally:
            os.close(fd)  # releases the lock


def _is_current(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _rotate(path: Path) -> None:
    """Keep the full log under a new name (called holding its lock); the next write begins a
    new one."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        target = path.with_name(f"audit-{stamp}-{n:03d}.jsonl")  # names sort by age
        if not target.exists():
            os.replace(path, target)
            return
    raise OSError(f"cannot rotate {path}: too many rotations this second")


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


def audit_files(root: Path | None = None) -> list[Path]:
    """The log and its rotated files, newest first."""
    path = audit_path(root)
    rotated = sorted(path.parent.glob(ROTATED_GLOB), reverse=True)
    return ([path] if path.exists() else []) + rotated


def read_audit(
    limit: int | None = 500, root: Path | None = None, actions: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` events (all with None), newest first, of the given `actions` only
    when some are given; torn lines are skipped. Reads on into rotated files as needed."""
    events: list[dict[str, Any]] = []
    for path in audit_files(root):
        events.extend(
            e for e in _read_file(path, limit is not None) if not actions or e["action"] in actions
        )
        if limit is not None and len(events) >= limit:
            break
    return events if limit is None else events[:limit]


def _read_file(path: Path, tail: bool) -> list[dict[str, Any]]:
    """One file's events, newest first (only its last TAIL_BYTES when `tail`)."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES) if tail else 0
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
    return events
