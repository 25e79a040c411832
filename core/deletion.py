"""Deleting a run with everything built on it: the runs that depend on it (children before
parents, so none is ever left an orphan) and the Chroma collections of every deleted corpus or
model run. Pages and the CLI call this one function."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import ChromaSettings
from core.errors import RunError, StoreError
from core.runs.folders import delete_run, load_run
from core.runs.jobs import running_jobs
from core.runs.lineage import descendants_of


@dataclass(frozen=True)
class DeletionReport:
    """What a cascade delete removed, and what it could not."""

    runs: list[str]
    collections: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_deletion(run_id: str) -> list[str]:
    """The runs a delete of `run_id` removes: its dependants first, then itself."""
    load_run(run_id)  # a clear RunError when it does not exist
    return [r.id for r in descendants_of(run_id)] + [run_id]


def delete_with_dependants(run_id: str, settings: ChromaSettings | None = None) -> DeletionReport:
    """Delete `run_id`, every run that depends on it, and their Chroma collections.

    The runs go first; a Chroma store that cannot be reached leaves its collections in place
    and says so in the report's warnings (they are only search indexes, rebuilt on demand)."""
    from core.documents import vector_store as store
    from core.runs.actor import require
    from core.runs.audit import record

    require("delete", f"delete {run_id}")
    settings = settings or ChromaSettings()
    order = plan_deletion(run_id)
    running = {r.id for r in running_jobs()}
    busy = [rid for rid in order if rid in running]
    if busy:  # its job would write the folder back, half made
        raise RunError(
            f"Cannot delete {run_id}: {', '.join(busy)} still has a background job running.",
            fix="stop the job first (the Stop button on its page), then delete",
        )
    warnings: list[str] = []
    try:
        names = store.collections_of_runs(settings, order)
    except StoreError as exc:
        names = []
        warnings.append(f"Chroma collections of the deleted runs were not removed: {exc}")
    for rid in order:
        delete_run(rid, force=True)
        record("deleted", rid, "" if rid == run_id else f"depended on {run_id}")
    removed = []
    for name in names:
        try:
            store.delete_collection(settings, name)
            removed.append(name)
        except StoreError as exc:
            warnings.append(f"Chroma collection {name} was not removed: {exc}")
    return DeletionReport(runs=order, collections=removed, warnings=warnings)
