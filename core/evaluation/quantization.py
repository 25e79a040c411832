"""Vectors at lower precision, as vector stores keep them: int8 (calibrated on the corpus) and
binary (one bit per dimension), searched exactly, optionally with a float rescoring pass.

How it works (sentence-transformers' `quantize_embeddings` is the reference; tests compare):
1. int8: each dimension's [min, max] over the corpus is cut into 256 buckets; a value becomes its
   bucket index minus 128. Queries are quantized with the corpus's ranges and scored by the cosine
   of the int8 vectors, as a store's int8 cosine index does.
2. binary: a dimension is 1 when positive; bits are packed eight to a byte. Queries are binarised
   too and scored by the number of equal bits (d minus the Hamming distance).
3. Rescoring, as a store that keeps the float32 vectors on disk does: the top `multiplier` x 10
   candidates of the quantized search (what a RAG retriever asks for, 4 x top-10 as
   sentence-transformers' default) are re-ranked by their exact float cosine; the rest of the
   ranking keeps the quantized order. So the rescored top 10 holds at least as many of the exact
   top 10 as the plain cell's (every exact top-10 chunk in the pool rises into it).
Ties are broken by ascending chunk id everywhere, as in exact float search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from core.evaluation.search import query_block, top_k_from_scores

Precision = Literal["float32", "int8", "binary"]
PRECISIONS: tuple[Precision, ...] = ("float32", "int8", "binary")
RESCORE_MULTIPLIER = 4
CELLS: tuple[tuple[str, bool], ...] = (
    ("float32", False),
    ("int8", False),
    ("int8", True),
    ("binary", False),
    ("binary", True),
)


def cell_name(precision: str, rescore: bool) -> str:
    """'int8 + rescoring', 'binary', 'float32'."""
    return f"{precision} + rescoring" if rescore else precision


def bytes_per_vector(dim: int, precision: str) -> int:
    """Storage of one vector: 4 bytes a dimension (float32), 1 (int8), 1 bit (binary)."""
    if precision == "float32":
        return 4 * dim
    if precision == "int8":
        return dim
    if precision == "binary":
        return math.ceil(dim / 8)
    raise ValueError(f"unknown precision {precision!r}")


def calibration_ranges(corpus: np.ndarray) -> np.ndarray:
    """(2, d): each dimension's minimum and maximum over the corpus (the int8 calibration)."""
    return np.vstack((corpus.min(axis=0), corpus.max(axis=0))).astype(np.float32)


def _steps(ranges: np.ndarray) -> np.ndarray:
    steps = (ranges[1] - ranges[0]) / 255
    return np.where(steps == 0, 1, steps).astype(np.float32)


