"""Which lever helps: fine-tuning, fusion, reranking and their combinations named from the arms'
kinds, each lever's best arm, the answer sentence; the reranker's validation verdict; the step
plan that counts reranking from the start."""

from __future__ import annotations

import pandas as pd
import pytest

from core.embeddings import ModelSpec
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.levers import best_levers, levers_of, levers_text
from core.evaluation.plan import PAIRED_STEP, RERANK_S_PER_PAIR, RERANK_STEP, evaluation_plan
from core.evaluation.reranking import planned_arms
from core.rerankers import RerankerSpec, validation_verdict

BASE = "base"
MODELS = [
    {"label": BASE, "kind": "base"},
    {"label": "tuned", "kind": "tuned", "source": "run"},
    {"label": "BM25", "kind": "bm25"},
    {"label": "base + BM25 (RRF)", "kind": "hybrid", "ref": BASE},
    {"label": "tuned + BM25 (RRF)", "kind": "hybrid", "ref": "tuned"},
    {"label": "base + reranker", "kind": "reranked", "retriever": BASE,
     "rerank_latency_ms": 5477.4, "rerank_top": 50},
    {"label": "tuned + reranker", "kind": "reranked", "retriever": "tuned",
     "rerank_latency_ms": 8563.0, "rerank_top": 50},
    {"label": "base + BM25 (RRF) + reranker", "kind": "reranked",
     "retriever": "base + BM25 (RRF)", "rerank_latency_ms": 6000.0, "rerank_top": 50},
]  # fmt: skip


def _row(model, dim, delta, significant, metric="ndcg@10", base=BASE):
    low, high = (delta - 0.02, delta + 0.02) if significant else (delta - 0.2, delta + 0.2)
    return {
        "model": model,
        "base_model": base,
        "metric": metric,
        "dim": dim,
        "base_value": 0.80,
        "value": 0.80 + delta,
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
        "significant": significant,
        "verdict": "significant (max-T p=0.001)" if significant else "not significant",
    }


def _deltas(rows):
    return pd.DataFrame(rows)


def test_each_arm_is_named_for_the_levers_it_pulls():
    by_label = {m["label"]: m for m in MODELS}
    names = {m["label"]: levers_of(m, by_label) for m in MODELS}
    assert names[BASE] == () and names["BM25"] == ()
    assert names["tuned"] == ("fine-tuning",)
    assert names["base + BM25 (RRF)"] == ("fusion with BM25",)
    assert names["tuned + BM25 (RRF)"] == ("fine-tuning", "fusion with BM25")
    assert names["base + reranker"] == ("reranking",)
    assert names["tuned + reranker"] == ("fine-tuning", "reranking")
    assert names["base + BM25 (RRF) + reranker"] == ("fusion with BM25", "reranking")


def test_each_lever_is_spoken_for_by_its_best_arm_at_the_largest_dim_best_lever_first():
    deltas = _deltas(
        [
            _row("tuned", 384, 0.010, False),
            _row("tuned", 64, 0.300, True),  # a truncated dim: the headline's, not the levers'
            _row("tuned + BM25 (RRF)", 384, 0.005, False),
            _row("base + BM25 (RRF)", 384, 0.050, True),
            _row("base + reranker", 384, -0.30, True),
            _row("tuned + reranker", 384, -0.20, True),
            _row("tuned", 384, 0.9, True, metric="mrr@10"),  # another metric: ignored
            _row("tuned", 384, 0.9, True, base="BM25"),  # not against the base: ignored
        ]
    )
    levers = best_levers(deltas, MODELS, "ndcg@10", BASE)
    assert [(lv.name, lv.model, lv.dim) for lv in levers] == [
        ("fusion with BM25", "base + BM25 (RRF)", 384),
        ("fine-tuning", "tuned", 384),
        ("fine-tuning + fusion with BM25", "tuned + BM25 (RRF)", 384),
        ("fine-tuning + reranking", "tuned + reranker", 384),
        ("reranking", "base + reranker", 384),
    ]
    assert levers[0].better and not levers[1].better and levers[4].worse
    assert levers[4].rerank_ms == 5477.4 and levers[1].rerank_ms is None

    text = levers_text(deltas, MODELS, "ndcg@10", BASE)
    assert text.startswith("Which lever helps here (ndcg@10 against base at 384d")
    assert text.index("fusion with BM25 (base + BM25 (RRF)) +0.050") < text.index(
        "fine-tuning (tuned) +0.010"
    )
    assert "+0.300" not in text
    assert (
        "worse, significant (max-T p=0.001), at 5,477 ms per question to rerank the top 50" in text
    )
    assert text.endswith(
        "Here fusion with BM25 helps most: ndcg@10 0.800 → 0.850 (base + BM25 (RRF))."
    )


