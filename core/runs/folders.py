"""The run store: every stage's output is a folder with a manifest.json and its artifacts.

Disk is the truth. Writes are atomic (temp file then `os.replace`), so a crash never leaves
a half-written manifest or artifact behind.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from core.config import data_dir
from core.errors import RunError

T = TypeVar("T")


RunKind = Literal[
    "corpus", "index", "qa", "model", "reranker", "crossfit", "retrieval_eval", "rag", "ragas_eval"
]


RunStatus = Literal["pending", "running", "done", "failed", "stopped"]

_STATUS_PHRASES = {
    "pending": "has not started",
    "running": "is still running",
    "done": "is done",
    "failed": "failed",
    "stopped": "was stopped",
}


def status_phrase(status: str) -> str:
    """A run's status as the verb of a sentence: 'Run X failed', 'Run X is still running'
    (never 'Run X is failed')."""
    return _STATUS_PHRASES.get(status, f"is {status}")


RUN_MODEL_DIR = "model"  # a model run's saved sentence-transformers folder

RUN_KINDS: tuple[str, ...] = (
    "corpus",
    "index",
    "qa",
    "model",
    "reranker",
    "crossfit",
    "retrieval_eval",
    "rag",
    "ragas_eval",
)
KIND_LABELS: dict[str, str] = {  # what a user calls each kind
    "corpus": "Corpora",
    "index": "Chroma indexings",
    "qa": "Question sets",
    "model": "Tuned models",
    "reranker": "Rerankers",
    "crossfit": "Cross-fits",
    "retrieval_eval": "Retrieval evals",
    "rag": "RAG answer runs",
    "ragas_eval": "RAGAS scorings",
}


TRACKED_LIBRARIES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "chromadb",
    "langchain-core",
    "ragas",
    "streamlit",
)


class Manifest(BaseModel):
    """What a run is, where it came from, and how it ended."""

    id: str
    kind: RunKind
    name: str = ""
    created_at: str
    updated_at: str
    status: RunStatus = "pending"
    config: dict[str, Any] = Field(default_factory=dict)
    parents: dict[str, str] = Field(default_factory=dict)  # role -> run id, e.g. {"corpus": "..."}
    versions: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)  # headline figures for listings
    created_by: str = ""  # the user who made it (core.runs.actor), "" before team mode


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide results, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Atomic JSON write, pretty-printed."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def runs_root(root: Path | None = None) -> Path:
    """The folder that holds every run folder."""
    path = (root or data_dir()) / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Run:
    """A run folder and its manifest."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def artifact(self, name: str) -> Path:
        """Path of an artifact inside the run folder (the name may not leave the folder)."""
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents and target != self.path.resolve():
            raise RunError(f"Artifact name {name!r} points outside run {self.id}.")
        return target

    def save(self) -> None:
        """Write the manifest atomically."""
        self.manifest.updated_at = _now()
        write_json_atomic(self.path / "manifest.json", self.manifest.model_dump())

    def set_status(self, status: RunStatus, error: str | None = None, **summary: Any) -> None:
        """Update status (and the error message or summary figures) and save."""
        self.manifest.status = status
        if error is not None:
            self.manifest.error = error
        self.manifest.summary.update(summary)
        self.save()

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a JSON artifact atomically and return its path."""
        path = self.artifact(name)
        write_json_atomic(path, obj)
        return path

    def read_json(self, name: str) -> Any:
        """Read a JSON artifact."""
        path = self.artifact(name)
        if not path.exists():
            raise RunError(f"Run {self.id} has no artifact {name!r}.", fix="re-run the stage")
        return json.loads(path.read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"Run({self.kind}:{self.id}, {self.manifest.status})"


def _new_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


def create_run(
    kind: RunKind,
    *,
    name: str = "",
    config: dict[str, Any] | None = None,
    parents: dict[str, str] | None = None,
    root: Path | None = None,
) -> Run:
    """Create a new run folder with a pending manifest, made by the acting user (whose role
    must allow running stages; the audit log records it). Parents must exist."""
    from core.runs.actor import require
    from core.runs.audit import record

    if kind not in RUN_KINDS:
        raise RunError(f"Unknown run kind {kind!r}.", fix=f"use one of {', '.join(RUN_KINDS)}")
    actor = require("run", f"make a {kind} run")
    for parent_id in (parents or {}).values():
        load_run(parent_id, root=root)  # raises when missing
    run_id = _new_id(kind)
    path = runs_root(root) / run_id
    path.mkdir(parents=True, exist_ok=False)
    now = _now()
    manifest = Manifest(
        id=run_id,
        kind=kind,
        name=name or run_id,
        created_at=now,
        updated_at=now,
        config=config or {},
        parents=parents or {},
        versions=library_versions(),
        created_by=actor.name,
    )
    run = Run(path, manifest)
    run.save()
    record("created", run_id, name or kind, root=root)
    return run


def load_run(run_id: str, root: Path | None = None) -> Run:
    """Load a run by id; a clear RunError when it is missing or its manifest is unreadable."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id.")
    path = runs_root(root) / run_id
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise RunError(
            f"Run {run_id} does not exist in {runs_root(root)}.", fix="pick a listed run"
        )
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise RunError(f"Run {run_id} has an unreadable manifest.", found=str(exc)[:200]) from exc
    return Run(path, manifest)


