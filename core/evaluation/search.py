"""Exact search, the one the whole project uses: cosine top-k in numpy with ties broken by ascending
chunk id (as sentence-transformers does), BM25 as the lexical baseline, and single-query latency."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


LATENCY_QUERIES = 32  # single-query searches timed per dimension


def id_tie_ranks(chunk_ids: Sequence[str]) -> np.ndarray:
    """Position of each chunk id in ascending id order: ties in score go to the smaller id."""
    order = sorted(range(len(chunk_ids)), key=chunk_ids.__getitem__)
    ranks = np.empty(len(chunk_ids), dtype=np.int64)
    ranks[np.asarray(order, dtype=np.int64)] = np.arange(len(chunk_ids))
    return ranks


def top_k_from_scores(
    scores: np.ndarray, k: int, tie_ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k indices and scores per row of scores (b, N), ordered by (-score, tie rank).

    Returns (b, min(k, N)) indices and scores. Rows with ties at the cut-off are re-selected so the
    result never depends on how argpartition breaks ties."""
    b, n = scores.shape
    kk = min(k, n)
    if kk == 0 or b == 0:
        return np.zeros((b, kk), dtype=np.int64), np.zeros((b, kk), dtype=scores.dtype)
    rows = np.arange(b)[:, None]
    if kk < n:
        cand = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]  # (b, kk), unordered
    else:
        cand = np.tile(np.arange(n), (b, 1))
    cand_scores = scores[rows, cand]
    threshold = cand_scores.min(axis=1)
    boundary_ties = (scores >= threshold[:, None]).sum(axis=1) > kk
    order = np.lexsort((tie_ranks[cand], -cand_scores), axis=1)
    top = cand[rows, order]
    for r in np.flatnonzero(boundary_ties):
        pool = np.flatnonzero(scores[r] >= threshold[r])
        top[r] = pool[np.lexsort((tie_ranks[pool], -scores[r, pool]))[:kk]]
    return top, scores[rows, top]


def search_exact(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    tie_ranks: np.ndarray,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search of normalised queries (n, d) in a normalised corpus (N, d): top-k
    indices and scores, (n, min(k, N)) each."""
    kk = min(k, corpus.shape[0])
    idx = np.zeros((len(queries), kk), dtype=np.int64)
    val = np.zeros((len(queries), kk), dtype=np.float32)
    corpus_t = np.ascontiguousarray(corpus.T)  # (d, N)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ corpus_t  # (b, N)
        idx[start : start + block], val[start : start + block] = top_k_from_scores(
            scores, kk, tie_ranks
        )
    return idx, val


def measure_query_latency(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> float:
    """Median milliseconds of one exact single-query search (score all, take top-k)."""
    if len(queries) == 0 or len(corpus) == 0:
        return 0.0
    corpus_c = np.ascontiguousarray(corpus)
    kk = min(k, len(corpus_c)) - 1
    times = []
    _ = corpus_c @ queries[0]  # warm-up: first touch of the matrix, BLAS thread start
    for q in queries[:LATENCY_QUERIES]:
        start = time.perf_counter()
        scores = corpus_c @ q  # (N,)
        top = np.argpartition(-scores, kk)[: kk + 1]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def tokenize_bm25(text: str) -> list[str]:
    """Lower-cased word tokens for BM25."""
    return re.findall(r"\w+", text.lower())


def bm25_index(corpus_texts: Sequence[str]):  # noqa: ANN201 - a rank_bm25.BM25Okapi
    """BM25 (Okapi) over the corpus's word tokens (an empty chunk gets a placeholder token)."""
    from rank_bm25 import BM25Okapi

    return BM25Okapi([tokenize_bm25(t) or ["\u2205"] for t in corpus_texts])


def bm25_scores(index, queries: Sequence[str]) -> np.ndarray:  # noqa: ANN001
    """(n, N) BM25 scores of every query against every chunk."""
    if not queries:
        return np.zeros((0, index.corpus_size))
    return np.stack([index.get_scores(tokenize_bm25(q)) for q in queries])


def search_bm25(
    corpus_texts: Sequence[str],
    queries: Sequence[str],
    k: int,
    tie_ranks: np.ndarray,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """BM25 (Okapi) top-k indices and scores per query, (n, min(k, N)) each, ties by chunk id."""
    bm25 = bm25_index(corpus_texts)
    kk = min(k, len(corpus_texts))
    idx = np.zeros((len(queries), kk), dtype=np.int64)
    val = np.zeros((len(queries), kk), dtype=np.float32)
    for start in range(0, len(queries), block):
        batch = queries[start : start + block]
        scores = bm25_scores(bm25, batch)  # (b, N)
        top, top_scores = top_k_from_scores(scores, kk, tie_ranks)
        idx[start : start + len(batch)], val[start : start + len(batch)] = top, top_scores
    return idx, val
