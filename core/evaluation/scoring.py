"""Scoring models on a question set: one encoding per model, every Matryoshka dim by truncation,
per-query metrics with bootstrap intervals, and every tuned-minus-base delta with its paired test
and verdict (core.evaluation.verdict)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.documents.corpus import Chunk
from core.embeddings import (
    document_prompt,
    encode_texts,
    query_prompt,
    truncate_normalize,
)
from core.errors import InputError
from core.evaluation.config import TOP_SAVED
from core.evaluation.metrics import (
    KS,
    SEARCH_DEPTH,
    first_relevant_rank,
    metric_names,
    parse_metric,
    relevance_from_indices,
    score_relevance,
)
from core.evaluation.quantization import bytes_per_vector
from core.evaluation.results import per_query_table
from core.evaluation.search import measure_query_latency, search_exact
from core.evaluation.statistics import (
    bootstrap_ci,
    compare_paired,
    maxt_adjust,
    n_clusters,
)
from core.evaluation.verdict import (
    MAXT,
    alpha_of,
    assign_families,
)
from core.progress import ProgressCallback, StopCheck
from core.questions.dataset import QAItem

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.evaluation.config import RetrievalEvalConfig


@dataclass
class DimScores:
    """One model at one dimension: top results and per-query metrics."""

    label: str
    kind: str
    dim: int | None
    top_idx: np.ndarray  # (n, depth)
    top_scores: np.ndarray  # (n, depth)
    per_query: dict[str, np.ndarray]  # metric -> (n,)
    gold_rank: np.ndarray  # (n,), 0 = not in the top `depth`
    latency_ms: float | None = None


def encode_corpus(
    model: SentenceTransformer,
    corpus_texts: Sequence[str],
    *,
    label: str = "model",
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> np.ndarray:
    """The corpus at the native dimension with the model's document prompt: (N, native)."""
    return encode_texts(
        model,
        list(corpus_texts),
        prompt=document_prompt(model),
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
        stage=f"{label}: corpus",
    )


