"""Hybrids and the dim x precision frontier with the real MiniLM, end to end: the stage, the
saved run, and the same recommendation in the CLI's table, the report and the model card."""

from __future__ import annotations

import html
import math

import numpy as np
import pytest

from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.quantization import CELLS
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
    assert hybrids[1]["weight"] == 0.5
    assert hybrids[1]["weight_note"] == "no validation questions to tune it on: 0.5 used"
    ndcg = result.metrics[result.metrics["metric"] == "ndcg@10"].set_index("model")
    assert {"all-MiniLM-L6-v2 + BM25 (RRF)", "all-MiniLM-L6-v2 + BM25 (weighted)"} <= set(
        ndcg.index
    )
    # a hybrid is compared with the base like a tuned model: paired test, Holm, verdict, flips
    compared = result.deltas[result.deltas["metric"] == "ndcg@10"]
    assert set(compared["model"]) == {m["label"] for m in hybrids}
    assert compared["verdict"].str.contains("max-T p=").all()
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
    assert frontier["machine"].str.contains("CPU cores").all()

    saved = load_retrieval_eval(result.run_id)
    recommendation = saved.recommendation()
    # which cell it must be, read off the saved table by the rule, not by recommend()
    qualified = saved.frontier[
        ~saved.frontier["reference"] & (saved.frontier["delta_bound"] >= -0.02)
    ].sort_values(["bytes_per_vector", "value"], ascending=[True, False])
    reference = saved.frontier[saved.frontier["reference"]].iloc[0]
    smaller = qualified[qualified["bytes_per_vector"] < reference["bytes_per_vector"]]
    if len(smaller):
        best = smaller.iloc[0]
        expected = f"Ship {best['model']} at {int(best['dim'])}d, {best['cell']}: "
    else:
        expected = f"Keep {reference['model']} at {int(reference['dim'])}d float32 "
    assert recommendation is not None and recommendation.text.startswith(expected)
    assert saved.frontier["cell"].tolist() == frontier["cell"].tolist()
    assert f"what to ship: {recommendation.text}" in retrieval_text(saved)
    page = build_report([result.run_id]).html
    assert html.escape(recommendation.text) in page and "What to ship" in page
    assert N_QUERIES == result.n_queries


def grid_search_weight(
    dense: np.ndarray, lexical: np.ndarray, gold: list[int], ids: list[str]
) -> float:
    """The weight of 0, 0.1, …, 1 with the best mean nDCG@10 of one gold chunk, the smallest on
    a tie, written out from the definition: per query both scores scaled to [0, 1] over the
    corpus, ranked by the weighted sum, ties by ascending chunk id, 1 / log2(rank + 1)."""

    def scaled(row: np.ndarray) -> np.ndarray:
        span = row.max() - row.min()
        return (row - row.min()) / span if span > 0 else np.zeros_like(row)

    best, best_mean = None, -1.0
    for step in range(11):
        w = step / 10
        total = 0.0
        for q, g in enumerate(gold):
            fused = w * scaled(dense[q]) + (1 - w) * scaled(lexical[q])
            order = sorted(range(len(ids)), key=lambda i: (-fused[i], ids[i]))
            rank = order.index(g) + 1
            total += 1 / math.log2(rank + 1) if rank <= 10 else 0.0
        if total / len(gold) > best_mean + 1e-12:
            best, best_mean = w, total / len(gold)
    assert best is not None
    return best


def test_the_hybrid_weight_is_tuned_on_validation_and_dims_without_native_still_compare(
    minilm,
    sample,  # noqa: F811 - the fixture imported above
):
    """With a validation split the weighted hybrid's weight is the best of the grid on those
    questions alone (by an independent grid search); with dims that leave out the native one, the frontier's reference and
    the hybrids move to the largest dim evaluated."""
    from core.documents.corpus import Chunk, save_chunks
    from core.embeddings import encode_texts, truncate_normalize
    from core.evaluation.search import bm25_index, bm25_scores
    from core.questions.dataset import QAItem, save_qa
    from core.runs.folders import create_run

    passages, queries = sample
    corpus = create_run("corpus", name="faq")
    ids = list(passages)
    save_chunks(
        corpus, [Chunk(cid, passages[cid], "faq.pdf", chunk_index=n) for n, cid in enumerate(ids)]
    )
    corpus.set_status("done")
    qa = create_run("qa", name="faq", parents={"corpus": corpus.id})
    items = [
        QAItem(id=qid, question=q, chunk_id=cid, split="test" if n % 3 else "validation")
        for n, (qid, q, cid) in enumerate(queries)
    ]
    save_qa(qa, items)
    qa.set_status("done")
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        dims=(256, 64),
        hybrid=True,
        chroma_check=False,
        similarity_csv=None,
        n_resamples=200,
        n_permutations=500,
        latency_size=2_000,
    )
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    weighted = next(m for m in result.models if m.get("fusion") == "weighted")
    val = [i for i in items if i.split == "validation"]
    assert (
        weighted["dims"] == [256] and f"chosen on {len(val)} validation" in weighted["weight_note"]
    )
    index_of = {cid: n for n, cid in enumerate(ids)}
    corpus_256 = truncate_normalize(encode_texts(minilm, [passages[c] for c in ids]), 256)
    val_256 = truncate_normalize(encode_texts(minilm, [i.question for i in val]), 256)
    dense = val_256 @ corpus_256.T
    lexical = bm25_scores(bm25_index([passages[c] for c in ids]), [i.question for i in val])
    gold = [index_of[i.chunk_id] for i in val]
    assert weighted["weight"] == grid_search_weight(dense, lexical, gold, ids)
    reference = result.frontier[result.frontier["reference"]].iloc[0]
    assert (reference["model"], reference["dim"], reference["cell"]) == (
        "all-MiniLM-L6-v2",
        256,
        "float32",
    )
    hybrid_rows = result.deltas[result.deltas["model"].str.contains("BM25")]
    assert set(hybrid_rows["dim"]) == {256} and len(hybrid_rows) > 0
