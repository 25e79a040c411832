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
7. It runs as named steps with estimated costs (core.evaluation.plan), so progress names the
   step and gives an ETA for the whole evaluation; every search scores a block of questions at
   a time (core.evaluation.search.query_block), never a questions x chunks matrix.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.config import ChromaSettings
from core.documents.corpus import load_chunks
from core.errors import ConfigError, InputError, RunError
from core.evaluation import plan as steps
from core.evaluation.card import update_model_cards
from core.evaluation.config import TOP_SAVED, RetrievalEvalConfig
from core.evaluation.flips import collect_flips
from core.evaluation.frontier import frontier_with_latency
from core.evaluation.hybrid import LexicalSide
from core.evaluation.metrics import KS, metric_names
from core.evaluation.model_scoring import (
    EvalInputs,
    Scored,
    model_dims,
    score_bm25,
    score_model,
)
from core.evaluation.models import check_model_lineage, model_labels, model_notes
from core.evaluation.plan import evaluation_plan
from core.evaluation.random_ranker import random_ranker_expected
from core.evaluation.reranking import (
    planned_arms,
    rerank_pairs,
    score_reranked,
    split_rerank_deltas,
)
from core.evaluation.results import RetrievalEvalResult, save_retrieval_eval
from core.evaluation.scoring import (
    deltas_frame,
    gold_counts,
    gold_indices,
    metrics_frame,
    native_ndcg,
    per_query_frame,
    tradeoff_frame,
)
from core.evaluation.search import bm25_index, id_tie_ranks
from core.evaluation.similarity import similarity_check
from core.evaluation.statistics import MIN_QUERIES
from core.evaluation.verdict import weak_delta_warnings
from core.formatting import questions_text
from core.progress import ProgressCallback, StepPlan, StopCheck
from core.questions.dataset import load_qa
from core.questions.splits import question_clusters
from core.rerankers import resolve_reranker
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import stage_run
from core.runs.labels import eval_run_name

if TYPE_CHECKING:
    from core.evaluation.models import ModelLoader


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
    for spec in config.rerankers:  # a missing, unfinished or untrained reranker: refused now
        resolve_reranker(spec, for_ranking=True)


