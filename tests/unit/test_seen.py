"""The primary metric split by what a tuned model trained on, checked against hand-computed
nDCG@10 and Holm's formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.evaluation.results import RetrievalEvalResult
from core.evaluation.seen import seen_display, seen_rows
from core.evaluation.statistics import compare_paired

RANK2 = 1 / math.log2(3)  # nDCG@10 of one gold chunk at rank 2


def _ranking(query: str, rank: int | None) -> list[str]:
    ids = [f"x{query}{i}" for i in range(10)]
    if rank is not None:
        ids[rank - 1] = f"g{query}"
    return ids


def _result(seen_ids: list[str], clusters: dict[str, int] | None = None) -> RetrievalEvalResult:
    base_ranks = {"q0": None, "q1": 2, "q2": 1, "q3": None, "q4": 2, "q5": None}
    tuned_ranks = {"q0": 1, "q1": 1, "q2": 1, "q3": 2, "q4": 1, "q5": None}
    rows = [
        {
            "query_id": q,
            "cluster": (clusters or {}).get(q, int(q[1:])),
            "question": q,
            "model": model,
            "dim": 8,
            "gold_ids": [f"g{q}"],
            "gold_rank": rank,
            "top_ids": _ranking(q, rank),
            "top_scores": [1.0] * 10,
        }
        for model, ranks in (("base", base_ranks), ("tuned", tuned_ranks))
        for q, rank in ranks.items()
    ]
    training = {
        "overlap": {"n_queries": 6, "same_questions": 0, "trained_chunks": 3, "seen_ids": seen_ids}
    }
    return RetrievalEvalResult(
        run_id="e",
        qa_run_id="qa",
        corpus_run_id="c",
        split=None,
        corpus_size=60,
        n_queries=6,
        base_label="base",
        models=[
            {"label": "base", "kind": "base", "dims": [8]},
            {"label": "tuned", "kind": "tuned", "dims": [8], "training": training},
        ],
        metrics=pd.DataFrame(),
        deltas=pd.DataFrame(),
        tradeoff=pd.DataFrame(),
        per_query=pd.DataFrame(rows),
        flips={},
        config={"primary_metric": "ndcg@10", "confidence": 0.95},
    )


def test_groups_match_hand_computed_ndcg_and_holm_over_the_groups():
    rows = seen_rows(_result(["q0", "q1", "q2"]))
    trained, never = rows
    assert (trained["questions on"], never["questions on"]) == (
        "passages it trained on",
        "passages it never trained on",
    )
    assert trained["questions"] == never["questions"] == 3
    assert trained["base"] == pytest.approx((0 + RANK2 + 1) / 3, abs=1e-12)
    assert trained["tuned"] == pytest.approx(1.0)
    assert never["base"] == pytest.approx(RANK2 / 3, abs=1e-12)
    assert never["tuned"] == pytest.approx((RANK2 + 1) / 3, abs=1e-12)
    # hand-computed: the tuned model ranks every gold first; the base at 0, rank 2 and rank 1
    assert trained["delta"] == pytest.approx(1 - (0 + 1 / math.log2(3) + 1) / 3, abs=1e-12)
    assert never["delta"] == pytest.approx((1 / math.log2(3) + 1) / 3 - RANK2 / 3, abs=1e-12)
    raw = [
        compare_paired(np.array(b), np.array(t), "ndcg@10", seed=0).p_value
        for b, t in (([0, RANK2, 1], [1, 1, 1]), ([0, RANK2, 0], [RANK2, 1, 0]))
    ]
    low, high = sorted(raw)
    holm = {low: min(1.0, 2 * low), high: min(1.0, max(2 * low, high))}
    assert [trained["p_holm"], never["p_holm"]] == [pytest.approx(holm[p]) for p in raw]
    assert trained["clusters"] == never["clusters"] == 3
    assert all(r["verdict"].startswith("not significant") for r in rows)  # three questions
    shown = seen_display(rows)
    assert list(shown["Δ (95% CI)"].str[:6]) == ["+0.456", "+0.333"]


def test_no_split_when_the_model_saw_all_or_none_of_the_passages_or_the_metric_is_deep():
    assert seen_rows(_result([])) == []
    assert seen_rows(_result(["q0", "q1", "q2", "q3", "q4", "q5"])) == []
    assert seen_rows(_result(["q0", "q1", "q2"]), "map@100") == []  # needs the top 100


def test_questions_of_one_cluster_are_flipped_together():
    """q0 and q1 share a chunk: the trained group's test flips their differences as one."""
    rows = seen_rows(_result(["q0", "q1", "q2"], clusters={"q0": 0, "q1": 0}))
    trained = rows[0]
    assert trained["clusters"] == 2 and trained["questions"] == 3
    clustered = compare_paired(
        np.array([0, RANK2, 1]), np.ones(3), "ndcg@10", clusters=[0, 0, 2], seed=0
    )
    assert trained["p_holm"] >= clustered.p_value
    assert clustered.n_clusters == 2
    assert "3 questions in 2 clusters" in seen_display(rows)["questions"].iloc[0]