def quantize(x: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """float32 rows -> float32, int8 (needs `ranges`) or packed bits (uint8, ceil(d/8) a row)."""
    x = np.asarray(x, dtype=np.float32)
    if precision == "float32":
        return x
    if precision == "int8":
        if ranges is None:
            raise ValueError("int8 quantization needs the corpus's calibration ranges")
        buckets = np.clip(np.floor((x - ranges[0]) / _steps(ranges)), 0, 255)
        return (buckets - 128).astype(np.int8)
    if precision == "binary":
        return np.packbits(x > 0, axis=-1)
    raise ValueError(f"unknown precision {precision!r}")


def dequantize_int8(q: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """int8 buckets back to the float coordinates of their bucket's start."""
    return (q.astype(np.float32) + 128) * _steps(ranges) + ranges[0]


def unpack_bits(packed: np.ndarray, dim: int) -> np.ndarray:
    """Packed bits -> (n, dim) float32 of 0/1 (the padding bits of the last byte dropped)."""
    return np.unpackbits(packed, axis=-1)[:, :dim].astype(np.float32)


def quantized_scorer(
    corpus_q: np.ndarray, precision: str, ranges: np.ndarray | None, dim: int
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from float queries (b, dim) to their (b, N) similarity with a quantized corpus:
    the cosine of the int8 vectors, or the number of equal bits. What depends on the corpus only
    (its int8 values as floats and their norms, its unpacked bits and their counts) is computed
    here once, not again for every block of queries."""
    if precision == "float32":
        return lambda queries: queries @ corpus_q.T
    if precision == "int8":
        c = corpus_q.astype(np.float32)  # (N, dim)
        c_norms = np.linalg.norm(c, axis=1)[None, :]  # (1, N)

        def int8_scores(queries: np.ndarray) -> np.ndarray:
            q = quantize(queries, "int8", ranges).astype(np.float32)  # (b, dim)
            norms = np.linalg.norm(q, axis=1, keepdims=True) * c_norms
            return (q @ c.T) / np.maximum(norms, 1e-12)

        return int8_scores
    if precision == "binary":
        c_bits = unpack_bits(corpus_q, dim)  # (N, dim) of 0/1
        c_ones = c_bits.sum(axis=1)[None, :]  # (1, N)

        def binary_scores(queries: np.ndarray) -> np.ndarray:
            q_bits = unpack_bits(quantize(queries, "binary"), dim)  # (b, dim)
            # equal bits = ones in both + zeros in both = 2 q.c - |q| - |c| + dim (integers,
            # exact in float32 at these sizes)
            both = q_bits @ c_bits.T
            return 2 * both - q_bits.sum(axis=1, keepdims=True) - c_ones + np.float32(dim)

        return binary_scores
    raise ValueError(f"unknown precision {precision!r}")


def quantized_scores(
    queries: np.ndarray, corpus_q: np.ndarray, precision: str, ranges: np.ndarray | None, dim: int
) -> np.ndarray:
    """(b, N) similarity of float queries (b, dim) to a quantized corpus: the cosine of the int8
    vectors, or the number of equal bits. Integers are exact in float32 at these sizes."""
    return quantized_scorer(corpus_q, precision, ranges, dim)(queries)


RESCORE_DEPTH = 10  # the results a retriever returns, whose candidate pool is rescored


def search_quantized(
    queries: np.ndarray,
    corpus: np.ndarray,
    precision: str,
    k: int,
    tie_ranks: np.ndarray,
    *,
    rescore: bool = False,
    multiplier: int = RESCORE_MULTIPLIER,
    rescore_depth: int = RESCORE_DEPTH,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of normalised float queries (n, d) in a corpus (N, d) stored at `precision`
    (quantized here, int8 calibrated on this corpus). With `rescore`, the first `multiplier` x
    `rescore_depth` results are re-ranked by their exact float cosine. Returns (n, min(k, N))
    indices and scores (quantized scores, float ones for the rescored)."""
    plain, rescored = search_quantized_both(
        queries,
        corpus,
        precision,
        k,
        tie_ranks,
        multiplier=multiplier if rescore else 0,
        rescore_depth=rescore_depth,
        block=block,
    )
    return rescored if rescore else plain


def search_quantized_both(
    queries: np.ndarray,
    corpus: np.ndarray,
    precision: str,
    k: int,
    tie_ranks: np.ndarray,
    *,
    multiplier: int = RESCORE_MULTIPLIER,
    rescore_depth: int = RESCORE_DEPTH,
    block: int = 256,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The plain and the rescored top-k of one quantized search: the rescored cell re-ranks the
    plain cell's first `multiplier` x `rescore_depth`, so one scoring pass gives both ((idx,
    scores) each, (n, min(k, N))); the same as two search_quantized calls, at half the cost."""
    dim = corpus.shape[1]
    ranges = calibration_ranges(corpus) if precision == "int8" else None
    stored = quantize(corpus, precision, ranges)
    kk = min(k, corpus.shape[0])
    pool = min(corpus.shape[0], multiplier * rescore_depth)
    depth = max(kk, pool)
    shape = (len(queries), kk)
    idx, val = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
    r_idx, r_val = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
    scorer = quantized_scorer(stored, precision, ranges, dim)
    block = query_block(corpus.shape[0], block)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]  # (b, d)
        top, top_scores = top_k_from_scores(scorer(q), depth, tie_ranks)  # (b, depth)
        rows = slice(start, start + len(q))
        idx[rows], val[rows] = top[:, :kk], top_scores[:, :kk]
        if pool and precision != "float32":
            head = top[:, :pool]  # (b, pool)
            exact = np.einsum("bd,bpd->bp", q, corpus[head])  # (b, pool) float cosines
            order = np.lexsort((tie_ranks[head], -exact), axis=1)
            picked = np.arange(len(q))[:, None]
            top, top_scores = top.copy(), top_scores.copy()
            top[:, :pool], top_scores[:, :pool] = head[picked, order], exact[picked, order]
        r_idx[rows], r_val[rows] = top[:, :kk], top_scores[:, :kk]
    return (idx, val), (r_idx, r_val)
