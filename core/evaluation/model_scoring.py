"""Scoring every model of one retrieval evaluation, step by step: one encoding per model, exact
search at every dim, the frontier's cells, the hybrids with BM25, the Chroma check, and BM25.

Each step runs inside the evaluation's StepPlan (core.evaluation.plan), so the progress line
names it with a fair ETA. Nothing here holds a questions x chunks matrix: every search scores a
block of questions at a time (core.evaluation.search.query_block).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.embeddings import (
    document_prompt,
    native_dim,
    query_prompt,
    truncate_normalize,
)
from core.errors import ConfigError
from core.evaluation import plan as steps
from core.evaluation.chroma_check import chroma_report
from core.evaluation.config import BM25_LABEL, dims_for
from core.evaluation.frontier import Cell, score_cells
from core.evaluation.hybrid import LexicalSide, score_hybrids
from core.evaluation.metrics import SEARCH_DEPTH
from core.evaluation.models import training_info
from core.evaluation.scoring import (
    DimScores,
    encode_corpus,
    encode_queries,
    score_dims,
    score_ranking,
)
from core.evaluation.search import search_bm25

if TYPE_CHECKING:
    from core.config import ChromaSettings
    from core.documents.corpus import Chunk
    from core.evaluation.config import RetrievalEvalConfig
    from core.progress import StepPlan
    from core.questions.dataset import QAItem
    from core.runs.folders import Run


@dataclass(frozen=True)
class EvalInputs:
    """What one evaluation works on, resolved and checked before any run is created."""

    config: RetrievalEvalConfig
    qa_run: Run
    corpus_run_id: str
    chunks: list[Chunk]
    items: list[QAItem]
    gold: list[list[int]]  # per question, the corpus positions of its gold chunks
    tie_ranks: np.ndarray  # (N,) each chunk's position in ascending id order
    labels: list[str]
    model_runs: list[Run | None]
    val_items: list[QAItem] = field(default_factory=list)  # picks the hybrid's weight
    val_gold: list[list[int]] = field(default_factory=list)
    # (n,) each question's cluster (core.questions.splits.question_clusters): the statistics'
    # unit of resampling
    clusters: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_clusters(self) -> int:
        return len(set(self.clusters.tolist()))

    def sources(self) -> dict[str, int]:
        """How many evaluated questions each source wrote (human, llm, heading, cloze)."""
        return dict(Counter(i.source for i in self.items))

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]

    @property
    def questions(self) -> list[str]:
        return [i.question for i in self.items]

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(N chunks, n questions, n validation questions): what the plan's costs grow with."""
        return len(self.chunks), len(self.items), len(self.val_items)


@dataclass
class Scored:
    """What scoring every model gathers: rankings per dim, model facts, Chroma checks."""

    scores: list[DimScores] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    chroma: list[dict[str, Any]] = field(default_factory=list)
    loaded: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)  # the frontier's (model, dim, precision)
    lexical: LexicalSide | None = None  # BM25's index and question texts, for BM25 and hybrids
    dims: dict[str, list[int]] = field(default_factory=dict)  # label -> dims evaluated


def model_dims(index: int, inputs: EvalInputs, out: Scored) -> list[int]:
    """The dims one (loaded) model is evaluated at; a requested dim above its native one is
    dropped with a warning."""
    config, label = inputs.config, inputs.labels[index]
    native = native_dim(out.loaded[label])
    dims = dims_for(native, config.dims)
    if config.dims and set(config.dims) - set(dims):
        dropped = sorted(set(config.dims) - set(dims), reverse=True)
        out.warnings.append(f"{label}: dims {dropped} exceed its native {native} and were skipped.")
    if not dims:
        raise ConfigError(f"No requested dimension fits {label} (native {native}).")
    return dims


