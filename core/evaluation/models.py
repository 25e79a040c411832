"""The models an evaluation compares: their display labels (run names, never two alike), the
lineage check that refuses a model trained on another corpus, what each tuned model was trained
on and how much of the evaluated questions it saw (a model trained on another question set of the
same corpus is allowed, and the overlap is counted), and the note on a model run that was stopped
before its last epoch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from core.embeddings import (
    ModelSpec,
)
from core.errors import ConfigError, RagbenchError
from core.evaluation.config import BM25_LABEL
from core.questions.dataset import QAItem, load_qa
from core.questions.sources import sources_text, training_items, training_overlap
from core.runs.folders import Run, load_run
from core.runs.lineage import check_same_lineage

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


ModelLoader = Callable[[ModelSpec], "SentenceTransformer"]


def check_model_lineage(spec: ModelSpec, qa_run: Run) -> Run | None:
    """The model run of a tuned model (None for a hub or base model); refused when it was trained
    on another corpus (its chunks would not be this corpus's)."""
    if spec.source != "run":
        return None
    model_run = load_run(spec.ref)
    if model_run.kind != "model":
        raise ConfigError(f"Run {spec.ref} is a {model_run.kind} run, not a model run.")
    check_same_lineage(model_run, qa_run, kind="corpus")
    return model_run


def training_info(
    model_run: Run | None, evaluated: Sequence[QAItem], chunk_ids: Collection[str]
) -> dict[str, Any] | None:
    """What a model run was trained on (question set, pairs per source) and its overlap with the
    evaluated questions, recomputed with the fine-tune's own pair selection."""
    if model_run is None:
        return None
    qa_id = model_run.manifest.parents.get("qa", "")
    config = model_run.manifest.config
    try:
        qa_run = load_run(qa_id)
        train = load_qa(qa_run, split="train")
    except RagbenchError:
        return {"qa_run": qa_id, "qa_name": qa_id, "sources": {}, "overlap": None}
    _, used, sources = training_items(
        train, set(chunk_ids), config.get("source_weights") or {}, int(config.get("seed", 42))
    )
    return {
        "qa_run": qa_id,
        "qa_name": qa_run.manifest.name or qa_id,
        "sources": sources,
        "overlap": training_overlap(used, evaluated).to_dict(),
    }


def training_note(label: str, info: dict[str, Any] | None, evaluated_qa: str) -> str | None:
    """What a tuned model trained on, said beside its figures when it matters: trained on another
    question set, or having seen some of the evaluated questions or their chunks."""
    if not info:
        return None
    overlap = info.get("overlap")
    other = info["qa_run"] != evaluated_qa
    if overlap is None:
        return f"{label}: its training question set {info['qa_run']} cannot be read, so its overlap with these questions is unknown."
    same, chunks, n = overlap["same_questions"], overlap["trained_chunks"], overlap["n_queries"]
    if not other and not same and not chunks:
        return None
    pairs = sources_text(info["sources"])
    head = f"{label} was trained on {'another question set, ' if other else ''}{info['qa_name']}"
    head += f" ({pairs})" if pairs else ""
    if not same and not chunks:
        return f"{head}: none of the {n} evaluated questions or their gold chunks were in its training, so this is a held-out result."
    seen = []
    if same:
        seen.append(f"{same} of the {n} evaluated questions were its training queries")
    if chunks:
        seen.append(f"{chunks} of the {n} point at chunks it was trained on")
    return (
        f"{head}: {' and '.join(seen)}; for those it is not a held-out result (it saw "
        f"{'the questions' if same else 'the passages, not these questions'})."
    )


def model_run_note(model_run: Run | None, label: str) -> str | None:
    """A warning for a model run that did not finish its training (stopped by the user): its
    weights are those saved at the stop, and resuming makes a new model run."""
    if model_run is None or model_run.manifest.status != "stopped":
        return None
    steps = model_run.manifest.summary.get("steps")
    at = f" at step {steps}" if steps is not None else ""
    return (
        f"{label} is a stopped fine-tune (run {model_run.id}): training was stopped{at} before "
        "its last epoch, so these figures describe the weights saved at the stop. Resuming it "
        "makes a new model run; these figures stay tied to the stopped one."
    )


def model_labels(specs: Sequence[ModelSpec], runs: Sequence[Run | None] = ()) -> list[str]:
    """Display labels: a model run's name (with its id's tail when two names clash), else the
    spec's label. The same model listed twice is refused."""
    keys = [(s.source, s.ref) for s in specs]
    repeated = sorted({specs[i].label for i, k in enumerate(keys) if keys.count(k) > 1})
    if repeated:
        raise ConfigError(
            f"The same model is listed twice: {', '.join(repeated)}.", fix="list each model once"
        )
    runs = list(runs) or [None] * len(specs)
    labels = [
        r.manifest.name if r is not None and r.manifest.name else s.label
        for s, r in zip(specs, runs, strict=True)
    ]
    taken = [*labels, BM25_LABEL]
    for i, (spec, run) in enumerate(zip(specs, runs, strict=True)):
        if taken.count(labels[i]) > 1 and run is not None:
            labels[i] = f"{labels[i]} ({run.id[-6:]})"
        elif taken.count(labels[i]) > 1 and labels[i] != spec.label:
            labels[i] = spec.label
    clashes = sorted({x for x in labels if [*labels, BM25_LABEL].count(x) > 1})
    if clashes:
        raise ConfigError(
            f"Two models would share the name {', '.join(clashes)}.", fix="rename one of them"
        )
    return labels


def model_notes(
    labels: Sequence[str],
    model_runs: Sequence[Run | None],
    items: Sequence[QAItem],
    chunk_ids: Sequence[str],
    qa_run_id: str,
) -> list[str]:
    """Models stopped before their last epoch; models that saw some of these questions or their
    chunks in training, or were trained on another question set."""
    notes = []
    for label, model_run in zip(labels, model_runs, strict=True):
        info = training_info(model_run, list(items), list(chunk_ids))
        for note in (model_run_note(model_run, label), training_note(label, info, qa_run_id)):
            if note:
                notes.append(note)
    return notes
