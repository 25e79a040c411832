"""Fuzzing the retrieval metrics (core.evaluation.metrics) with hypothesis.

Properties, for any ranking (duplicates, unknown ids, short, empty) and any non-empty gold set:
- every metric is in [0, 1];
- repeating ids in the ranking never raises a score above the de-duplicated ranking's;
- hit_rate@k and recall@k never decrease as k grows, and precision@k * k == recall@k * n_relevant;
- mrr@10 is 1 / the rank of the first relevant id (0 past rank 10), computed here independently;
- ndcg@10 is 1 exactly when the top min(10, n_relevant) places are all relevant;
- the vectorised paths (many queries, search indices) agree with the one-query path.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.evaluation.metrics import (
    MAP_K,
    MRR_K,
    NDCG_K,
    dedupe_ranking,
    first_relevant_rank,
    mean_scores,
    relevance_from_indices,
    relevance_matrix,
    score_ranking,
    score_rankings,
    score_relevance,
)
from tests.support.fuzzing import scaled

KS = tuple(range(1, 21)) + (50, 100, 150)  # past the list length and the search depth too
ids = st.integers(0, 40)
rankings = st.lists(ids, max_size=120)
gold_sets = st.sets(ids, min_size=1, max_size=12)


def first_rank(ranking: list[int], gold: set[int]) -> int | None:
    """1-based rank of the first relevant id in the de-duplicated ranking (independent code)."""
    seen: set[int] = set()
    rank = 0
    for item in ranking:
        if item in seen:
            continue
        seen.add(item)
        rank += 1
        if item in gold:
            return rank
    return None


@given(rankings, gold_sets)
def test_every_metric_is_between_zero_and_one(ranking, gold):
    for name, value in score_ranking(ranking, gold, KS).items():
        assert 0.0 <= value <= 1.0, (name, value)
        assert math.isfinite(value)


@given(rankings, gold_sets, st.data())
def test_duplicates_never_raise_a_score(ranking, gold, data):
    # Repeat some entries, including relevant ones, anywhere in the list.
    extra = data.draw(st.lists(st.sampled_from(ranking or [0]), max_size=30), label="repeats")
    positions = data.draw(st.lists(st.integers(0, len(ranking)), min_size=len(extra),
                                   max_size=len(extra)), label="positions")  # fmt: skip
    noisy = list(ranking)
    for item, at in zip(extra, positions, strict=True):
        # Only after the id's first occurrence, so the de-duplicated order is unchanged.
        first = noisy.index(item) if item in noisy else len(noisy)
        noisy.insert(max(at, first + 1), item)
    clean = score_ranking(dedupe_ranking(noisy), gold, KS)
    dirty = score_ranking(noisy, gold, KS)
    for name in clean:
        assert dirty[name] <= clean[name] + 1e-12, (name, dirty[name], clean[name])
    assert dedupe_ranking(noisy) == dedupe_ranking(ranking) or not ranking


@given(rankings, gold_sets)
def test_hit_rate_and_recall_never_fall_as_k_grows(ranking, gold):
    scores = score_ranking(ranking, gold, KS)
    n_relevant = len(gold)
    for family in ("hit_rate", "recall"):
        values = [scores[f"{family}@{k}"] for k in KS]
        assert values == sorted(values), (family, values)
    for k in KS:
        hits = scores[f"precision@{k}"] * k
        assert math.isclose(hits, scores[f"recall@{k}"] * n_relevant, abs_tol=1e-9)
        assert math.isclose(hits, round(hits), abs_tol=1e-9)  # a whole number of hits
        assert scores[f"hit_rate@{k}"] == (1.0 if hits > 0.5 else 0.0)


@given(rankings, gold_sets)
def test_mrr_matches_the_rank_of_the_first_relevant_id(ranking, gold):
    scores = score_ranking(ranking, gold, KS)
    rank = first_rank(ranking, gold)
    expected = 1.0 / rank if rank is not None and rank <= MRR_K else 0.0
    assert scores[f"mrr@{MRR_K}"] == expected
    rel, _ = relevance_matrix([ranking], [gold])
    assert first_relevant_rank(rel)[0] == (rank if rank is not None and rank <= MAP_K else 0)
    if rank is not None:
        assert scores[f"hit_rate@{min(k for k in KS if k >= rank)}"] == 1.0
        if rank > 1:
            assert scores[f"hit_rate@{rank - 1}"] == 0.0


@given(rankings, gold_sets)
def test_ndcg_is_one_exactly_for_an_ideal_top(ranking, gold):
    scores = score_ranking(ranking, gold, KS)
    top = dedupe_ranking(ranking)[: min(NDCG_K, len(gold))]
    ideal = len(top) == min(NDCG_K, len(gold)) and all(i in gold for i in top)
    assert math.isclose(scores[f"ndcg@{NDCG_K}"], 1.0, abs_tol=1e-12) == ideal
    if not any(i in gold for i in dedupe_ranking(ranking)[:NDCG_K]):
        assert scores[f"ndcg@{NDCG_K}"] == 0.0


@scaled(0.25)
@given(st.lists(st.tuples(rankings, gold_sets), min_size=1, max_size=6))
def test_many_queries_agree_with_one_at_a_time(pairs):
    batch = score_rankings([r for r, _ in pairs], [g for _, g in pairs], KS)
    for q, (ranking, gold) in enumerate(pairs):
        single = score_ranking(ranking, gold, KS)
        for name, value in single.items():
            assert math.isclose(batch[name][q], value, rel_tol=1e-12, abs_tol=1e-12)  # BLAS sums
    means = mean_scores(batch)
    assert all(0.0 <= v <= 1.0 for v in means.values())


@scaled(0.25)
@given(
    st.lists(
        st.tuples(st.permutations(list(range(30))), st.integers(0, 30), gold_sets),
        min_size=1,
        max_size=6,
    )
)
def test_search_indices_agree_with_id_rankings(rows):
    """An exact search's (n, depth) index matrix, -1 padded, scores like the id lists."""
    depth = 30
    top = np.full((len(rows), depth), -1, dtype=np.int64)
    rankings_ = []
    for q, (order, length, _) in enumerate(rows):
        top[q, :length] = order[:length]
        rankings_.append(list(order[:length]))
    gold = [sorted(g) for _, _, g in rows]
    rel_a, n_a = relevance_from_indices(top, gold)
    rel_b, n_b = relevance_matrix(rankings_, [set(g) for g in gold], depth=depth)
    assert (rel_a == rel_b).all() and (n_a == n_b).all()
    for name, values in score_relevance(rel_a, n_a, KS).items():
        assert np.array_equal(values, score_relevance(rel_b, n_b, KS)[name]), name
