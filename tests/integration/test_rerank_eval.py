"""Retrieve, then rerank, in the retrieval evaluation: reranked arms whose metrics equal
sentence-transformers' CrossEncoderRerankingEvaluator and a hand-computed ranking, paired tests
against the base and against the retriever in one family, measured latency, saved and read back."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.documents.corpus import load_chunks
from core.errors import ConfigError
from core.evaluation.config import BM25_LABEL, RetrievalEvalConfig
from core.evaluation.results import load_retrieval_eval
from core.evaluation.scoring import encode_corpus, encode_queries
from core.evaluation.search import id_tie_ranks, search_exact
from core.evaluation.stage import evaluate_retrieval
from core.rerankers import RerankerSpec, load_cross_encoder
from core.runs.folders import list_runs
from tests.support.faq import faq_corpus, faq_items, faq_qa

TOP = 10
N_ITEMS = 24


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    """A one-score cross-encoder folder: MiniLM's transformer with a fresh, seeded scoring head
    (untrained, but its scores spread over passages, so rankings have no near-ties)."""
    import torch

    torch.manual_seed(0)
    model = load_cross_encoder(RerankerSpec("default"), "cpu", max_length=64, for_ranking=False)
    folder = tmp_path_factory.mktemp("reranker") / "cross-encoder"
    model.save(str(folder))
    return folder


def _config(qa_id: str, spec: RerankerSpec) -> RetrievalEvalConfig:
    return RetrievalEvalConfig(
        qa_run_id=qa_id,
        dims=(384,),
        include_bm25=True,
        frontier=False,
        chroma_check=False,
        similarity_csv=None,
        n_resamples=200,
        n_permutations=500,
        rerankers=(spec,),
        rerank_top=TOP,
    )


@pytest.mark.slow
def test_reranked_arms_equal_an_independent_reranking(minilm, tiny_reranker):
    items = faq_items(N_ITEMS)
    corpus = faq_corpus("faq", items)
    qa = faq_qa(corpus, "faq questions", items)
    spec = RerankerSpec("local", str(tiny_reranker))
    events = []
    result = evaluate_retrieval(
        _config(qa.id, spec), model_loader=lambda _: minilm, on_progress=events.append
    )
    # reranking was planned from the first event (the step count never grows), and says which
    # arm it reranks
    counts = {int(m.group(2)) for e in events if (m := re.search(r"\((\d+)/(\d+)\)", e.message))}
    assert len(counts) == 1
    assert any(f"reranking ({n}/" in e.message and "+ reranker (1/2)" in e.message
               for e in events for n in range(1, 30))  # fmt: skip

    base, reranked = result.base_label, f"{result.base_label} + reranker"
    assert {m["label"] for m in result.models} >= {reranked, f"{BM25_LABEL} + reranker"}

    # independently: the base's top 10 by exact search, reranked by the same cross-encoder
    texts = [i["evidence"] for i in items]
    chunks = load_chunks(corpus.id)
    order = [c.id for c in chunks]
    by_id = {c.id: c.text for c in chunks}
    vectors = encode_corpus(minilm, [by_id[c] for c in order])
    questions = [i["question"] for i in items]
    top, _ = search_exact(encode_queries(minilm, questions), vectors, TOP, id_tie_ranks(order))
    samples = [
        {"query": q, "positive": [text], "documents": [by_id[order[int(j)]] for j in row]}
        for q, text, row in zip(questions, texts, top, strict=True)
    ]
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    model = load_cross_encoder(spec, device="cpu")
    expected = CrossEncoderRerankingEvaluator(
        samples, at_k=10, always_rerank_positives=False, write_csv=False
    )(model)
    ours = result.metrics[(result.metrics["model"] == reranked) & (result.metrics["dim"] == 384)]
    value = dict(zip(ours["metric"], ours["value"], strict=True))
    assert value["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
    assert value["mrr@10"] == pytest.approx(expected["mrr@10"], abs=1e-6)
    retriever = result.metrics[(result.metrics["model"] == base) & (result.metrics["dim"] == 384)]
    assert (
        value["ndcg@10"]
        != dict(zip(retriever["metric"], retriever["value"], strict=True))["ndcg@10"]
    )  # the reranker changed the order: the comparison above is not the retriever's own

    # by hand: each question's saved top 10 is its top 10 sorted by the reranker's score
    rows = result.per_query[result.per_query["model"] == reranked].set_index("query_id")
    for item, q, cand in zip(items[:5], questions[:5], top[:5], strict=True):
        scores = model.predict([[q, by_id[order[int(j)]]] for j in cand])
        by_hand = [order[int(cand[j])] for j in np.argsort(-scores, kind="stable")[:10]]
        assert rows.loc[item["id"], "top_ids"] == by_hand

    # paired tests: against the base in the verdict's table, against BM25 alone in reranking's,
    # both in one max-T family for the primary metric
    primary = result.deltas[result.deltas["metric"] == "ndcg@10"]
    assert set(primary["model"]) == {reranked} and set(primary["base_model"]) == {base}
    own = result.rerank_deltas[result.rerank_deltas["metric"] == "ndcg@10"]
    assert set(zip(own["model"], own["base_model"], strict=True)) == {
        (reranked, base),
        (f"{BM25_LABEL} + reranker", BM25_LABEL),
    }
    assert set(own["family_size"]) == {2} and set(primary["family_size"]) == {2}
    assert set(own["n_clusters"]) == {N_ITEMS}
    info = next(m for m in result.models if m["label"] == reranked)
    assert info["rerank_top"] == TOP and info["rerank_latency_ms"] > 0
    assert info["retriever"] == base

    saved = load_retrieval_eval(result.run_id)
    assert saved.rerank_deltas is not None and len(saved.rerank_deltas) == len(result.rerank_deltas)
    lines = saved.rerank_lines()
    assert len(lines) == 2 and all("ms per question to rerank" in line for line in lines)
    assert saved.levers_text() == ""  # reranking is the only lever evaluated here
    assert lines[0].startswith(f"Reranking the top {TOP} of {base} at 384d with cross-encoder")


def test_a_reranker_with_no_trained_head_is_refused_before_any_run_exists():
    items = faq_items(12)
    qa = faq_qa(faq_corpus("faq", items), "faq questions", items)
    with pytest.raises(ConfigError, match="no trained scoring head"):
        evaluate_retrieval(_config(qa.id, RerankerSpec("default")))
    assert list_runs("retrieval_eval") == []
    with pytest.raises(ConfigError, match="Rerank top 5 is outside 10..100"):
        RetrievalEvalConfig(qa_run_id=qa.id, rerankers=(RerankerSpec("default"),), rerank_top=5)
