"""Retrieval metrics per query, with sentence-transformers' definitions (pure numpy).

How it works:
1. A ranking is de-duplicated (first occurrence wins), so a chunk retrieved twice counts once and
   no metric can exceed 1.0.
2. Rankings become a boolean relevance matrix `rel` of shape (n_queries, depth): `rel[q, i]` is true
   when the chunk at rank i+1 of query q is relevant. Short or empty rankings are padded with False.
3. Every metric is computed from `rel` and the number of relevant chunks per query, exactly as
   `InformationRetrievalEvaluator.compute_metrics` does (ST calls hit rate `accuracy@k`):
   - hit_rate@k  = 1 if a relevant chunk is in the top k
   - precision@k = relevant in top k / k  (k, not the list length: a short list is not rewarded)
   - recall@k    = relevant in top k / n_relevant
   - mrr@10      = 1 / rank of the first relevant chunk within the top 10 (0 if none)
   - ndcg@10     = DCG@10 / IDCG@10, binary gains, discount 1/log2(rank+1), IDCG over
                   min(10, n_relevant) ideal positions
   - map@100     = sum of precision at each relevant rank within the top 100 / min(100, n_relevant)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np

KS: tuple[int, ...] = (1, 3, 5, 10)
MRR_K = 10
NDCG_K = 10
MAP_K = 100
SEARCH_DEPTH = MAP_K  # how many results a search must return for every metric to be exact

_METRIC_RE = re.compile(r"^(hit_rate|precision|recall|mrr|ndcg|map)@(\d+)$")


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    """The metric names in report order: hit_rate@k, precision@k, recall@k, mrr@10, ndcg@10, map@100."""
    names = [f"hit_rate@{k}" for k in ks]
    names += [f"precision@{k}" for k in ks]
    names += [f"recall@{k}" for k in ks]
    names += [f"mrr@{MRR_K}", f"ndcg@{NDCG_K}", f"map@{MAP_K}"]
    return names


def parse_metric(name: str) -> tuple[str, int]:
    """Split 'hit_rate@5' into ('hit_rate', 5)."""
    match = _METRIC_RE.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a metric name such as 'hit_rate@5' or 'ndcg@10'")
    return match.group(1), int(match.group(2))


def st_metric_key(name: str) -> str:
    """The key sentence-transformers' InformationRetrievalEvaluator uses for one of our metrics
    (without the score-function prefix): hit_rate@5 -> accuracy@5."""
    family, k = parse_metric(name)
    return f"{'accuracy' if family == 'hit_rate' else family}@{k}"


def dedupe_ranking(ranked_ids: Iterable[Any]) -> list[Any]:
    """Remove repeated ids, keeping each id's first (best) position."""
    seen: set[Any] = set()
    out: list[Any] = []
    for item in ranked_ids:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def relevance_matrix(
    rankings: Sequence[Sequence[Any]],
    relevant: Sequence[Collection[Any]],
    depth: int = SEARCH_DEPTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean relevance (n, depth) and relevant counts (n,) from ranked id lists and relevant sets.

    Rankings are de-duplicated first; lists shorter than `depth` are padded with "not relevant".
    """
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevant sets")
    rel = np.zeros((len(rankings), depth), dtype=bool)  # (n_queries, depth)
    n_relevant = np.zeros(len(rankings), dtype=np.int64)
    for q, (ranking, gold) in enumerate(zip(rankings, relevant, strict=True)):
        gold_set = set(gold)
        if not gold_set:
            raise ValueError(f"query #{q} has no relevant ids; it cannot be scored")
        n_relevant[q] = len(gold_set)
        for i, item in enumerate(dedupe_ranking(ranking)[:depth]):
            rel[q, i] = item in gold_set
    return rel, n_relevant


def relevance_from_indices(
    top_idx: np.ndarray, gold_idx: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Relevance (n, depth) from a search's top indices (n, depth; -1 = no result) and the gold
    corpus indices per query. Assumes each row of `top_idx` has no repeated index (exact search)."""
    n, _ = top_idx.shape
    if len(gold_idx) != n:
        raise ValueError(f"{n} result rows but {len(gold_idx)} gold sets")
    n_relevant = np.array([len(set(g)) for g in gold_idx], dtype=np.int64)
    if n and n_relevant.min() == 0:
        raise ValueError("every query needs at least one relevant chunk")
    width = int(n_relevant.max()) if n else 1
    gold = np.full((n, width), -2, dtype=np.int64)  # -2 never matches a result or the -1 padding
    for q, g in enumerate(gold_idx):
        uniq = sorted(set(g))
        gold[q, : len(uniq)] = uniq
    rel = (top_idx[:, :, None] == gold[:, None, :]).any(axis=2)  # (n, depth)
    return rel, n_relevant


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)  # rank i (0-based) -> 1/log2(i+2)


