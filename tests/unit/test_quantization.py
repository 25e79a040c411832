"""int8 and binary vectors equal sentence-transformers' quantisation; searching them ranks as a
store's int8 cosine or Hamming index does; rescoring never does worse than the plain cell."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.quantization import (
    bytes_per_vector,
    calibration_ranges,
    dequantize_int8,
    quantize,
    quantized_scores,
    search_quantized,
)
from core.evaluation.search import id_tie_ranks, search_exact


def vectors(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_int8_and_binary_equal_sentence_transformers():
    from sentence_transformers.util import quantize_embeddings

    corpus, queries = vectors(300, 40, 0), vectors(7, 40, 1)
    ranges = calibration_ranges(corpus)
    theirs = quantize_embeddings(queries, "int8", calibration_embeddings=corpus)
    assert np.array_equal(quantize(queries, "int8", ranges), theirs)
    assert np.array_equal(quantize(corpus, "binary"), quantize_embeddings(corpus, "ubinary"))
    # dequantizing lands inside the bucket (within one step of the original)
    step = (ranges[1] - ranges[0]) / 255
    back = dequantize_int8(quantize(corpus, "int8", ranges), ranges)
    assert np.all(np.abs(back - corpus) <= step + 1e-6)


def test_scores_are_a_stores_int8_cosine_and_equal_bits():
    corpus, queries = vectors(50, 16, 2), vectors(3, 16, 3)
    ranges = calibration_ranges(corpus)
    q8 = quantize(queries, "int8", ranges).astype(float)
    c8 = quantize(corpus, "int8", ranges).astype(float)
    want = (q8 @ c8.T) / np.outer(np.linalg.norm(q8, axis=1), np.linalg.norm(c8, axis=1))
    got = quantized_scores(queries, quantize(corpus, "int8", ranges), "int8", ranges, 16)
    assert np.allclose(got, want, atol=1e-5)
    bits = quantized_scores(queries, quantize(corpus, "binary"), "binary", None, 16)
    hamming = ((queries[:, None, :] > 0) != (corpus[None, :, :] > 0)).sum(axis=2)
    assert np.array_equal(bits, 16 - hamming)


def recall_at(top: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(
        np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(top, truth, strict=True)])
    )


def test_rescoring_never_does_worse_and_float32_is_exact_search():
    corpus, queries = vectors(2000, 64, 4), vectors(40, 64, 5)
    ties = id_tie_ranks([f"c{i:05d}" for i in range(len(corpus))])
    truth, _ = search_exact(queries, corpus, 10, ties)
    same, _ = search_quantized(queries, corpus, "float32", 10, ties)
    assert np.array_equal(same, truth)
    for precision in ("int8", "binary"):
        plain, _ = search_quantized(queries, corpus, precision, 10, ties)
        rescored, _ = search_quantized(queries, corpus, precision, 10, ties, rescore=True)
        assert recall_at(rescored, truth, 10) >= recall_at(plain, truth, 10), precision
    plain8, _ = search_quantized(queries, corpus, "int8", 10, ties)
    plain1, _ = search_quantized(queries, corpus, "binary", 10, ties)
    assert recall_at(plain8, truth, 10) > recall_at(plain1, truth, 10)  # int8 keeps more


@pytest.mark.parametrize(
    ("dim", "precision", "size"),
    [(384, "float32", 1536), (384, "int8", 384), (384, "binary", 48), (100, "binary", 13)],
)
def test_bytes_per_vector(dim, precision, size):
    assert bytes_per_vector(dim, precision) == size


def test_one_pass_gives_the_plain_and_the_rescored_cell_of_two_searches():
    """score_cells searches each precision once: the same rankings as searching twice."""
    import numpy as np

    from core.evaluation.quantization import search_quantized, search_quantized_both
    from core.evaluation.search import id_tie_ranks

    rng = np.random.default_rng(4)
    corpus = rng.normal(size=(300, 32)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:25] + rng.normal(0, 0.3, (25, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ties = id_tie_ranks([f"c{i:03d}" for i in range(300)])
    for precision in ("int8", "binary"):
        plain, rescored = search_quantized_both(queries, corpus, precision, 100, ties)
        for got, rescore in ((plain, False), (rescored, True)):
            want = search_quantized(queries, corpus, precision, 100, ties, rescore=rescore)
            assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1])
