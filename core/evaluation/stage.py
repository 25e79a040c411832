"""Retrieval evaluation: base vs tuned per Matryoshka dimension, with intervals, tests and flips.

How it works:
1. The questions of one split of a qa run are searched against the FULL corpus of its corpus run
   (every chunk is a distractor, never only the test chunks).
2. Each model encodes the corpus and the questions once, at its native dimension (questions with
   the model's query prompt, identically for base and tuned). Every smaller dimension is a
   truncation plus renormalisation of those vectors: the same numbers as re-encoding with
   `truncate_dim`, at a fraction of the cost.
3. Exact search in numpy returns the top 100 per question, ties broken by ascending chunk id as
   sentence-transformers does, so our metrics equal its InformationRetrievalEvaluator.
   When the model's Chroma collection exists, its top 10 is compared with the exact top 10.
4. Per-query metrics (core.evaluation.metrics) get bootstrap CIs; every model-vs-base delta gets a
   paired CI and a p-value (core.evaluation.statistics); questions whose hit@k flipped are listed with both
   rankings. The random ranker's expected score, the corpus size and the query count go with
   every figure.
5. A general-similarity check (STS-style scored pairs or 0/1 labelled pairs) shows whether a
   domain gain broke general similarity.
6. Everything is saved as a retrieval_eval run: metrics.csv, deltas.csv, tradeoff.csv,
   per_query.jsonl, flips.json, similarity.csv, result.json.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import ChromaSettings
from core.documents.corpus import Chunk, load_chunks
from core.embeddings import (
    document_prompt,
    encode_texts,
    native_dim,
    query_prompt,
    truncate_normalize,
)
from core.errors import ConfigError, InputError, RunError
from core.evaluation.card import update_model_cards
from core.evaluation.chroma_check import chroma_report
from core.evaluation.config import BM25_LABEL, TOP_SAVED, RetrievalEvalConfig, dims_for
from core.evaluation.flips import collect_flips
from core.evaluation.frontier import Cell, frontier_with_latency, score_cells
from core.evaluation.hybrid import score_hybrids
from core.evaluation.metrics import (
    KS,
    SEARCH_DEPTH,
    metric_names,
)
from core.evaluation.models import (
    check_model_lineage,
    model_labels,
    model_notes,
    training_info,
)
from core.evaluation.random_ranker import random_ranker_expected
from core.evaluation.results import RetrievalEvalResult, save_retrieval_eval
from core.evaluation.scoring import (
    DimScores,
    deltas_frame,
    encode_corpus_and_queries,
    gold_counts,
    gold_indices,
    metrics_frame,
    native_ndcg,
    per_query_frame,
    score_dims,
    score_ranking,
    tradeoff_frame,
)
from core.evaluation.search import bm25_index, bm25_scores, id_tie_ranks, search_bm25
from core.evaluation.similarity import similarity_check
from core.evaluation.statistics import MIN_QUERIES
from core.evaluation.verdict import weak_delta_warnings
from core.formatting import questions_text
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.dataset import QAItem, load_qa
from core.questions.splits import question_clusters
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import stage_run

if TYPE_CHECKING:
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.models import ModelLoader
    from core.evaluation.scoring import DimScores


@dataclass(frozen=True)
class _Inputs:
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


def _check_config(config: RetrievalEvalConfig) -> None:
    if not config.models:
        raise ConfigError("No model to evaluate.", fix="pick at least the base model")
    if not 1 <= config.flip_k <= TOP_SAVED:
        raise ConfigError(f"Flip k must be between 1 and {TOP_SAVED}, got {config.flip_k}.")
    if config.primary_metric not in metric_names(KS):
        raise ConfigError(
            f"{config.primary_metric!r} is not a metric ragbench computes.",
            fix=f"pick the primary metric from {', '.join(metric_names(KS))}",
        )


def _resolve(config: RetrievalEvalConfig) -> _Inputs:
    """Load and check the qa run, its corpus, the split's questions and the model runs."""
    _check_config(config)
    qa_run = load_run(config.qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(f"Run {qa_run.id} is a {qa_run.kind} run, not a qa run.")
    corpus_run_id = qa_run.manifest.parents.get("corpus")
    if not corpus_run_id:
        raise RunError(f"QA run {qa_run.id} names no corpus run.", fix="regenerate the questions")
    model_runs = [check_model_lineage(spec, qa_run) for spec in config.models]
    labels = model_labels(config.models, model_runs)
    items = load_qa(qa_run, split=config.split)
    if not items:
        raise InputError(
            f"QA run {qa_run.id} has no accepted questions in the {config.split or 'any'} split.",
            fix="pick another split or accept more questions on the Questions page",
        )
    chunks = load_chunks(corpus_run_id)
    if not chunks:
        raise InputError(
            f"Corpus run {corpus_run_id} has no chunks.", fix="re-run the Documents stage"
        )
    chunk_ids = [c.id for c in chunks]
    index_of = {cid: i for i, cid in enumerate(chunk_ids)}
    val_items = (
        load_qa(qa_run, split="validation") if config.hybrid and config.split == "test" else []
    )
    return _Inputs(
        config=config,
        qa_run=qa_run,
        corpus_run_id=corpus_run_id,
        chunks=chunks,
        items=items,
        gold=gold_indices(items, index_of, corpus_run_id),
        tie_ranks=id_tie_ranks(chunk_ids),
        labels=labels,
        model_runs=model_runs,
        val_items=val_items,
        val_gold=gold_indices(val_items, index_of, corpus_run_id),
        clusters=np.asarray(question_clusters(items), dtype=np.int64),
    )


def evaluate_retrieval(
    config: RetrievalEvalConfig,
    *,
    model_loader: ModelLoader | None = None,
    chroma_settings: ChromaSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RetrievalEvalResult:
    """Evaluate every model at every dimension on a qa run's split and save a retrieval_eval run.
    `model_loader` turns a ModelSpec into a model (default: deferred_loader on `config.device`).
    Raises LineageError for a model run trained on another corpus; one trained on another
    question set of this corpus is evaluated, with what it trained on said beside it."""
    run = create_retrieval_eval_run(config)
    return run_retrieval_eval(
        run,
        model_loader=model_loader,
        chroma_settings=chroma_settings,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def create_retrieval_eval_run(config: RetrievalEvalConfig) -> Run:
    """Check the configuration and its inputs and create the retrieval_eval run (status
    `pending`); a refused configuration raises before any run exists."""
    inputs = _resolve(config)
    parents = {"qa": inputs.qa_run.id}
    for n, model_run in enumerate(r for r in inputs.model_runs if r is not None):
        parents["model" if n == 0 else f"model_{n + 1}"] = model_run.id
    labels = inputs.labels
    return create_run(
        "retrieval_eval",
        name=config.name
        or f"{labels[0]} vs {len(labels) - 1} model(s) on {inputs.qa_run.manifest.name}",
        config=config.to_dict(),
        parents=parents,
    )


def run_retrieval_eval(
    run: Run | str,
    *,
    model_loader: ModelLoader | None = None,
    chroma_settings: ChromaSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RetrievalEvalResult:
    """Run the evaluation a retrieval_eval run was created for (in this process, or in a
    background job: core.evaluation.job); a stop or a failure marks the run so."""
    from core.deferred_model import deferred_loader

    run = load_run(run) if isinstance(run, str) else run
    config = RetrievalEvalConfig.from_dict(run.manifest.config)
    loader = model_loader or deferred_loader(config.device)  # weights only when needed
    if run.manifest.status != "running":  # a job's starter has set it (with the pid) already
        run.set_status("running")
    tracker = ProgressTracker(
        "retrieval eval", len(config.models) + int(config.include_bm25), on_progress, should_stop
    )
    with stage_run(run):
        inputs = _resolve(config)  # again: the inputs may have changed since the run was made
        return _evaluate(run, inputs, loader, chroma_settings or ChromaSettings(), tracker)


@dataclass
class _Scored:
    """What scoring every model gathers: rankings per dim, model facts, Chroma checks."""

    scores: list[DimScores] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    chroma: list[dict[str, Any]] = field(default_factory=list)
    loaded: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)  # the frontier's (model, dim, precision)
    bm25: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n, N) BM25 scores


def _score_model(
    index: int,
    inputs: _Inputs,
    loader: ModelLoader,
    chroma_settings: ChromaSettings,
    tracker: ProgressTracker,
    out: _Scored,
) -> None:
    """Encode once with one model, score every dim, compare with its Chroma collection."""
    config, spec, label = inputs.config, inputs.config.models[index], inputs.labels[index]
    kind = "base" if index == 0 else "tuned"
    model = out.loaded[label] = loader(spec)
    native = native_dim(model)
    dims = dims_for(native, config.dims)
    if config.dims and set(config.dims) - set(dims):
        dropped = sorted(set(config.dims) - set(dims), reverse=True)
        out.warnings.append(f"{label}: dims {dropped} exceed its native {native} and were skipped.")
    if not dims:
        raise ConfigError(f"No requested dimension fits {label} (native {native}).")
    corpus_native, query_native = encode_corpus_and_queries(
        model,
        inputs.texts,
        inputs.questions,
        label=label,
        batch_size=config.batch_size,
        on_progress=tracker.on_progress,
        should_stop=tracker.should_stop,
    )
    chunk_ids = [c.id for c in inputs.chunks]
    results = score_dims(
        corpus_native, query_native, inputs.gold, dims, inputs.tie_ranks, label=label, kind=kind
    )
    if config.frontier:
        floats = {r.dim: r.per_query for r in results}
        out.cells += score_cells(
            label, kind, corpus_native, query_native, inputs.gold, dims, inputs.tie_ranks, floats
        )
    if config.hybrid:  # at the largest dim evaluated (the native one unless dims say otherwise)
        dim = dims[0]
        corpus_d = truncate_normalize(corpus_native, dim)
        _score_hybrids(
            model, label, dim, corpus_d, truncate_normalize(query_native, dim), inputs, out
        )
    for result in results:
        out.scores.append(result)
        if config.chroma_check is False:
            continue
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
            explicit=bool(config.chroma_check),
        )
        if report is not None:
            out.chroma.append(report)
            out.warnings.extend([report["warning"]] if report.get("warning") else [])
    model_run = inputs.model_runs[index]
    out.models.append(
        {
            **spec.to_dict(),
            "label": label,
            "kind": kind,
            "run_status": model_run.manifest.status if model_run is not None else None,
            "native_dim": native,
            "dims": dims,
            "query_prompt": query_prompt(model),
            "document_prompt": document_prompt(model),
            "training": training_info(model_run, inputs.items, chunk_ids),
        }
    )
    tracker.advance(1, f"{label} scored at dims {dims}")


def _score_hybrids(
    model: Any,
    label: str,
    dim: int,
    corpus: np.ndarray,
    queries: np.ndarray,
    inputs: _Inputs,
    out: _Scored,
) -> None:
    """BM25 fused with this model at `dim` (core.evaluation.hybrid); `corpus` (N, dim) and
    `queries` (n, dim) are that dim's normalised vectors."""
    val_queries = None
    if inputs.val_items:
        val_queries = encode_texts(
            model,
            [i.question for i in inputs.val_items],
            prompt=query_prompt(model),
            batch_size=inputs.config.batch_size,
        )
        val_queries = truncate_normalize(val_queries, dim)  # (n_val, dim)
    fused = score_hybrids(
        label,
        dim,
        corpus,
        queries,
        out.bm25,
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


def _score_bm25(inputs: _Inputs, tracker: ProgressTracker, out: _Scored) -> None:
    top_idx, top_scores = search_bm25(
        inputs.texts, inputs.questions, SEARCH_DEPTH, inputs.tie_ranks
    )
    out.scores.append(score_ranking(BM25_LABEL, "bm25", None, top_idx, top_scores, inputs.gold))
    bm25 = {"source": "bm25", "ref": "", "label": BM25_LABEL, "kind": "bm25"}
    out.models.append({**bm25, "native_dim": None, "dims": []})
    tracker.advance(1, "BM25 scored")


def _input_warnings(inputs: _Inputs) -> list[str]:
    """Too few questions, and what the models' runs say (core.evaluation.models.model_notes)."""
    n, config = len(inputs.items), inputs.config
    warnings = []
    if n < MIN_QUERIES:
        warnings.append(
            f"Only {questions_text(n, inputs.n_clusters)} in the {config.split or 'selected'} "
            "split: confidence intervals are wide and small differences cannot be told apart."
        )
    chunk_ids = [c.id for c in inputs.chunks]
    return warnings + model_notes(
        inputs.labels, inputs.model_runs, inputs.items, chunk_ids, inputs.qa_run.id
    )


def _evaluate(
    run: Run,
    inputs: _Inputs,
    loader: ModelLoader,
    chroma_settings: ChromaSettings,
    tracker: ProgressTracker,
) -> RetrievalEvalResult:
    config, labels, n = inputs.config, inputs.labels, len(inputs.items)
    scored = _Scored(warnings=_input_warnings(inputs))
    tracker.report("starting")
    if config.hybrid:
        index = bm25_index(inputs.texts)
        scored.bm25["test"] = bm25_scores(index, inputs.questions)
        scored.bm25["validation"] = bm25_scores(index, [i.question for i in inputs.val_items])
    for index in range(len(config.models)):
        _score_model(index, inputs, loader, chroma_settings, tracker, scored)
    if config.include_bm25:
        _score_bm25(inputs, tracker, scored)
    baseline = random_ranker_expected(len(inputs.chunks), [len(g) for g in inputs.gold], KS)
    tracker.report("statistics")
    tracker.check_stop()  # the last chance: nothing is saved before the end
    deltas = deltas_frame(scored.scores, labels[0], config, inputs.clusters)
    per_query = per_query_frame(scored.scores, inputs.items, inputs.chunks, inputs.clusters)
    dims_of = {m["label"]: list(m["dims"]) for m in scored.models}
    compared = [labels[0], *(m["label"] for m in scored.models if m["kind"] in ("tuned", "hybrid"))]
    texts = {c.id: c.text for c in inputs.chunks}
    if config.similarity_csv:
        tracker.report("general similarity")
    similarity = similarity_check(
        config, {label: scored.loaded[label] for label in labels}, labels[0], scored.warnings
    )
    if n >= MIN_QUERIES:
        scored.warnings += weak_delta_warnings(
            deltas, config.primary_metric, labels[0], n, config.confidence
        )
    result = RetrievalEvalResult(
        run_id=run.id,
        qa_run_id=inputs.qa_run.id,
        corpus_run_id=inputs.corpus_run_id,
        split=config.split,
        corpus_size=len(inputs.chunks),
        n_queries=n,
        base_label=labels[0],
        models=scored.models,
        metrics=metrics_frame(
            scored.scores, config, baseline, len(inputs.chunks), n, inputs.clusters
        ),
        deltas=deltas,
        tradeoff=tradeoff_frame(scored.scores),
        per_query=per_query,
        flips=collect_flips(per_query, compared, dims_of, texts, config.flip_k),
        similarity=similarity,
        chroma=scored.chroma,
        warnings=scored.warnings,
        random_baseline=baseline,
        config=config.to_dict(),
        gold_counts=gold_counts(inputs.gold),
        frontier=_frontier(inputs, scored, tracker) if config.frontier else None,
        n_clusters=inputs.n_clusters,
        query_sources=inputs.sources(),
    )
    save_retrieval_eval(run, result)
    update_model_cards(result, labels, inputs.model_runs)
    natives = {m["label"]: m["native_dim"] for m in scored.models}
    run.set_status(
        "done",
        corpus_size=len(inputs.chunks),
        n_queries=n,
        n_clusters=inputs.n_clusters,
        split=config.split,
        ndcg_at_10=native_ndcg(scored.scores, natives),
    )
    tracker.report("done")
    return result


def _frontier(inputs: _Inputs, scored: _Scored, tracker: ProgressTracker) -> pd.DataFrame:
    config = inputs.config
    tracker.report(f"frontier: latency on {config.latency_size:,} synthetic vectors")
    base = next(m for m in scored.models if m["label"] == inputs.labels[0])
    return frontier_with_latency(
        scored.cells,
        (base["label"], int(max(base["dims"]))),  # full size: the largest dim evaluated
        config.primary_metric,
        latency_size=config.latency_size,
        n_resamples=config.n_resamples,
        n_permutations=config.n_permutations,
        confidence=config.confidence,
        seed=config.seed,
        clusters=inputs.clusters,
    )