def score_relevance(
    rel: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """Per-query metric values, each an array (n,) in [0, 1], from relevance (n, depth) and counts (n,)."""
    rel = np.asarray(rel, dtype=bool)
    n, depth = rel.shape
    need = max([*ks, MRR_K, NDCG_K, MAP_K])
    if depth < need:  # pad so "k larger than the list" is simply "no more hits"
        rel = np.concatenate([rel, np.zeros((n, need - depth), dtype=bool)], axis=1)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if n and n_rel.min() <= 0:
        raise ValueError("every query needs at least one relevant chunk")
    hits = rel.astype(np.float64)  # (n, depth)
    cum = np.cumsum(hits, axis=1)  # relevant found within the top i+1, (n, depth)

    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hit_rate@{k}"] = (cum[:, k - 1] > 0).astype(np.float64)
    for k in ks:
        out[f"precision@{k}"] = cum[:, k - 1] / k
    for k in ks:
        out[f"recall@{k}"] = cum[:, k - 1] / n_rel

    top = rel[:, :MRR_K]
    first = np.argmax(top, axis=1)  # first relevant position (0 when none; masked below)
    out[f"mrr@{MRR_K}"] = np.where(top.any(axis=1), 1.0 / (first + 1.0), 0.0)

    disc = _discounts(NDCG_K)
    dcg = hits[:, :NDCG_K] @ disc
    ideal = np.cumsum(disc)[np.minimum(NDCG_K, n_rel.astype(np.int64)) - 1]
    out[f"ndcg@{NDCG_K}"] = dcg / ideal

    ranks = np.arange(1, MAP_K + 1, dtype=np.float64)
    precision_at_hits = (hits[:, :MAP_K] * cum[:, :MAP_K] / ranks).sum(axis=1)
    out[f"map@{MAP_K}"] = precision_at_hits / np.minimum(MAP_K, n_rel)
    return out


def score_ranking(
    ranked_ids: Sequence[Any], relevant_ids: Collection[Any], ks: Sequence[int] = KS
) -> dict[str, float]:
    """Every metric for one query, from its ranked ids (duplicates count once) and its relevant ids."""
    rel, n_rel = relevance_matrix([ranked_ids], [relevant_ids])
    return {name: float(values[0]) for name, values in score_relevance(rel, n_rel, ks).items()}


def score_rankings(
    rankings: Sequence[Sequence[Any]], relevant: Sequence[Collection[Any]], ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """Per-query metric arrays (n,) for many queries."""
    rel, n_rel = relevance_matrix(rankings, relevant)
    return score_relevance(rel, n_rel, ks)


def mean_scores(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Average each metric over queries (0.0 for no queries)."""
    return {name: float(np.mean(v)) if len(v) else 0.0 for name, v in per_query.items()}


def first_relevant_rank(rel: np.ndarray) -> np.ndarray:
    """1-based rank of the first relevant result per query, 0 when none is in the list. (n,)"""
    rel = np.asarray(rel, dtype=bool)
    found = rel.any(axis=1)
    return np.where(found, np.argmax(rel, axis=1) + 1, 0)
