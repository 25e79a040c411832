"""Hybrid retrieval: BM25 fused with a dense model, evaluated like any model.

How it works:
1. Reciprocal rank fusion (RRF): a chunk's score is the sum of 1 / (60 + rank) over the dense
   top 100 and the BM25 top 100 (rank 1 is the best; a chunk absent from a list adds nothing).
2. Weighted fusion: per query, the dense cosines and the BM25 scores are each min-max normalised
   over the whole corpus, then w * dense + (1 - w) * BM25. The weight w is chosen on the
   validation split only (a grid of 0, 0.1, ..., 1 by the primary metric), never on the questions
   the result is reported on.
3. Both produce a top 100 per question, ties by ascending chunk id, scored with the same metrics,
   intervals and paired tests as the dense models (core.evaluation.scoring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.evaluation.metrics import KS, SEARCH_DEPTH, relevance_from_indices, score_relevance
from core.evaluation.scoring import DimScores, score_ranking
from core.evaluation.search import top_k_from_scores

RRF_K = 60
WEIGHTS = tuple(round(w, 1) for w in np.linspace(0.0, 1.0, 11))


def _minmax(scores: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] (a constant row becomes 0)."""
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return (scores - low) / np.where(span > 0, span, 1.0)


def rrf_search(
    dense: np.ndarray, lexical: np.ndarray, k: int, tie_ranks: np.ndarray, depth: int = SEARCH_DEPTH
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of reciprocal rank fusion of two (n, N) score matrices (each list cut at `depth`),
    through fuse_hits, the one RRF of the project."""
    dense_top, _ = top_k_from_scores(dense, depth, tie_ranks)  # (n, depth)
    lexical_top, _ = top_k_from_scores(lexical, depth, tie_ranks)
    n, kk = dense.shape[0], min(k, dense.shape[1])
    idx = np.zeros((n, kk), dtype=np.int64)
    val = np.zeros((n, kk), dtype=np.float64)
    for row in range(n):
        # Positions stand in for chunk ids; their tie rank keeps ties by ascending chunk id.
        fused = fuse_hits(
            [(int(tie_ranks[i]), 0.0) for i in dense_top[row]],
            [(int(tie_ranks[i]), 0.0) for i in lexical_top[row]],
            kk,
        )
        by_rank = {int(tie_ranks[i]): i for i in (*dense_top[row], *lexical_top[row])}
        fused_idx = [by_rank[r] for r, _ in fused]
        idx[row, : len(fused)] = fused_idx
        val[row, : len(fused)] = [score for _, score in fused]
        if len(fused) < kk:  # fewer fused hits than k: the rest by ascending chunk id
            rest = [i for i in np.argsort(tie_ranks) if i not in set(fused_idx)][: kk - len(fused)]
            idx[row, len(fused) :] = rest
    return idx, val


def weighted_search(
    dense: np.ndarray, lexical: np.ndarray, weight: float, k: int, tie_ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of w * normalised dense + (1 - w) * normalised BM25."""
    fused = weight * _minmax(dense) + (1.0 - weight) * _minmax(lexical)
    return top_k_from_scores(fused, k, tie_ranks)


def choose_weight(
    dense: np.ndarray,
    lexical: np.ndarray,
    gold: Sequence[Sequence[int]],
    tie_ranks: np.ndarray,
    metric: str,
    weights: Sequence[float] = WEIGHTS,
) -> tuple[float, dict[float, float]]:
    """The weight with the best mean `metric` on these (validation) questions, the smallest on a
    tie, and the mean at every weight tried."""
    means = {}
    for w in weights:
        top, _ = weighted_search(dense, lexical, w, SEARCH_DEPTH, tie_ranks)
        rel, n_rel = relevance_from_indices(top, list(gold))
        means[float(w)] = float(np.mean(score_relevance(rel, n_rel, KS)[metric]))
    best = max(means.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return best, means


def score_hybrids(
    label: str,
    dim: int,
    corpus: np.ndarray,
    queries: np.ndarray,
    bm25: dict[str, np.ndarray],
    gold: Sequence[Sequence[int]],
    tie_ranks: np.ndarray,
    metric: str,
    *,
    val_queries: np.ndarray | None = None,
    val_gold: Sequence[Sequence[int]] = (),
    why_no_weight: str = "",
) -> list[tuple[DimScores, dict[str, Any]]]:
    """BM25 fused with one dense model (L2-normalised corpus (N, d) and queries (n, d)): RRF and
    the weighted sum, each as scored rankings with the facts a results table records. `bm25`
    holds the BM25 score matrices of the "test" (the evaluated) and "validation" questions."""
    dense = queries @ corpus.T  # (n, N) cosines
    lexical = bm25["test"]
    top, scores = rrf_search(dense, lexical, SEARCH_DEPTH, tie_ranks)
    rrf = score_ranking(f"{label} + BM25 (RRF)", "hybrid", dim, top, scores, list(gold))
    weight = 0.5
    note = f"{why_no_weight or 'no validation questions to tune it on'}: 0.5 used"
    if val_queries is not None and len(val_gold):
        weight, _ = choose_weight(
            val_queries @ corpus.T, bm25["validation"], val_gold, tie_ranks, metric
        )
        note = f"chosen on {len(val_gold)} validation questions"
    top, scores = weighted_search(dense, lexical, weight, SEARCH_DEPTH, tie_ranks)
    weighted = score_ranking(f"{label} + BM25 (weighted)", "hybrid", dim, top, scores, list(gold))
    base = {"source": "hybrid", "ref": label, "kind": "hybrid", "native_dim": dim, "dims": [dim]}
    return [
        (rrf, {**base, "label": rrf.label, "fusion": "rrf", "rrf_k": RRF_K}),
        (
            weighted,
            {
                **base,
                "label": weighted.label,
                "fusion": "weighted",
                "weight": weight,
                "weight_note": note,
            },
        ),
    ]


def fuse_hits(
    dense: Sequence[tuple[Any, float]], lexical: Sequence[tuple[Any, float]], k: int
) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion of two ranked hit lists (chunk id, score) into the top k, with the
    fused score; ties go to the smaller chunk id. Retrieval eval and the RAG retriever use it."""
    fused: dict[Any, float] = {}
    for hits in (dense, lexical):
        for rank, (chunk_id, _) in enumerate(hits, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