def list_runs(kind: str | Iterable[str] | None = None, root: Path | None = None) -> list[Run]:
    """All readable runs, newest first, optionally of one or more kinds. Broken folders are skipped."""
    kinds = {kind} if isinstance(kind, str) else set(kind) if kind else None
    runs: list[Run] = []
    for child in runs_root(root).iterdir():
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            run = load_run(child.name, root=root)
        except RunError:
            continue
        if kinds is None or run.kind in kinds:
            runs.append(run)
    runs.sort(key=lambda r: (r.manifest.created_at, r.id), reverse=True)
    return runs


def read_jsonl_artifact(
    run: Run | str,
    kind: str,
    name: str,
    parse: Callable[[str], T],
    *,
    label: str,
    fix: str,
    root: Path | None = None,
) -> list[T]:
    """Parse every line of a JSONL artifact of a `kind` run (a run object or id). A wrong kind,
    a missing file or a damaged line is a RunError naming the run (and the line)."""
    if isinstance(run, str):
        run = load_run(run, root=root)
    if run.kind != kind:
        raise RunError(f"Run {run.id} is a {run.kind} run, not a {kind} run.")
    path = run.artifact(name)
    if not path.exists():
        raise RunError(f"{label} {run.id} has no {name}.", fix=fix)
    out: list[T] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                out.append(parse(line))
            except (ValueError, KeyError, TypeError) as exc:  # json, pydantic, missing fields
                raise RunError(
                    f"{label} {run.id} has a damaged {name} (line {number}).",
                    found=str(exc).splitlines()[0][:200],
                    fix=fix,
                ) from exc
    return out


def children_of(run_id: str, root: Path | None = None) -> list[Run]:
    """Runs that name `run_id` as a parent."""
    return [r for r in list_runs(root=root) if run_id in r.manifest.parents.values()]


def delete_run(run_id: str, root: Path | None = None, force: bool = False) -> None:
    """Delete a run folder. Refuses when other runs depend on it, unless `force`."""
    run = load_run(run_id, root=root)
    dependants = children_of(run_id, root=root)
    if dependants and not force:
        names = ", ".join(r.id for r in dependants)
        raise RunError(
            f"Run {run_id} is a parent of {names}.", fix="delete those first or pass force=True"
        )
    # Rename first so a crash mid-delete never leaves a half-deleted run that looks valid.
    trash = run.path.with_name(f".deleted-{run.path.name}-{secrets.token_hex(2)}")
    os.replace(run.path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def run_rows(runs: Iterable[Run]) -> list[dict[str, str]]:
    """One row per run for listings: id, kind, name, status, created, by whom, parents, summary."""
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "name": r.manifest.name,
            "status": r.manifest.status,
            "created": r.manifest.created_at[:19],
            "by": r.manifest.created_by,
            "parents": ", ".join(f"{k}: {v}" for k, v in r.manifest.parents.items()),
            "summary": json.dumps(r.manifest.summary)[:120],
        }
        for r in runs
    ]