def score_model(
    index: int,
    inputs: EvalInputs,
    chroma_settings: ChromaSettings,
    plan: StepPlan,
    out: Scored,
) -> None:
    """Encode once with one model, score every dim, compare with its Chroma collection."""
    config, spec, label = inputs.config, inputs.config.models[index], inputs.labels[index]
    kind = "base" if index == 0 else "tuned"
    model, dims = out.loaded[label], out.dims[label]
    options = {"label": label, "batch_size": config.batch_size, "should_stop": plan.should_stop}
    with plan.step(steps.corpus_step(label), per_unit=steps.ENCODE_S_PER_TEXT) as progress:
        corpus_native = encode_corpus(model, inputs.texts, on_progress=progress, **options)
    with plan.step(steps.questions_step(label)) as progress:
        query_native = encode_queries(model, inputs.questions, on_progress=progress, **options)
    results = []
    for dim in dims:
        with plan.step(steps.dense_step(label, dim)):
            found = score_dims(
                corpus_native, query_native, inputs.gold, [dim], inputs.tie_ranks, label=label,
                kind=kind,
            )  # fmt: skip
            results += found
        if config.frontier:
            with plan.step(steps.cells_step(label, dim)):
                floats = {dim: found[0].per_query}
                out.cells += score_cells(
                    label, kind, corpus_native, query_native, inputs.gold, [dim],
                    inputs.tie_ranks, floats,
                )  # fmt: skip
    if config.hybrid:  # at the largest dim evaluated (the native one unless dims say otherwise)
        with plan.step(steps.hybrid_step(label)):
            _score_hybrids(model, label, dims[0], corpus_native, query_native, inputs, out)
    out.scores += results
    if config.chroma_check is not False:
        with plan.step(steps.chroma_step(label)):
            _check_chroma(spec, label, results, query_native, inputs, chroma_settings, out)
    model_run = inputs.model_runs[index]
    out.models.append(
        {
            **spec.to_dict(),
            "label": label,
            "kind": kind,
            "run_status": model_run.manifest.status if model_run is not None else None,
            "native_dim": native_dim(model),
            "dims": dims,
            "query_prompt": query_prompt(model),
            "document_prompt": document_prompt(model),
            "training": training_info(model_run, inputs.items, [c.id for c in inputs.chunks]),
        }
    )


def _check_chroma(
    spec: Any,
    label: str,
    results: list[DimScores],
    query_native: np.ndarray,
    inputs: EvalInputs,
    chroma_settings: ChromaSettings,
    out: Scored,
) -> None:
    """Each dim's exact top 10 against the model's Chroma collection, where it exists."""
    chunk_ids = [c.id for c in inputs.chunks]
    for result in results:
        report = chroma_report(
            chroma_settings,
            inputs.corpus_run_id,
            spec,
            label,
            result.dim,
            truncate_normalize(query_native, result.dim),
            result.top_idx,
            len(chunk_ids),
            chunk_ids,
            explicit=bool(inputs.config.chroma_check),
        )
        if report is not None:
            out.chroma.append(report)
            out.warnings.extend([report["warning"]] if report.get("warning") else [])


def _score_hybrids(
    model: Any,
    label: str,
    dim: int,
    corpus_native: np.ndarray,
    query_native: np.ndarray,
    inputs: EvalInputs,
    out: Scored,
) -> None:
    """BM25 fused with this model at `dim` (core.evaluation.hybrid), from the native vectors."""
    val_queries = None
    if inputs.val_items:
        val_native = encode_queries(
            model,
            [i.question for i in inputs.val_items],
            label=label,
            batch_size=inputs.config.batch_size,
        )
        val_queries = truncate_normalize(val_native, dim)  # (n_val, dim)
    assert out.lexical is not None  # built before any model is scored
    fused = score_hybrids(
        label,
        dim,
        truncate_normalize(corpus_native, dim),  # (N, dim)
        truncate_normalize(query_native, dim),  # (n, dim)
        out.lexical,
        inputs.gold,
        inputs.tie_ranks,
        inputs.config.primary_metric,
        val_queries=val_queries,
        val_gold=inputs.val_gold,
        why_no_weight=""
        if inputs.config.split == "test"
        else "the evaluated split is not the test split, so no split is left to tune on",
    )
    for scores, info in fused:
        out.scores.append(scores)
        out.models.append(info)


def score_bm25(inputs: EvalInputs, plan: StepPlan, out: Scored) -> None:
    """BM25 alone, as a model of its own."""
    assert out.lexical is not None  # built before any model is scored
    with plan.step(steps.BM25_STEP):
        top_idx, top_scores = search_bm25(
            out.lexical.index, inputs.questions, SEARCH_DEPTH, inputs.tie_ranks
        )
    out.scores.append(score_ranking(BM25_LABEL, "bm25", None, top_idx, top_scores, inputs.gold))
    bm25 = {"source": "bm25", "ref": "", "label": BM25_LABEL, "kind": "bm25"}
    out.models.append({**bm25, "native_dim": None, "dims": []})