def test_a_hybrid_whose_weight_left_a_side_out_is_that_side_and_another_model_is_no_fine_tune():
    models = [
        *MODELS,
        {"label": "base + BM25 (weighted)", "kind": "hybrid", "ref": BASE,
         "fusion": "weighted", "weight": 0.0},
        {"label": "tuned + BM25 (weighted)", "kind": "hybrid", "ref": "tuned",
         "fusion": "weighted", "weight": 1.0},
        {"label": "hub model", "kind": "tuned", "source": "hub"},
    ]  # fmt: skip
    by_label = {m["label"]: m for m in models}
    assert levers_of(by_label["base + BM25 (weighted)"], by_label) == ()  # BM25 alone
    assert levers_of(by_label["tuned + BM25 (weighted)"], by_label) == ("fine-tuning",)
    assert levers_of(by_label["hub model"], by_label) == ("another embedding model",)
    deltas = _deltas(
        [
            _row("base + BM25 (weighted)", 384, 0.2, True),  # BM25 alone wins: not "fusion"
            _row("tuned + BM25 (weighted)", 384, 0.1, True),
            _row("tuned", 384, 0.05, False),
            _row("base + reranker", 384, -0.1, True),
        ]
    )
    text = levers_text(deltas, models, "ndcg@10", BASE)
    assert "fusion" not in text and "base + BM25 (weighted)" not in text
    assert "Here fine-tuning helps most: ndcg@10 0.800 → 0.900 (tuned + BM25 (weighted))." in text


def test_when_no_lever_is_shown_to_help_the_answer_says_so():
    deltas = _deltas([_row("tuned", 384, 0.02, False), _row("base + reranker", 384, -0.1, True)])
    text = levers_text(deltas, MODELS, "ndcg@10", BASE)
    assert "None of them is shown to raise ndcg@10 over base" in text


def test_a_reranker_that_wins_says_what_it_costs():
    deltas = _deltas([_row("tuned", 384, 0.02, False), _row("base + reranker", 384, 0.08, True)])
    text = levers_text(deltas, MODELS, "ndcg@10", BASE)
    assert (
        "Here reranking helps most: ndcg@10 0.800 → 0.880 (base + reranker). It costs 5,477 ms"
        in text
    )


def test_one_lever_alone_makes_no_sentence():
    assert levers_text(_deltas([_row("tuned", 384, 0.1, True)]), MODELS, "ndcg@10", BASE) == ""
    assert levers_text(pd.DataFrame(), MODELS, "ndcg@10", BASE) == ""
    only_rerank = _deltas([_row("base + reranker", 384, 0.1, True)])
    assert levers_text(only_rerank, MODELS, "ndcg@10", BASE) == ""


def test_the_validation_verdict_says_when_a_reranker_orders_worse_than_its_miner():
    worse = validation_verdict(0.748, 0.161, 50)
    assert "worse than the miner itself (ndcg@10 0.161 against 0.748)" in worse
    assert "would lower retrieval" in worse
    assert "better than the miner itself" in validation_verdict(0.70, 0.80)
    assert validation_verdict(None, 0.8) == "" and validation_verdict(0.7, "?") == ""


def test_the_plan_counts_reranking_from_the_start_in_the_stages_order():
    config = RetrievalEvalConfig(
        qa_run_id="qa-x",
        models=(ModelSpec("default"), ModelSpec("run", "model-a")),
        include_bm25=True,
        hybrid=True,
        rerankers=(RerankerSpec("run", "reranker-a"), RerankerSpec("run", "reranker-b")),
        rerank_top=50,
    )
    # (base + tuned + 2 hybrids each + BM25) x 2 rerankers
    assert planned_arms(config) == (1 + 1 + 4 + 1) * 2
    assert planned_arms(RetrievalEvalConfig(qa_run_id="qa-x")) == 0
    plan = evaluation_plan(
        {BASE: [384], "tuned": [384]},
        (1000, 20, 10),
        10,
        frontier=False,
        hybrid=True,
        bm25=True,
        chroma=False,
        similarity=False,
        n_resamples=100,
        n_permutations=100,
        rerank=(planned_arms(config), 50),
    )
    names = plan.names()
    assert RERANK_STEP in names and names.index(RERANK_STEP) < names.index(PAIRED_STEP)
    assert plan._costs[RERANK_STEP] == pytest.approx(14 * 20 * 50 * RERANK_S_PER_PAIR)