def encode_queries(
    model: SentenceTransformer,
    questions: Sequence[str],
    *,
    label: str = "model",
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> np.ndarray:
    """The questions at the native dimension with the model's query prompt: (n, native)."""
    return encode_texts(
        model,
        list(questions),
        prompt=query_prompt(model),
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
        stage=f"{label}: questions",
    )


def encode_corpus_and_queries(
    model: SentenceTransformer,
    corpus_texts: Sequence[str],
    questions: Sequence[str],
    *,
    label: str = "model",
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode the corpus (document prompt) and the questions (query prompt) once, at the native
    dimension: (N, native) and (n, native), L2-normalised float32."""
    options = {"label": label, "batch_size": batch_size}
    return (
        encode_corpus(
            model, corpus_texts, on_progress=on_progress, should_stop=should_stop, **options
        ),
        encode_queries(
            model, questions, on_progress=on_progress, should_stop=should_stop, **options
        ),
    )


def score_dims(
    corpus_native: np.ndarray,
    query_native: np.ndarray,
    gold: Sequence[Sequence[int]],
    dims: Sequence[int],
    tie_ranks: np.ndarray,
    *,
    label: str = "model",
    kind: str = "base",
    measure_latency: bool = True,
) -> list[DimScores]:
    """Every dimension from one native encoding: truncate + renormalise, exact top-100 search,
    per-query metrics (and the median single-query search latency)."""
    out = []
    for dim in dims:
        corpus_d = truncate_normalize(corpus_native, dim)  # (N, dim)
        query_d = truncate_normalize(query_native, dim)  # (n, dim)
        top_idx, top_scores = search_exact(query_d, corpus_d, SEARCH_DEPTH, tie_ranks)
        result = score_ranking(label, kind, dim, top_idx, top_scores, list(gold))
        if measure_latency:
            result.latency_ms = measure_query_latency(query_d, corpus_d)
        out.append(result)
    return out


def gold_indices(
    items: Sequence[QAItem], index_of: dict[str, int], corpus_run_id: str
) -> list[list[int]]:
    """Each question's relevant chunks as corpus positions: every gold chunk (all chunks holding
    its evidence), the primary one first."""
    missing = [i.id for i in items if any(c not in index_of for c in i.gold_ids)]
    if missing:
        raise InputError(
            f"{len(missing)} questions point at chunks that are not in corpus run {corpus_run_id}.",
            found=f"question ids {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
            fix="regenerate the questions for this corpus run",
        )
    return [[index_of[c] for c in i.gold_ids] for i in items]


def gold_counts(gold: Sequence[Sequence[int]]) -> dict[str, int]:
    """How many questions have 1, 2, … gold chunks ({"1": 157, "2": 6})."""
    counts: dict[str, int] = {}
    for g in gold:
        counts[str(len(g))] = counts.get(str(len(g)), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def score_ranking(
    label: str,
    kind: str,
    dim: int | None,
    top_idx: np.ndarray,
    top_scores: np.ndarray,
    gold: list[list[int]],
) -> DimScores:
    rel, n_rel = relevance_from_indices(top_idx, gold)
    return DimScores(
        label,
        kind,
        dim,
        top_idx,
        top_scores,
        score_relevance(rel, n_rel, KS),
        first_relevant_rank(rel),
    )


def metrics_frame(
    scored: list[DimScores],
    config: RetrievalEvalConfig,
    baseline: dict[str, float],
    corpus_size: int,
    n: int,
    clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every model's mean of every metric per dim with its cluster bootstrap interval."""
    names = metric_names(KS)
    n_cl = n_clusters(clusters, n) if n else 0
    rows = []
    for s in scored:
        values = np.stack([s.per_query[m] for m in names], axis=1)  # (n, n_metrics)
        mean, low, high = bootstrap_ci(
            values, config.n_resamples, config.confidence, config.seed, clusters
        )
        for j, name in enumerate(names):
            rows.append(
                {
                    "model": s.label,
                    "kind": s.kind,
                    "dim": s.dim,
                    "metric": name,
                    "k": parse_metric(name)[1],
                    "value": float(mean[j]),
                    "ci_low": float(low[j]),
                    "ci_high": float(high[j]),
                    "n_queries": n,
                    "n_clusters": n_cl,
                    "corpus_size": corpus_size,
                    "random_baseline": baseline[name],
                }
            )
    frame = pd.DataFrame(rows)
    frame["dim"] = frame["dim"].astype("Int64")
    return frame


DELTA_COLUMNS = [
    "model",
    "base_model",
    "dim",
    "metric",
    "k",
    "base_value",
    "value",
    "delta",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adj",
    "adjustment",
    "alpha_level",
    "test",
    "n_queries",
    "n_clusters",
    "sd_diff",
    "se_diff",
    "warning",
]


def deltas_frame(
    scored: list[DimScores],
    base_label: str,
    config: RetrievalEvalConfig,
    clusters: np.ndarray | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Every tuned model, hybrid and reranked arm minus the base, per dim and metric, compared
    whole clusters at a time, with the verdict columns of core.evaluation.verdict: one family per
    metric over every compared (model, dim) of this evaluation, adjusted by max-T over the same
    cluster sign-flip draws; the primary metric's family decides the headline. `extra` adds
    (model, reference) comparisons at the model's dim to the same family (a reranked arm against
    the retriever it reranks), with the reference as `base_model`."""
    base = {s.dim: s for s in scored if s.label == base_label}
    kinds = ("tuned", "hybrid", "reranked")
    pairs = [(s, base[s.dim]) for s in scored if s.kind in kinds and s.dim in base]
    arms = {(s.label, s.dim): s for s in scored}
    for model, reference in extra:
        for s in [s for s in scored if s.label == model and reference != base_label]:
            if (reference, s.dim) in arms:
                pairs.append((s, arms[(reference, s.dim)]))
    alpha = alpha_of(config.confidence)
    rows = []
    for name in metric_names(KS) if pairs else []:
        diffs = np.stack([s.per_query[name] - ref.per_query[name] for s, ref in pairs], 1)
        family = maxt_adjust(diffs, clusters, config.n_permutations, config.seed, alpha)
        for j, (s, ref) in enumerate(pairs):
            cmp = compare_paired(
                ref.per_query[name],
                s.per_query[name],
                name,
                clusters=clusters,
                n_resamples=config.n_resamples,
                n_permutations=config.n_permutations,
                confidence=config.confidence,
                seed=config.seed,
                sign_flip_p=float(family.p_raw[j]),  # the same draws: computed once
            )
            rows.append(
                {
                    "model": s.label,
                    "base_model": ref.label,
                    "dim": s.dim,
                    "metric": name,
                    "k": parse_metric(name)[1],
                    "base_value": cmp.base,
                    "value": cmp.other,
                    "delta": cmp.delta,
                    "ci_low": cmp.ci_low,
                    "ci_high": cmp.ci_high,
                    "p_value": cmp.p_value,
                    # never below the comparison's own raw p (McNemar's for hit rates)
                    "p_adj": max(float(family.p_adjusted[j]), cmp.p_value),
                    "adjustment": MAXT,
                    "alpha_level": float(family.levels[j]),
                    "test": cmp.test,
                    "n_queries": cmp.n_queries,
                    "n_clusters": cmp.clusters,
                    "sd_diff": cmp.sd_diff,
                    "se_diff": cmp.se_diff,
                    "warning": cmp.warning or "",
                }
            )
    frame = pd.DataFrame(rows, columns=DELTA_COLUMNS)
    frame = assign_families(frame, config.primary_metric, alpha)
    if not frame.empty:
        frame["dim"] = frame["dim"].astype("Int64")
    return frame


def per_query_frame(
    scored: list[DimScores],
    items: list[QAItem],
    chunks: list[Chunk],
    clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per model, dim and question: the gold chunks, the rank of the first, the saved top ids
    and scores, and the question's cluster."""
    rows = []
    for s in scored:
        for q, item in enumerate(items):
            top = s.top_idx[q, :TOP_SAVED]
            rows.append(
                {
                    "query_id": item.id,
                    "cluster": int(clusters[q]) if clusters is not None and len(clusters) else q,
                    "question": item.question,
                    "model": s.label,
                    "dim": s.dim,
                    "gold_ids": item.gold_ids,
                    "gold_rank": int(s.gold_rank[q]) or None,
                    "top_ids": [chunks[int(i)].id for i in top],
                    "top_scores": [round(float(x), 6) for x in s.top_scores[q, :TOP_SAVED]],
                }
            )
    return per_query_table(rows)


def tradeoff_frame(scored: Sequence[DimScores]) -> pd.DataFrame:
    """Bytes per vector (float32) and measured single-query latency per model and dim."""
    return pd.DataFrame(
        [
            {
                "model": s.label,
                "dim": s.dim,
                "bytes_per_vector": bytes_per_vector(s.dim, "float32"),
                "latency_ms": s.latency_ms,
            }
            for s in scored
            if s.dim is not None and s.kind not in ("hybrid", "reranked")
        ],
        columns=["model", "dim", "bytes_per_vector", "latency_ms"],
    )


def native_ndcg(
    scored: Sequence[DimScores], native_dims: dict[str, int | None]
) -> dict[str, float]:
    """ndcg@10 of each model at its native dim (BM25 has none), for run listings."""
    return {
        s.label: round(float(np.mean(s.per_query["ndcg@10"])), 4)
        for s in scored
        if s.dim is None or s.dim == native_dims.get(s.label)
    }
