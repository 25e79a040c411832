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
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.evaluation.metrics import KS, SEARCH_DEPTH, relevance_from_indices, score_relevance
from core.evaluation.scoring import DimScores, score_ranking
from core.evaluation.search import BM25Index, query_block, top_k_from_scores

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


PRUNE_POOL = 1000  # candidates per list from which the weighted fusion's top 100 is exact


def weighted_tops(
    dense: np.ndarray,
    lexical: np.ndarray,
    weights: Sequence[float],
    k: int,
    tie_ranks: np.ndarray,
    pool: int = PRUNE_POOL,
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """weighted_search at every weight, fusing only a pool of candidates: each row's `pool` best
    chunks by dense score and by BM25. A chunk outside the pool scores at most w x the pool's
    lowest normalised dense score + (1 - w) x its lowest normalised BM25 score; a row whose k-th
    best candidate beats that bound strictly has its exact top k among the candidates, and any
    other row is fused in full. The same indices and scores as weighted_search, with about
    2 x pool instead of N fused scores per question and weight."""
    n, n_corpus = dense.shape
    kk = min(k, n_corpus)
    if n_corpus <= 2 * pool or n == 0:  # nothing to gain
        return {float(w): weighted_search(dense, lexical, w, k, tie_ranks) for w in weights}
    rows = np.arange(n)[:, None]
    sides = []
    for scores in (dense, lexical):  # the same normalisation as _minmax, candidates only
        low = scores.min(axis=1, keepdims=True)
        span = scores.max(axis=1, keepdims=True) - low
        span = np.where(span > 0, span, 1.0)
        best = np.argpartition(scores, n_corpus - pool, axis=1)[:, n_corpus - pool :]  # (n, pool)
        edge = np.take_along_axis(scores, best, 1).min(axis=1, keepdims=True)
        sides.append((best, low, span, (edge - low) / span))
    cand = np.sort(np.concatenate([sides[0][0], sides[1][0]], axis=1), axis=1)  # (n, 2 pool)
    repeat = np.zeros(cand.shape, dtype=bool)
    repeat[:, 1:] = cand[:, 1:] == cand[:, :-1]  # a chunk in both pools counts once
    dense_n = (dense[rows, cand] - sides[0][1]) / sides[0][2]
    lexical_n = (lexical[rows, cand] - sides[1][1]) / sides[1][2]
    out = {}
    for w in weights:
        fused = w * dense_n + (1.0 - w) * lexical_n  # (n, 2 pool)
        fused[repeat] = -np.inf
        order = np.lexsort((tie_ranks[cand], -fused), axis=1)[:, :kk]
        top, top_scores = cand[rows, order], fused[rows, order]
        bound = (w * sides[0][3] + (1.0 - w) * sides[1][3])[:, 0]  # (n,) best score outside
        unsure = np.flatnonzero(top_scores[:, -1] <= bound)
        if len(unsure):
            top[unsure], top_scores[unsure] = weighted_search(
                dense[unsure], lexical[unsure], w, k, tie_ranks
            )
        out[float(w)] = (top, top_scores)
    return out


def weight_metrics(
    dense: np.ndarray,
    lexical: np.ndarray,
    gold: Sequence[Sequence[int]],
    tie_ranks: np.ndarray,
    metric: str,
    weights: Sequence[float] = WEIGHTS,
) -> dict[float, np.ndarray]:
    """Each question's `metric` (n,) under the weighted fusion at every weight tried."""
    out = {}
    for w, (top, _) in weighted_tops(dense, lexical, weights, SEARCH_DEPTH, tie_ranks).items():
        rel, n_rel = relevance_from_indices(top, list(gold))
        out[float(w)] = score_relevance(rel, n_rel, KS)[metric]
    return out


def _best_weight(per_query: dict[float, np.ndarray]) -> tuple[float, dict[float, float]]:
    means = {w: float(np.mean(v)) for w, v in per_query.items()}
    return max(means.items(), key=lambda kv: (kv[1], -kv[0]))[0], means


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
    return _best_weight(weight_metrics(dense, lexical, gold, tie_ranks, metric, weights))


@dataclass(frozen=True)
class LexicalSide:
    """BM25 for the hybrids: the index and the texts of the evaluated and validation questions.
    Its scores are computed a block of questions at a time, never as one (n, N) matrix."""

    index: BM25Index
    questions: Sequence[str]
    val_questions: Sequence[str] = ()


def _blocks(n: int, n_corpus: int) -> list[slice]:
    block = query_block(n_corpus)
    return [slice(start, start + block) for start in range(0, n, block)]


def _choose_weight_blocked(
    corpus: np.ndarray,
    val_queries: np.ndarray,
    lexical: LexicalSide,
    val_gold: Sequence[Sequence[int]],
    tie_ranks: np.ndarray,
    metric: str,
) -> float:
    """choose_weight over the validation questions, a block at a time."""
    parts: dict[float, list[np.ndarray]] = {float(w): [] for w in WEIGHTS}
    for rows in _blocks(len(val_queries), len(corpus)):
        dense = val_queries[rows] @ corpus.T  # (b, N) cosines
        bm25 = lexical.index.scores(list(lexical.val_questions[rows]))  # (b, N)
        got = weight_metrics(dense, bm25, list(val_gold[rows]), tie_ranks, metric)
        for w, values in got.items():
            parts[w].append(values)
    return _best_weight({w: np.concatenate(v) for w, v in parts.items()})[0]


def score_hybrids(
    label: str,
    dim: int,
    corpus: np.ndarray,
    queries: np.ndarray,
    lexical: LexicalSide,
    gold: Sequence[Sequence[int]],
    tie_ranks: np.ndarray,
    metric: str,
    *,
    val_queries: np.ndarray | None = None,
    val_gold: Sequence[Sequence[int]] = (),
    why_no_weight: str = "",
) -> list[tuple[DimScores, dict[str, Any]]]:
    """BM25 fused with one dense model (L2-normalised corpus (N, d) and queries (n, d)): RRF and
    the weighted sum, each as scored rankings with the facts a results table records. Dense and
    BM25 scores are made a block of questions at a time (core.evaluation.search.query_block), so
    memory grows with the block, not with questions x chunks."""
    weight = 0.5
    note = f"{why_no_weight or 'no validation questions to tune it on'}: 0.5 used"
    if val_queries is not None and len(val_gold):
        weight = _choose_weight_blocked(
            corpus, val_queries, lexical, list(val_gold), tie_ranks, metric
        )
        note = f"chosen on {len(val_gold)} validation questions"
    n, kk = len(queries), min(SEARCH_DEPTH, len(corpus))
    tops = {name: np.zeros((n, kk), dtype=np.int64) for name in ("rrf", "weighted")}
    vals = {name: np.zeros((n, kk), dtype=np.float64) for name in ("rrf", "weighted")}
    for rows in _blocks(n, len(corpus)):
        dense = queries[rows] @ corpus.T  # (b, N) cosines
        bm25 = lexical.index.scores(list(lexical.questions[rows]))  # (b, N)
        tops["rrf"][rows], vals["rrf"][rows] = rrf_search(dense, bm25, SEARCH_DEPTH, tie_ranks)
        tops["weighted"][rows], vals["weighted"][rows] = weighted_tops(
            dense, bm25, [weight], SEARCH_DEPTH, tie_ranks
        )[float(weight)]
    rrf = score_ranking(
        f"{label} + BM25 (RRF)", "hybrid", dim, tops["rrf"], vals["rrf"], list(gold)
    )
    weighted = score_ranking(
        f"{label} + BM25 (weighted)",
        "hybrid",
        dim,
        tops["weighted"],
        vals["weighted"],
        list(gold),
    )
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
