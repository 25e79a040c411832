"""Lineage: which runs a run came from and which depend on it (corpus -> qa -> model ->
evaluations), the refusal to combine runs of different lineages, and the lineage as text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import LineageError, RunError
from core.runs.folders import RUN_KINDS, RUN_MODEL_DIR, list_runs, load_run
from core.runs.labels import run_title

if TYPE_CHECKING:
    from core.runs.folders import Run


def descendants_of(run_id: str, root: Path | None = None) -> list[Run]:
    """Every run that depends on `run_id`, directly or through others, each before its parents
    (so deleting in this order never leaves an orphan)."""
    runs = list_runs(root=root)
    found: dict[str, Run] = {}
    frontier = [run_id]
    while frontier:
        current = frontier.pop()
        for run in runs:
            if current in run.manifest.parents.values() and run.id not in found:
                found[run.id] = run
                frontier.append(run.id)
    ordered: list[Run] = []
    remaining = dict(found)
    while remaining:
        # A run is ready when no remaining run names it as a parent.
        ready = [
            r
            for r in remaining.values()
            if not any(r.id in o.manifest.parents.values() for o in remaining.values())
        ]
        for r in ready:
            ordered.append(r)
            del remaining[r.id]
    return ordered


def root_of_kind(run: Run, kind: str, root: Path | None = None) -> Run | None:
    """Walk the parents of `run` (breadth-first) to the nearest ancestor of `kind` (itself included)."""
    queue = [run]
    seen: set[str] = set()
    while queue:
        current = queue.pop(0)
        if current.id in seen:
            continue
        seen.add(current.id)
        if current.kind == kind:
            return current
        for parent_id in current.manifest.parents.values():
            try:
                queue.append(load_run(parent_id, root=root))
            except RunError:
                continue
    return None


def check_same_lineage(a: Run, b: Run, kind: str = "corpus", root: Path | None = None) -> None:
    """Refuse to combine two runs whose nearest `kind` ancestors differ (default: the corpus)."""
    root_a = root_of_kind(a, kind, root=root)
    root_b = root_of_kind(b, kind, root=root)
    if root_a is None or root_b is None:
        missing = a if root_a is None else b
        raise LineageError(
            f"Run {missing.id} has no {kind} ancestor, so it cannot be combined with "
            f"{(b if missing is a else a).id}."
        )
    if root_a.id != root_b.id:
        raise LineageError(
            f"Run {a.id} comes from {kind} {root_a.id} but run {b.id} comes from {kind} "
            f"{root_b.id}; they do not belong together.",
            fix=f"pick runs built on the same {kind}",
        )


def model_runs_for_qa(qa_run_id: str, root: Path | None = None) -> tuple[list[Run], int]:
    """Finished model runs fine-tuned on this qa run's corpus (on this question set or another
    one of the same corpus: the evaluation counts what they saw), newest first, and how many
    model runs of other corpora were left out. A stopped run counts only when it saved a model."""
    qa_run = load_run(qa_run_id, root=root)
    ok: list[Run] = []
    hidden = 0
    for run in list_runs("model", root=root):
        if run.manifest.status not in ("done", "stopped"):
            continue
        if run.manifest.status == "stopped" and not (run.path / RUN_MODEL_DIR).is_dir():
            continue  # stopped before training: no model to evaluate
        try:
            check_same_lineage(run, qa_run, kind="corpus", root=root)
        except RunError:  # LineageError is a RunError
            hidden += 1
            continue
        ok.append(run)
    return ok, hidden


def preferred_model(runs: Sequence[Run], current: str | None) -> str | None:
    """The model run a picker shows first: the session's current one when it finished, else the
    newest finished one; a stopped run (a model cut short, maybe barely trained) only when no run
    finished."""
    done = [r.id for r in runs if r.manifest.status == "done"]
    ids = [r.id for r in runs]
    if current in done:
        return current
    if done:
        return done[0]
    if current in ids:
        return current
    return ids[0] if ids else None


def model_run_label(run: Run, qa_run_id: str, root: Path | None = None) -> str:
    """A model run for a picker: its name and date, and the question set it was trained on when
    that is not `qa_run_id` ('MiniLM docs · 2026-11-30 07:10 · trained on From the documents')."""
    label = f"{run.manifest.name or run.id} · {run.manifest.created_at[:16].replace('T', ' ')}"
    trained_on = run.manifest.parents.get("qa")
    if trained_on and trained_on != qa_run_id:
        try:
            name = load_run(trained_on, root=root).manifest.name or trained_on
        except RunError:
            name = trained_on
        label += f" · trained on {name}"
    return label


def _kind_order(run: Run) -> tuple[int, str, str]:
    return (RUN_KINDS.index(run.kind), run.manifest.created_at, run.id)


def lineage_of(run_ids: Sequence[str]) -> list[Run]:
    """The runs and all their ancestors, ordered corpus, qa, model, retrieval_eval, rag,
    ragas_eval (oldest first within a kind). Missing ancestors are skipped."""
    found: dict[str, Run] = {}
    frontier = list(run_ids)
    while frontier:
        run_id = frontier.pop()
        if run_id in found:
            continue
        try:
            run = load_run(run_id)
        except RunError:
            continue
        found[run_id] = run
        frontier.extend(run.manifest.parents.values())
    return sorted(found.values(), key=_kind_order)


def lineage_chain(run_id: str, label: Callable[[Run], str] = run_title) -> str:
    """'corpus faq → question set faq qa → tuned model minilm → retrieval evaluation base vs
    tuned' (runs of one kind joined with ' + '); `label=lambda r: r.id` for the ids."""
    groups: dict[str, list[str]] = {}
    for run in lineage_of([run_id]):
        groups.setdefault(run.kind, []).append(label(run))
    return " → ".join(" + ".join(ids) for ids in groups.values())
