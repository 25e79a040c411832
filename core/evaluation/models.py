"""The models an evaluation compares: their display labels (run names, never two alike), the
lineage check that refuses a model trained on another question set, and the note on a model run
that was stopped before its last epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.embeddings import (
    ModelSpec,
)
from core.errors import ConfigError
from core.evaluation.config import BM25_LABEL
from core.runs.folders import Run, load_run
from core.runs.lineage import check_same_lineage

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


ModelLoader = Callable[[ModelSpec], "SentenceTransformer"]


def check_model_lineage(spec: ModelSpec, qa_run: Run) -> Run | None:
    if spec.source != "run":
        return None
    model_run = load_run(spec.ref)
    if model_run.kind != "model":
        raise ConfigError(f"Run {spec.ref} is a {model_run.kind} run, not a model run.")
    check_same_lineage(model_run, qa_run, kind="corpus")
    check_same_lineage(model_run, qa_run, kind="qa")
    return model_run


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
