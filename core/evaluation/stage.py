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

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import ChromaSettings
from core.documents.corpus import Chunk, load_chunks
from core.embeddings import (
    ModelSpec,
    document_prompt,
    native_dim,
    query_prompt,
    truncate_normalize,
)
from core.errors import ConfigError, InputError, RunError
from core.evaluation.chroma_check import chroma_report
from core.evaluation.config import BM25_LABEL, TOP_SAVED, dims_for
from core.evaluation.flips import compute_flips
from core.evaluation.metrics import (
    KS,
    SEARCH_DEPTH,
    metric_names,
)
from core.evaluation.results import RetrievalEvalResult, save_retrieval_eval
from core.evaluation.scoring import (
    deltas_frame,
    encode_corpus_and_queries,
    gold_counts,
    gold_indices,
    metrics_frame,
    per_query_frame,
    score_dims,
    score_ranking,
)
from core.evaluation.search import id_tie_ranks, search_bm25
from core.evaluation.similarity import compare_similarity, load_similarity_pairs
from core.evaluation.statistics import (
    MIN_QUERIES,
    random_ranker_expected,
)
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.dataset import QAItem, load_qa
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import stage_run
from core.runs.lineage import check_same_lineage

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.scoring import DimScores

logger = logging.getLogger(__name__)


ModelLoader = Callable[[ModelSpec], "SentenceTransformer"]


def _check_model_lineage(spec: ModelSpec, qa_run: Run) -> Run | None:
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


