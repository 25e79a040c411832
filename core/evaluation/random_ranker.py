"""The random ranker's expected score, exact: linearity of expectation plus hypergeometric
probabilities, so it can sit beside every figure; a seeded simulation checks it in the tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.evaluation.metrics import KS, MAP_K, MRR_K, NDCG_K, metric_names


def _p_none_in_top(corpus_size: int, n_relevant: int, k: int) -> float:
    """Chance that a random order puts none of the relevant chunks in its top k."""
    p = 1.0
    for j in range(min(k, corpus_size)):
        p *= max(0, corpus_size - n_relevant - j) / (corpus_size - j)
    return p


def random_ranker_expected_one(
    corpus_size: int, n_relevant: int = 1, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Exact expected metrics of a ranker that returns the corpus in a uniformly random order,
    for one query with `n_relevant` relevant chunks among `corpus_size`."""
    big_n, r = int(corpus_size), int(n_relevant)
    if big_n <= 0 or r <= 0 or r > big_n:
        raise ValueError(f"need 0 < n_relevant <= corpus_size, got {r} and {big_n}")
    p_rel = r / big_n  # chance that any one position holds a relevant chunk
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit_rate@{k}"] = 1.0 - _p_none_in_top(big_n, r, k)
    for k in ks:
        out[f"precision@{k}"] = min(k, big_n) * p_rel / k
    for k in ks:
        out[f"recall@{k}"] = min(k, big_n) * p_rel / r
    # P(first relevant at rank i) = P(ranks 1..i-1 all irrelevant) * r / (N - i + 1)
    mrr, none_before = 0.0, 1.0
    for i in range(1, min(MRR_K, big_n) + 1):
        mrr += none_before * r / (big_n - i + 1) / i
        none_before *= max(0, big_n - r - (i - 1)) / (big_n - (i - 1))
    out[f"mrr@{MRR_K}"] = mrr
    positions = np.arange(1, min(NDCG_K, big_n) + 1)
    dcg = float(np.sum(p_rel / np.log2(positions + 1.0)))
    idcg = float(np.sum(1.0 / np.log2(np.arange(1, min(NDCG_K, r) + 1) + 1.0)))
    out[f"ndcg@{NDCG_K}"] = dcg / idcg
    # E[rel_i * hits_i / i] = P(rel_i) * (1 + (i-1)(r-1)/(N-1)) / i
    ranks = np.arange(1, min(MAP_K, big_n) + 1, dtype=np.float64)
    extra = (ranks - 1) * (r - 1) / (big_n - 1) if big_n > 1 else 0.0 * ranks
    out[f"map@{MAP_K}"] = float(np.sum(p_rel * (1.0 + extra) / ranks)) / min(MAP_K, r)
    return out


def random_ranker_expected(
    corpus_size: int, n_relevant: Sequence[int] | int = 1, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Expected metrics of a random ranker averaged over queries with the given relevant counts."""
    counts = (
        [int(n_relevant)]
        if isinstance(n_relevant, int | np.integer)
        else [int(c) for c in n_relevant]
    )
    if not counts:
        return dict.fromkeys(metric_names(ks), 0.0)
    per_count = {c: random_ranker_expected_one(corpus_size, c, ks) for c in set(counts)}
    return {name: float(np.mean([per_count[c][name] for c in counts])) for name in metric_names(ks)}


def simulate_random_ranker(
    corpus_size: int, n_relevant: int = 1, ks: Sequence[int] = KS, n_sim: int = 20000, seed: int = 0
) -> dict[str, float]:
    """The random ranker's metrics by seeded simulation (a check on the exact formulas)."""
    from core.evaluation.metrics import SEARCH_DEPTH, mean_scores, score_relevance

    rng = np.random.default_rng(seed)
    depth = min(SEARCH_DEPTH, corpus_size)
    rel = np.zeros((n_sim, depth), dtype=bool)
    for s in range(n_sim):
        # The relevant chunks are items 0..r-1; a random permutation's first `depth` positions.
        top = rng.permutation(corpus_size)[:depth]
        rel[s] = top < n_relevant
    return mean_scores(score_relevance(rel, np.full(n_sim, n_relevant), ks))
