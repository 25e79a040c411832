"""Hybrids and the dim x precision frontier with the real MiniLM, end to end: the stage, the
saved run, and the same recommendation in the CLI's table, the report and the model card."""

from __future__ import annotations

import html

import pytest

from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.frontier import CELLS
from core.evaluation.results import load_retrieval_eval
from core.evaluation.stage import evaluate_retrieval
from tests.integration.test_retrieval_eval import DIMS, N_QUERIES, runs, sample  # noqa: F401


def test_hybrids_and_the_frontier_are_evaluated_like_any_model(minilm, runs):  # noqa: F811
    from core.cli.render import retrieval_text
    from core.report.export import build_report

    _, qa = runs
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        dims=DIMS,
        include_bm25=True,
        hybrid=True,
        chroma_check=False,
        similarity_csv=None,
        n_resamples=300,
        n_permutations=1000,
        latency_size=5_000,
        deploy_size=10_000_000,
    )
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    hybrids = [m for m in result.models if m["kind"] == "hybrid"]
    assert [m["fusion"] for m in hybrids] == ["rrf", "weighted"]
    assert hybrids[1]["weight"] == 0.5 and "no validation split" in hybrids[1]["weight_note"]
    ndcg = result.metrics[result.metrics["metric"] == "ndcg@10"].set_index("model")
    assert {"all-MiniLM-L6-v2 + BM25 (RRF)", "all-MiniLM-L6-v2 + BM25 (weighted)"} <= set(
        ndcg.index
    )
    # a hybrid is compared with the base like a tuned model: paired test, Holm, verdict, flips
    compared = result.deltas[result.deltas["metric"] == "ndcg@10"]
    assert set(compared["model"]) == {m["label"] for m in hybrids}
    assert compared["verdict"].str.contains("Holm p=").all()
    assert {c["model"] for c in result.flips["comparisons"]} == {m["label"] for m in hybrids}
    assert {h.model for h in result.headlines()} == {m["label"] for m in hybrids}

    frontier = result.frontier
    assert len(frontier) == len(DIMS) * len(CELLS)
    assert frontier["reference"].sum() == 1
    floats = frontier[frontier["precision"] == "float32"].set_index("dim")["value"]
    per_dim = result.metrics[
        (result.metrics["metric"] == "ndcg@10") & (result.metrics["model"] == "all-MiniLM-L6-v2")
    ].set_index("dim")["value"]
    for dim in DIMS:  # the float cells are the main table's figures
        assert floats[dim] == pytest.approx(per_dim[dim], abs=1e-12)
    assert (frontier["latency_ms"] > 0).all() and set(frontier["n_vectors"]) == {5_000}
    assert frontier["pareto"].any()

    saved = load_retrieval_eval(result.run_id)
    recommendation = saved.recommendation()
    assert recommendation is not None
    if recommendation.qualified:
        assert "for 10,000,000 chunks" in recommendation.text
    else:
        assert recommendation.text.startswith("Keep all-MiniLM-L6-v2 at 384d float32")
    assert saved.frontier["cell"].tolist() == frontier["cell"].tolist()
    assert f"what to ship: {recommendation.text}" in retrieval_text(saved)
    page = build_report([result.run_id]).html
    assert html.escape(recommendation.text) in page and "What to ship" in page
    assert N_QUERIES == result.n_queries