def evaluate_retrieval(
    config: RetrievalEvalConfig,
    *,
    model_loader: ModelLoader | None = None,
    chroma_settings: ChromaSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RetrievalEvalResult:
    """Evaluate every model at every dimension on a qa run's split and save a retrieval_eval run.

    `model_loader` turns a ModelSpec into a loaded model (default: core.embeddings.load_model on
    `config.device`); pages pass their cached loader. Raises LineageError when a model run was
    trained on another qa run or corpus than the one evaluated.
    """
    from core.embeddings import load_model

    if not config.models:
        raise ConfigError("No model to evaluate.", fix="pick at least the base model")
    if not 1 <= config.flip_k <= TOP_SAVED:
        raise ConfigError(f"Flip k must be between 1 and {TOP_SAVED}, got {config.flip_k}.")
    if config.primary_metric not in metric_names(KS):
        raise ConfigError(
            f"{config.primary_metric!r} is not a metric ragbench computes.",
            fix=f"pick the primary metric from {', '.join(metric_names(KS))}",
        )
    loader = model_loader or (lambda spec: load_model(spec, device=config.device))

    qa_run = load_run(config.qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(f"Run {qa_run.id} is a {qa_run.kind} run, not a qa run.")
    corpus_run_id = qa_run.manifest.parents.get("corpus")
    if not corpus_run_id:
        raise RunError(f"QA run {qa_run.id} names no corpus run.", fix="regenerate the questions")
    model_runs = [_check_model_lineage(spec, qa_run) for spec in config.models]
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
    gold = gold_indices(items, index_of, corpus_run_id)
    tie_ranks = id_tie_ranks(chunk_ids)
    questions = [i.question for i in items]

    parents = {"qa": qa_run.id}
    for n, model_run in enumerate(r for r in model_runs if r is not None):
        parents["model" if n == 0 else f"model_{n + 1}"] = model_run.id
    run = create_run(
        "retrieval_eval",
        name=config.name or f"{labels[0]} vs {len(labels) - 1} model(s) on {qa_run.manifest.name}",
        config=config.to_dict(),
        parents=parents,
    )
    run.set_status("running")
    with stage_run(run):
        result = _evaluate(
            run,
            config,
            labels,
            model_runs,
            qa_run,
            corpus_run_id,
            chunks,
            items,
            questions,
            gold,
            tie_ranks,
            loader,
            chroma_settings or ChromaSettings(),
            on_progress,
            should_stop,
        )
    return result


def _evaluate(
    run: Run,
    config: RetrievalEvalConfig,
    labels: list[str],
    model_runs: list[Run | None],
    qa_run: Run,
    corpus_run_id: str,
    chunks: list[Chunk],
    items: list[QAItem],
    questions: list[str],
    gold: list[list[int]],
    tie_ranks: np.ndarray,
    loader: ModelLoader,
    chroma_settings: ChromaSettings,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> RetrievalEvalResult:
    warnings: list[str] = []
    scored: list[DimScores] = []
    models_info: list[dict[str, Any]] = []
    chroma_reports: list[dict[str, Any]] = []
    loaded: dict[str, Any] = {}
    texts = [c.text for c in chunks]
    n = len(items)
    if n < MIN_QUERIES:
        warnings.append(
            f"Only {n} questions in the {config.split or 'selected'} split: confidence intervals "
            "are wide and small differences cannot be told apart."
        )
    for label, model_run in zip(labels, model_runs, strict=True):
        note = model_run_note(model_run, label)
        if note:
            warnings.append(note)
    tracker = ProgressTracker(
        "retrieval eval", len(config.models) + int(config.include_bm25), on_progress, should_stop
    )
    tracker.report("starting")

    for index, (spec, label) in enumerate(zip(config.models, labels, strict=True)):
        kind = "base" if index == 0 else "tuned"
        model = loader(spec)
        loaded[label] = model
        native = native_dim(model)
        dims = dims_for(native, config.dims)
        if config.dims and set(config.dims) - set(dims):
            dropped = sorted(set(config.dims) - set(dims), reverse=True)
            warnings.append(f"{label}: dims {dropped} exceed its native {native} and were skipped.")
        if not dims:
            raise ConfigError(f"No requested dimension fits {label} (native {native}).")
        q_prompt, d_prompt = query_prompt(model), document_prompt(model)
        corpus_native, query_native = encode_corpus_and_queries(
            model,
            texts,
            questions,
            label=label,
            batch_size=config.batch_size,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        for result in score_dims(
            corpus_native, query_native, gold, dims, tie_ranks, label=label, kind=kind
        ):
            scored.append(result)
            if config.chroma_check is not False:
                report = chroma_report(
                    chroma_settings,
                    corpus_run_id,
                    spec,
                    label,
                    result.dim,
                    truncate_normalize(query_native, result.dim),
                    result.top_idx,
                    len(chunks),
                    [c.id for c in chunks],
                    explicit=bool(config.chroma_check),
                )
                if report is not None:
                    chroma_reports.append(report)
                    if report.get("warning"):
                        warnings.append(report["warning"])
        model_run = model_runs[index]
        models_info.append(
            {
                **spec.to_dict(),
                "label": label,
                "kind": kind,
                "run_status": model_run.manifest.status if model_run is not None else None,
                "native_dim": native,
                "dims": dims,
                "query_prompt": q_prompt,
                "document_prompt": d_prompt,
            }
        )
        tracker.advance(1, f"{label} scored at dims {dims}")

    if config.include_bm25:
        top_idx, top_scores = search_bm25(texts, questions, SEARCH_DEPTH, tie_ranks)
        scored.append(score_ranking(BM25_LABEL, "bm25", None, top_idx, top_scores, gold))
        models_info.append(
            {
                "source": "bm25",
                "ref": "",
                "label": BM25_LABEL,
                "kind": "bm25",
                "native_dim": None,
                "dims": [],
            }
        )
        tracker.advance(1, "BM25 scored")

    n_relevant = [len(g) for g in gold]
    baseline = random_ranker_expected(len(chunks), n_relevant, KS)
    tracker.report("statistics")
    metrics = metrics_frame(scored, config, baseline, len(chunks), n)
    deltas = deltas_frame(scored, labels[0], config)
    tradeoff = pd.DataFrame(
        [
            {
                "model": s.label,
                "dim": s.dim,
                "bytes_per_vector": s.dim * 4,
                "latency_ms": s.latency_ms,
            }
            for s in scored
            if s.dim is not None
        ],
        columns=["model", "dim", "bytes_per_vector", "latency_ms"],
    )
    per_query = per_query_frame(scored, items, chunks)
    flips = {
        "k": config.flip_k,
        "base": labels[0],
        "comparisons": [],
        "texts": {},
    }
    for other in labels[1:]:
        for dim in sorted(
            {s.dim for s in scored if s.label == other and s.dim is not None}, reverse=True
        ):
            if any(s.label == labels[0] and s.dim == dim for s in scored):
                flips["comparisons"].append(
                    compute_flips(per_query, labels[0], other, dim, config.flip_k)
                )
    used = {
        cid
        for comp in flips["comparisons"]
        for row in comp["gained"] + comp["lost"]
        for cid in row["base_top"] + row["model_top"] + row["gold_ids"]
    }
    flips["texts"] = {c.id: c.text for c in chunks if c.id in used}

    similarity = None
    if config.similarity_csv:
        tracker.report("general similarity")
        try:
            pairs = load_similarity_pairs(config.similarity_csv)
            similarity = compare_similarity(
                {label: loaded[label] for label in labels},
                pairs,
                base_label=labels[0],
                n_resamples=min(config.n_resamples, 1000),
                seed=config.seed,
                batch_size=config.batch_size,
                confidence=config.confidence,
            )
        except InputError as exc:
            warnings.append(f"General-similarity check skipped: {exc}")

    if n >= MIN_QUERIES and not deltas.empty:
        # One line per model: the dims whose primary-metric interval is wider than the difference.
        # (Below MIN_QUERIES the warning above already says it for every dim.)
        primary = config.primary_metric
        weak = deltas[(deltas["metric"] == primary) & (deltas["warning"] != "")]
        for model, part in weak.groupby("model", sort=False):
            dims = ", ".join(str(int(d)) for d in part["dim"])
            warnings.append(
                f"{model} vs {labels[0]}: at dims {dims} the {config.confidence:.0%} interval of "
                f"the {primary} difference is wider than the difference itself; {n} queries "
                "cannot tell these models apart there."
            )

    result = RetrievalEvalResult(
        run_id=run.id,
        qa_run_id=qa_run.id,
        corpus_run_id=corpus_run_id,
        split=config.split,
        corpus_size=len(chunks),
        n_queries=n,
        base_label=labels[0],
        models=models_info,
        metrics=metrics,
        deltas=deltas,
        tradeoff=tradeoff,
        per_query=per_query,
        flips=flips,
        similarity=similarity,
        chroma=chroma_reports,
        warnings=warnings,
        random_baseline=baseline,
        config=config.to_dict(),
        gold_counts=gold_counts(gold),
    )
    save_retrieval_eval(run, result)
    _update_model_cards(result, labels, model_runs)
    native_ndcg = {
        s.label: round(float(np.mean(s.per_query["ndcg@10"])), 4)
        for s in scored
        if s.dim is None
        or s.dim == next(m["native_dim"] for m in models_info if m["label"] == s.label)
    }
    run.set_status(
        "done", corpus_size=len(chunks), n_queries=n, split=config.split, ndcg_at_10=native_ndcg
    )
    tracker.report("done")
    return result


def _update_model_cards(
    result: RetrievalEvalResult, labels: list[str], model_runs: list[Run | None]
) -> None:
    """Each tuned model run's card gets this evaluation's test-split verdict (core.evaluation.verdict), so
    a card pushed to the Hub says what the page says. Only test-split evaluations qualify."""
    if result.split != "test":
        return
    from core.finetune.model_card import write_eval_result

    for label, model_run in list(zip(labels, model_runs, strict=True))[1:]:
        if model_run is not None:
            try:
                write_eval_result(model_run, result, label)
            except OSError as exc:  # the card is a courtesy copy: never fail the evaluation
                logger.warning("could not update the model card of %s: %s", model_run.id, exc)
