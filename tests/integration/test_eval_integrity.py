"""The evaluation-integrity findings, with the real MiniLM, a real Chroma and real runs: several
gold chunks per question, evaluations of a stopped model run, the model card's verdict, the
similarity check's confidence, and a cascade delete that takes the Chroma collections along."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest

from core.config import SAMPLE_DIR, ChromaSettings
from core.deletion import delete_with_dependants
from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.embeddings import ModelSpec
from core.evaluation.card import TEST_END, TEST_START
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.results import load_retrieval_eval
from core.evaluation.similarity import compare_similarity, load_similarity_pairs
from core.evaluation.stage import evaluate_retrieval
from core.evaluation.verdict import row_sentence
from core.finetune.model_card import read_model_card
from core.questions.dataset import QAItem, save_qa
from core.report.export import build_report
from core.runs.folders import create_run, list_runs
from tests.integration.test_retrieval_eval import NoisyModel, _st_scores, _st_value

N = 24


@pytest.fixture
def world():
    """A corpus of FAQ quotes, a qa run whose first test question has two gold chunks, and a
    model run stopped by the user (with a model folder holding a card)."""
    lines = (SAMPLE_DIR / "qa_sample.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][:N]
    corpus = create_run("corpus", name="faq quotes")
    chunks = [Chunk(chunk_id_for(r["evidence"]), r["evidence"], "faq.pdf") for r in rows]
    save_chunks(corpus, chunks)
    corpus.set_status("done")
    qa = create_run("qa", name="faq questions", parents={"corpus": corpus.id})
    items = [
        QAItem(id=r["id"], question=r["question"], chunk_id=c.id, split="test")
        for r, c in zip(rows, chunks, strict=True)
    ]
    items[0] = items[0].model_copy(update={"gold_chunk_ids": [chunks[5].id]})
    items.append(QAItem(id="tr", question="What is Debian?", chunk_id=chunks[1].id, split="train"))
    items[1] = items[1].model_copy(update={"split": "train"})
    save_qa(qa, items)
    qa.set_status("done")
    model = create_run("model", name="stopped tune", parents={"qa": qa.id})
    (model.path / "model").mkdir()
    (model.path / "model" / "README.md").write_text("# stopped tune\n", encoding="utf-8")
    model.set_status("stopped", error="Stopped by the user.", steps=3)
    return corpus, qa, model, chunks, items


def test_several_gold_chunks_count_and_equal_sentence_transformers(minilm, world):
    corpus, qa, _, chunks, items = world
    config = RetrievalEvalConfig(
        qa_run_id=qa.id, dims=(384,), chroma_check=False, similarity_csv=None, n_resamples=200
    )
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    test = [i for i in items if i.split == "test"]
    assert result.gold_counts == {"1": len(test) - 1, "2": 1}
    # the question with two gold chunks shares one of them with another test question: one cluster
    assert result.gold_summary() == (
        f"{len(test)} questions in {len(test) - 1} clusters, 1 with 2 gold chunks"
    )
    first = result.per_query[result.per_query["query_id"] == test[0].id].iloc[0]
    assert first["gold_ids"] == [chunks[0].id, chunks[5].id]
    passages = {c.id: c.text for c in chunks}
    queries = [(i.id, i.question, i.chunk_id) for i in test]
    relevant = {i.id: set(i.gold_ids) for i in test}
    theirs = _st_scores(minilm, passages, queries, relevant, 384)
    ours = result.metrics.set_index("metric")["value"]
    for name in ("recall@5", "ndcg@10", "map@100", "hit_rate@1"):
        assert ours[name] == pytest.approx(_st_value(theirs, name), abs=1e-9), name
    n_relevant = [len(i.gold_ids) for i in test]
    assert np.isclose(  # the random ranker knows that one question has 2 relevant chunks
        result.metrics.set_index("metric").loc["recall@10", "random_baseline"],
        np.mean([10 / N * r / r for r in n_relevant]),
    )


def test_a_stopped_model_run_is_named_on_the_page_in_the_report_and_on_its_card(minilm, world):
    _, qa, model, _, _ = world
    spec = ModelSpec("run", model.id)
    models = {ModelSpec(): minilm, spec: NoisyModel(minilm, 0.004)}
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(ModelSpec(), spec),
        dims=(384, 128),
        chroma_check=False,
        similarity_csv=None,
        n_resamples=300,
        n_permutations=1000,
    )
    result = evaluate_retrieval(config, model_loader=models.__getitem__)
    note = next(w for w in result.warnings if "stopped fine-tune" in w)
    assert model.id in note and "at step 3" in note
    assert [m.get("run_status") for m in result.models] == [None, "stopped"]
    assert note in load_retrieval_eval(result.run_id).warnings
    report = build_report([result.run_id])
    assert note.split(":")[0] in report.html
    # The card gets the test-split verdict, the same text as the page's headline.
    card = read_model_card(model.id)
    assert TEST_START in card and TEST_END in card
    (headline,) = result.headlines()
    assert f"**Verdict:** {headline.text}" in card
    assert f"**What to ship:** {result.recommendation().text}" in card
    assert result.gold_summary() in card
    row = result.deltas[
        (result.deltas["metric"] == "ndcg@10") & (result.deltas["dim"] == 128)
    ].iloc[0]
    assert html.escape(row_sentence(row)) in report.html
    # A second evaluation replaces the section rather than stacking copies.
    evaluate_retrieval(config, model_loader=models.__getitem__)
    assert read_model_card(model.id).count(TEST_START) == 1


def test_similarity_check_uses_the_configured_confidence(minilm):
    pairs = load_similarity_pairs(SAMPLE_DIR / "sts_pairs.csv")
    models = {"base": minilm, "noisy": NoisyModel(minilm, 0.05)}
    wide = compare_similarity(models, pairs, "base", n_resamples=300, confidence=0.95)
    narrow = compare_similarity(models, pairs, "base", n_resamples=300, confidence=0.5)
    width = lambda t: (t["ci_high"] - t["ci_low"]).to_numpy()  # noqa: E731
    assert (width(narrow) < width(wide)).all()
    assert narrow["value"].tolist() == pytest.approx(wide["value"].tolist())


def test_cascade_delete_removes_the_chroma_collections_of_deleted_runs(minilm, world):
    from core.documents.vector_store import collection_name, index_corpus, list_collections

    corpus, qa, model, _, _ = world
    settings = ChromaSettings()
    other = create_run("corpus", name="kept")
    save_chunks(other, [Chunk(chunk_id_for("kept text"), "kept text", "k.txt")])
    other.set_status("done")
    index_corpus(corpus.id, minilm, ModelSpec(), 64, settings)
    index_corpus(other.id, minilm, ModelSpec("run", model.id), 64, settings)  # a model run's index
    index_corpus(other.id, minilm, ModelSpec(), 64, settings)
    before = {c["name"] for c in list_collections(settings)}
    assert len(before) == 3

    report = delete_with_dependants(corpus.id, settings)
    assert report.runs == [model.id, qa.id, corpus.id]  # dependants first
    gone = {
        collection_name(corpus.id, ModelSpec(), 64),
        collection_name(other.id, ModelSpec("run", model.id), 64),
    }
    assert set(report.collections) == gone and not report.warnings
    assert {c["name"] for c in list_collections(settings)} == before - gone
    assert [r.id for r in list_runs()] == [other.id]