def _resolve(config: RetrievalEvalConfig) -> EvalInputs:
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
    return EvalInputs(
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
    for n, spec in enumerate(r for r in config.rerankers if r.source == "run"):
        parents["reranker" if n == 0 else f"reranker_{n + 1}"] = spec.ref
    labels = inputs.labels
    return create_run(
        "retrieval_eval",
        name=config.name or eval_run_name(labels[0], len(labels) - 1, inputs.qa_run.manifest.name),
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
    with stage_run(run):
        inputs = _resolve(config)  # again: the inputs may have changed since the run was made
        scored = Scored(warnings=_input_warnings(inputs))
        for index, spec in enumerate(config.models):
            scored.loaded[inputs.labels[index]] = loader(spec)  # deferred: weights when needed
            scored.dims[inputs.labels[index]] = model_dims(index, inputs, scored)
        plan = _plan(inputs, scored, on_progress, should_stop)
        return _evaluate(run, inputs, scored, chroma_settings or ChromaSettings(), plan)


def _plan(
    inputs: EvalInputs,
    scored: Scored,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> StepPlan:
    """The evaluation's steps with their estimated costs (core.evaluation.plan)."""
    config = inputs.config
    return evaluation_plan(
        scored.dims,
        inputs.sizes,
        inputs.n_clusters,
        frontier=config.frontier,
        hybrid=config.hybrid,
        bm25=config.include_bm25,
        chroma=config.chroma_check is not False,
        similarity=bool(config.similarity_csv),
        n_resamples=config.n_resamples,
        n_permutations=config.n_permutations,
        on_progress=on_progress,
        should_stop=should_stop,
        rerank=(planned_arms(config), config.rerank_top),
    )


def _input_warnings(inputs: EvalInputs) -> list[str]:
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
    inputs: EvalInputs,
    scored: Scored,
    chroma_settings: ChromaSettings,
    plan: StepPlan,
) -> RetrievalEvalResult:
    config, labels, n = inputs.config, inputs.labels, len(inputs.items)
    if config.hybrid or config.include_bm25:
        with plan.step(steps.BM25_INDEX_STEP):
            val_questions = [i.question for i in inputs.val_items]
            index = bm25_index(inputs.texts)
            scored.lexical = LexicalSide(index, inputs.questions, val_questions)
    for index in range(len(config.models)):
        score_model(index, inputs, chroma_settings, plan, scored)
    if config.include_bm25:
        score_bm25(inputs, plan, scored)
    if config.rerankers:
        score_reranked(inputs, plan, scored)
    baseline = random_ranker_expected(len(inputs.chunks), [len(g) for g in inputs.gold], KS)
    plan.check_stop()  # the last chance: nothing is saved before the end
    with plan.step(steps.PAIRED_STEP):
        deltas, rerank_deltas = _deltas(inputs, scored)
    with plan.step(steps.ROWS_STEP):
        per_query, flips = _rows_and_flips(inputs, scored)
    with plan.step(steps.SIMILARITY_STEP) if config.similarity_csv else nullcontext():
        similarity = similarity_check(
            config, {label: scored.loaded[label] for label in labels}, labels[0], scored.warnings
        )
    if n >= MIN_QUERIES:
        scored.warnings += weak_delta_warnings(
            deltas, config.primary_metric, labels[0], n, config.confidence
        )
    with plan.step(steps.BOOTSTRAP_STEP):
        metrics = metrics_frame(
            scored.scores, config, baseline, len(inputs.chunks), n, inputs.clusters
        )
    frontier = None
    if config.frontier:
        with plan.step(steps.FRONTIER_STEP):
            frontier = _frontier(inputs, scored)
    result = RetrievalEvalResult(
        run_id=run.id,
        qa_run_id=inputs.qa_run.id,
        corpus_run_id=inputs.corpus_run_id,
        split=config.split,
        corpus_size=len(inputs.chunks),
        n_queries=n,
        base_label=labels[0],
        models=scored.models,
        metrics=metrics,
        deltas=deltas,
        tradeoff=tradeoff_frame(scored.scores),
        per_query=per_query,
        flips=flips,
        similarity=similarity,
        chroma=scored.chroma,
        warnings=scored.warnings,
        random_baseline=baseline,
        config=config.to_dict(),
        gold_counts=gold_counts(inputs.gold),
        frontier=frontier,
        n_clusters=inputs.n_clusters,
        query_sources=inputs.sources(),
        rerank_deltas=rerank_deltas,
    )
    with plan.step(steps.SAVE_STEP):
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
    plan.finish()
    return result


def _deltas(inputs: EvalInputs, scored: Scored) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(every arm against the base, every reranked arm against its retriever, None when none
    was reranked): one family."""
    base, pairs = inputs.labels[0], rerank_pairs(scored.models)
    deltas = deltas_frame(scored.scores, base, inputs.config, inputs.clusters, pairs)
    if not pairs:
        return deltas, None
    return split_rerank_deltas(deltas, base, scored.models)


def _rows_and_flips(inputs: EvalInputs, scored: Scored) -> tuple[pd.DataFrame, dict]:
    """The per-question table, and every compared model's flips against the base."""
    labels = inputs.labels
    per_query = per_query_frame(scored.scores, inputs.items, inputs.chunks, inputs.clusters)
    dims_of = {m["label"]: list(m["dims"]) for m in scored.models}
    kinds = ("tuned", "hybrid", "reranked")
    compared = [labels[0], *(m["label"] for m in scored.models if m["kind"] in kinds)]
    texts = {c.id: c.text for c in inputs.chunks}
    return per_query, collect_flips(per_query, compared, dims_of, texts, inputs.config.flip_k)


def _frontier(inputs: EvalInputs, scored: Scored) -> pd.DataFrame:
    config = inputs.config
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
