"""Upload limits checked from the sizes the browser reported, before any file is read: the
per-file limit, and in team mode each user's quota over the originals of every corpus run they
built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.documents.parsing import format_size
from core.errors import InputError


@dataclass(frozen=True)
class UploadCheck:
    """Which uploads may be read, and the ones refused with their reason."""

    accepted: list[str]
    refused: dict[str, str]


def stored_bytes(user: str) -> int:
    """Bytes of the distinct files `user` stored across the corpus runs they made: a corpus run
    built from another (a document added or deleted) copies the same files and adds nothing."""
    from core.documents.stage import load_documents
    from core.errors import RunError
    from core.runs.folders import list_runs

    sizes: dict[str, int] = {}
    for run in list_runs("corpus"):
        if run.manifest.created_by != user:
            continue
        try:
            reports = load_documents(run)
        except RunError:  # a run that failed before its reports: it stored no file
            continue
        for report in reports:
            if report.status == "ok":
                sizes[report.doc_id] = int(report.size_bytes or 0)
    return sum(sizes.values())


def check_uploads(
    sizes: Sequence[tuple[str, int]], *, max_bytes: int, quota_bytes: int = 0, user: str = ""
) -> UploadCheck:
    """Files over `max_bytes` are refused one by one (never read); when the rest would take
    `user` over `quota_bytes` (0: no quota) with what they already stored, InputError."""
    refused = {
        name: f"{format_size(size)}, over the per-file limit of {format_size(max_bytes)}; not read"
        for name, size in sizes
        if size > max_bytes
    }
    accepted = [name for name, size in sizes if name not in refused]
    if quota_bytes > 0 and accepted:
        new = sum(size for name, size in sizes if name in accepted)
        used = stored_bytes(user)
        if used + new > quota_bytes:
            raise InputError(
                f"These uploads ({format_size(new)}) would take {user} over the upload quota of "
                f"{format_size(quota_bytes)}.",
                found=f"{format_size(used)} already stored in {user}'s corpus runs",
                fix="delete corpus runs you no longer need, upload fewer files, or ask an owner to "
                "raise RAGBENCH_UPLOAD_QUOTA_MB",
            )
    return UploadCheck(accepted=accepted, refused=refused)
