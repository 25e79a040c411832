"""Retrieval metrics: a hand-computed table, duplicates, empty results, k beyond the list."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.evaluation.metrics import (
    dedupe_ranking,
    first_relevant_rank,
    metric_names,
    parse_metric,
    relevance_from_indices,
    relevance_matrix,
    score_ranking,
    score_rankings,
    score_relevance,
    st_metric_key,
)

L3, L4, L5, L6 = (math.log2(x) for x in (3, 4, 5, 6))
FILLER = [f"x{i}" for i in range(20)]

# Computed by hand from the definitions. Columns follow metric_names():
#                  hit_rate@1 3 5 10 | precision@1 3 5 10 | recall@1 3 5 10 | mrr@10 ndcg@10 map@100
# fmt: off
HAND_TABLE = [
    (["a", "b", "g", "d", "e"], {"g"},
     [0, 1, 1, 1,  0, 1 / 3, 1 / 5, 1 / 10,  0, 1, 1, 1,  1 / 3, 1 / L4, 1 / 3]),
    (["a", "b", "c", "d", "e"], {"a", "d"},
     [1, 1, 1, 1,  1, 1 / 3, 2 / 5, 2 / 10,  0.5, 0.5, 1, 1,
      1, (1 + 1 / L5) / (1 + 1 / L3), (1 + 2 / 4) / 2]),
    (["a", "x", "b", "y", "c"], {"a", "b", "c"},
     [1, 1, 1, 1,  1, 2 / 3, 3 / 5, 3 / 10,  1 / 3, 2 / 3, 1, 1,
      1, (1 + 1 / L4 + 1 / L6) / (1 + 1 / L3 + 1 / L4), (1 + 2 / 3 + 3 / 5) / 3]),
    # gold at rank 11: outside every @10 metric, still inside map@100
    (FILLER[:10] + ["g"], {"g"},
     [0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 1 / 11]),
    # a duplicate before the gold counts once: the gold is at rank 2, not 3
    (["x", "x", "g"], {"g"},
     [0, 1, 1, 1,  0, 1 / 3, 1 / 5, 1 / 10,  0, 1, 1, 1,  1 / 2, 1 / L3, 1 / 2]),
    # the gold retrieved three times is one hit: no precision or nDCG above 1
    (["g", "g", "g"], {"g"},
     [1, 1, 1, 1,  1, 1 / 3, 1 / 5, 1 / 10,  1, 1, 1, 1,  1, 1, 1]),
    # empty results score zero
    ([], {"g"},
     [0] * 15),
    # k larger than the list (and the corpus): precision divides by k, recall is complete
    (["g"], {"g"},
     [1, 1, 1, 1,  1, 1 / 3, 1 / 5, 1 / 10,  1, 1, 1, 1,  1, 1, 1]),
]
# fmt: on


@pytest.mark.parametrize("ranking, relevant, expected", HAND_TABLE)
def test_hand_computed_table(ranking, relevant, expected):
    got = score_ranking(ranking, relevant)
    assert list(got) == metric_names()
    for name, value in zip(metric_names(), expected, strict=True):
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_more_relevant_than_k_uses_ideal_dcg_over_min_k_and_map_over_n_relevant():
    relevant = {f"r{i}" for i in range(12)}
    ranking = sorted(relevant)  # every result relevant
    got = score_ranking(ranking, relevant)
    assert got["ndcg@10"] == pytest.approx(1.0)
    assert got["precision@10"] == pytest.approx(1.0)
    assert got["recall@10"] == pytest.approx(10 / 12)
    assert got["map@100"] == pytest.approx(1.0)  # 12 hits at ranks 1..12, each precision 1, / 12


def test_metric_names_and_st_keys():
    names = metric_names()
    assert names[:4] == ["hit_rate@1", "hit_rate@3", "hit_rate@5", "hit_rate@10"]
    assert names[-3:] == ["mrr@10", "ndcg@10", "map@100"]
    assert parse_metric("hit_rate@5") == ("hit_rate", 5)
    assert st_metric_key("hit_rate@5") == "accuracy@5"
    assert st_metric_key("ndcg@10") == "ndcg@10"
    with pytest.raises(ValueError, match="not a metric name"):
        parse_metric("f1@3")


def test_dedupe_keeps_first_position():
    assert dedupe_ranking(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_a_query_without_relevant_ids_is_refused():
    with pytest.raises(ValueError, match="no relevant ids"):
        score_ranking(["a"], set())


def test_relevance_from_indices_matches_id_path():
    rng = np.random.default_rng(3)
    top = np.stack([rng.permutation(50)[:20] for _ in range(30)])  # (30, 20), no repeats per row
    gold = [list(rng.choice(50, size=rng.integers(1, 4), replace=False)) for _ in range(30)]
    rel_a, n_a = relevance_from_indices(top, gold)
    rel_b, n_b = relevance_matrix([list(r) for r in top], [set(g) for g in gold], depth=20)
    assert np.array_equal(rel_a, rel_b)
    assert np.array_equal(n_a, n_b)
    a, b = (
        score_relevance(rel_a, n_a),
        score_rankings([list(r) for r in top], [set(g) for g in gold]),
    )
    for name in a:
        assert np.allclose(a[name], b[name], atol=1e-12), name


def test_first_relevant_rank():
    rel = np.array([[False, True, True], [False, False, False], [True, False, False]])
    assert first_relevant_rank(rel).tolist() == [2, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    ranking=st.lists(st.integers(0, 15), max_size=30),
    relevant=st.sets(st.integers(0, 15), min_size=1, max_size=5),
)
def test_every_metric_stays_in_unit_interval(ranking, relevant):
    for name, value in score_ranking(ranking, relevant).items():
        assert 0.0 <= value <= 1.0 + 1e-12, (name, value)
