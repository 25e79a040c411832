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
        # the kk largest, unordered: no negated copy, and 4x faster than partitioning -scores
        cand = np.argpartition(scores, n - kk, axis=1)[:, n - kk :]  # (b, kk)
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
    block = query_block(corpus.shape[0], block)
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


EMPTY_TOKEN = "\u2205"  # an empty chunk's placeholder token, so it still counts as a document
BLOCK_SCORES = 4_000_000  # float scores per block of queries: (b, N) with b * N at most this


def query_block(n_corpus: int, cap: int = 256) -> int:
    """How many queries to score at once against `n_corpus` chunks: at most `cap`, and at most
    BLOCK_SCORES / n_corpus, so one block's (b, N) scores stay under 32 MB in float64."""
    return max(1, min(cap, BLOCK_SCORES // max(1, n_corpus)))


class BM25Index:
    """BM25 Okapi over the corpus's word tokens as one sparse (vocabulary x chunks) matrix of
    per-term weights, so a block of queries is scored by one sparse product.

    The formula is rank_bm25's BM25Okapi (k1 1.5, b 0.75; an idf below zero is raised to
    epsilon x the average idf; a repeated query word counts each time; an unknown one adds 0), so
    the scores are the same to rounding (tests compare them to 1e-9), without its Python loop
    over every chunk for every query word."""

    def __init__(
        self, corpus_texts: Sequence[str], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ) -> None:
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows: list[int] = []  # term ids, one per token
        lengths = np.zeros(len(corpus_texts), dtype=np.float64)  # (N,) tokens per chunk
        for d, text in enumerate(corpus_texts):
            tokens = tokenize_bm25(text) or [EMPTY_TOKEN]
            lengths[d] = len(tokens)
            rows.extend(vocab.setdefault(t, len(vocab)) for t in tokens)
        cols = np.repeat(np.arange(len(corpus_texts)), lengths.astype(np.int64))
        shape = (len(vocab), len(corpus_texts))
        ones = np.ones(len(rows), dtype=np.float64)
        tf = sparse.csr_matrix((ones, (np.asarray(rows, dtype=np.int64), cols)), shape=shape)
        tf.sum_duplicates()  # (V, N) term frequencies
        self.corpus_size = len(corpus_texts)
        self.vocab = vocab
        nd = np.diff(tf.indptr).astype(np.float64)  # (V,) chunks holding each term
        idf = np.log(self.corpus_size - nd + 0.5) - np.log(nd + 0.5)
        average = float(sum(idf.tolist()) / len(idf)) if len(idf) else 0.0
        idf = np.where(idf < 0, epsilon * average, idf)
        avgdl = float(lengths.sum()) / max(1, self.corpus_size)
        term = np.repeat(np.arange(len(vocab)), np.diff(tf.indptr))  # each stored entry's term
        freq, dl = tf.data, lengths[tf.indices]
        tf.data = idf[term] * (freq * (k1 + 1) / (freq + k1 * (1 - b + b * dl / avgdl)))
        self.weights = tf  # (V, N) each term's contribution to each chunk's score

    def query_matrix(self, queries: Sequence[str]):  # noqa: ANN201 - a scipy.sparse matrix
        """(n, V) counts of each known word in each query (unknown words add nothing)."""
        from scipy import sparse

        rows, cols = [], []
        for q, text in enumerate(queries):
            ids = [self.vocab[t] for t in tokenize_bm25(text) if t in self.vocab]
            cols.extend(ids)
            rows.extend([q] * len(ids))
        data = np.ones(len(rows), dtype=np.float64)
        shape = (len(queries), len(self.vocab))
        return sparse.csr_matrix((data, (rows, cols)), shape=shape)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(n, N) BM25 scores of every query against every chunk (float64)."""
        if not queries:
            return np.zeros((0, self.corpus_size))
        return np.asarray((self.query_matrix(queries) @ self.weights).toarray())


def bm25_index(corpus_texts: Sequence[str]) -> BM25Index:
    """BM25 (Okapi) over the corpus's word tokens (an empty chunk gets a placeholder token)."""
    return BM25Index(corpus_texts)


def bm25_scores(index: BM25Index, queries: Sequence[str]) -> np.ndarray:
    """(n, N) BM25 scores of every query against every chunk."""
    return index.scores(list(queries))


def search_bm25(
    corpus_texts: Sequence[str] | BM25Index,
    queries: Sequence[str],
    k: int,
    tie_ranks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """BM25 (Okapi) top-k indices and scores per query, (n, min(k, N)) each, ties by chunk id;
    scored a block of queries at a time (core.evaluation.search.query_block)."""
    bm25 = corpus_texts if isinstance(corpus_texts, BM25Index) else bm25_index(corpus_texts)
    kk = min(k, bm25.corpus_size)
    idx = np.zeros((len(queries), kk), dtype=np.int64)
    val = np.zeros((len(queries), kk), dtype=np.float32)
    block = query_block(bm25.corpus_size)
    for start in range(0, len(queries), block):
        batch = list(queries[start : start + block])
        scores = bm25.scores(batch)  # (b, N)
        top, top_scores = top_k_from_scores(scores, kk, tie_ranks)
        idx[start : start + len(batch)], val[start : start + len(batch)] = top, top_scores
    return idx, val
