"""Training a cross-encoder reranker for real on CPU: a run with lineage, progress, a card, a
usable model, Stop; and hard negatives that never come from a validation or test chunk."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.evaluation.scoring import encode_corpus, encode_queries
from core.evaluation.search import id_tie_ranks, search_exact
from core.finetune.artifacts import read_metrics
from core.finetune.data import prepare_data
from core.finetune.model_card import END, START, read_model_card
from core.rerank.config import RerankerConfig
from core.rerank.control import create_reranker_run
from core.rerank.data import LABEL, PASSAGE, QUERY, training_pairs
from core.rerank.trainer import run_rerank_train
from core.rerankers import RerankerSpec, load_cross_encoder, pair_scorer, rerank_hits
from core.runs.folders import load_run
from core.runs.jobs import job_status
from tests.support.finetune_data import make_qa_run

FAST = {"epochs": 1, "batch_size": 16, "max_length": 64, "rerank_top": 10, "seed": 3}


@pytest.mark.slow
def test_a_reranker_trains_on_cpu_into_a_run_with_lineage_a_card_and_a_usable_model():
    _, qa = make_qa_run(n_chunks=10, seed=7)  # 7 train chunks: 21 questions
    cfg = RerankerConfig(qa_run_id=qa.id, num_negatives=2, **FAST)
    run = create_reranker_run(cfg)
    assert run.kind == "reranker" and run.manifest.parents == {"qa": qa.id}
    events: list[dict] = []

    assert run_rerank_train(run, on_event=events.append) == "done"

    metrics = read_metrics(run.id)
    data = metrics["data"]
    assert data["n_train"] == 21 and data["n_questions_with_negatives"] == 21
    assert data["positives"] == 21 and data["n_negatives"] == 42
    assert data["n_pairs"] == 63
    assert set(metrics["retriever"]) >= {"ndcg@10", "mrr@10"}
    assert 0.0 <= metrics["after"]["ndcg@10"] <= 1.0
    assert metrics["steps"] == 4  # ceil(63 / 16) steps, one epoch
    manifest = load_run(run.id).manifest
    assert manifest.status == "done"
    assert manifest.summary["ndcg@10_after"] == metrics["after"]["ndcg@10"]
    # the offline start has no trained head: it is said plainly, in the run and on the card
    assert any("randomly initialised scoring head" in w for w in manifest.summary["warnings"])
    card = read_model_card(run.id)
    assert START in card and END in card
    assert "| Pairs | 63: 21 positives (label 1) and 42 hard negatives" in card
    assert "randomly initialised scoring head" in card

    status = job_status(run.id)
    assert status.step == status.total_steps == 4
    assert [e["event"] for e in events][-1] == "end"
    assert any(e["event"] == "log" and e.get("loss") is not None for e in events)

    model = load_cross_encoder(RerankerSpec("run", run.id), device="cpu")
    assert model.num_labels == 1
    texts = {"a": "Part QX-1 is inspected yearly.", "b": "Replacement parts come by boat."}
    reranked = rerank_hits("When is QX-1 inspected?", [("b", 0.9), ("a", 0.8)], texts,
                           pair_scorer(model))  # fmt: skip
    assert sorted(cid for cid, _ in reranked) == ["a", "b"]
    assert reranked[0][1] >= reranked[1][1]


@pytest.mark.slow
def test_stop_ends_the_run_stopped_with_a_usable_reranker(monkeypatch):
    _, qa = make_qa_run(n_chunks=10, seed=7)
    run = create_reranker_run(RerankerConfig(qa_run_id=qa.id, num_negatives=2, **FAST))
    calls = {"n": 0, "started": False}

    def stop_after_two_steps(run_path):
        if not calls["started"]:
            return False  # validation checks before each question; not counted here
        calls["n"] += 1  # call 1 is the check before training; then one per step
        return calls["n"] >= 3

    def on_event(event):
        calls["started"] |= event.get("event") == "start"

    monkeypatch.setattr("core.rerank.trainer.stop_requested", stop_after_two_steps)
    assert run_rerank_train(run, on_event=on_event) == "stopped"
    manifest = load_run(run.id).manifest
    assert manifest.status == "stopped" and manifest.summary["steps"] == 2
    assert "step 2 of 4" in manifest.error
    assert read_metrics(run.id)["stopped_early"] is True
    model = load_cross_encoder(RerankerSpec("run", run.id), device="cpu")
    assert pair_scorer(model)([("q", "p"), ("q", "r")]).shape == (2,)


def test_a_stop_while_the_untrained_reranker_is_validated_ends_the_run_at_once(monkeypatch):
    """The validation before training reranks every validation question's top N (minutes on
    CPU for a real corpus): a Stop is honoured before the next batch, not after all."""
    _, qa = make_qa_run(n_chunks=10, seed=7)
    run = create_reranker_run(RerankerConfig(qa_run_id=qa.id, num_negatives=2, **FAST))
    checks = {"n": 0}
    events = []

    def stop_at_the_second_batch(run_path):
        checks["n"] += 1
        return checks["n"] >= 2

    monkeypatch.setattr("core.rerank.trainer.stop_requested", stop_at_the_second_batch)
    assert run_rerank_train(run, on_event=events.append) == "stopped"
    manifest = load_run(run.id).manifest
    assert manifest.error == "Stopped before training started; no model was saved."
    assert checks["n"] == 2  # one batch scored, then the stop
    assert not [e for e in events if e.get("event") in ("eval", "start")]
    assert not (run.path / "model").exists()


def test_mining_never_picks_a_validation_or_test_chunk(minilm):
    """Held-out chunks are among the miner's nearest neighbours of training questions (the
    catalogue's chunks all read alike), so leaving them out is what keeps them out."""
    _, qa = make_qa_run(n_chunks=20, seed=7)
    cfg = RerankerConfig(qa_run_id=qa.id, num_negatives=5, negatives_range_max=30)
    data = prepare_data(qa.id, {}, cfg.seed)
    held_out = {data.corpus[c] for c in data.held_out_chunk_ids}
    assert len(data.held_out_chunk_ids) == 6

    ids = list(data.corpus)
    corpus = encode_corpus(minilm, [data.corpus[c] for c in ids], label="m", batch_size=64)
    queries = encode_queries(minilm, data.anchors, label="m", batch_size=64)
    top, _ = search_exact(queries, corpus, 6, id_tie_ranks(ids))  # (n_train, 6)
    unrestricted = {data.corpus[ids[int(i)]] for row in top for i in row}
    assert unrestricted & held_out, "the test needs held-out chunks the miner would pick"

    pairs = training_pairs(minilm, data, cfg.as_finetune())
    rows = list(zip(pairs.pairs[QUERY], pairs.pairs[PASSAGE], pairs.pairs[LABEL], strict=True))
    negatives = [p for _, p, label in rows if label == 0.0]
    assert len(negatives) == 5 * pairs.n_questions > 0
    assert not set(negatives) & held_out
    by_question: dict[str, set[str]] = {}
    for q, p, label in rows:
        if label == 0.0:
            by_question.setdefault(q, set()).add(p)
    gold = dict(zip(data.anchors, data.positives, strict=True))
    assert all(gold[q] not in negs for q, negs in by_question.items())


def test_ranking_with_an_untrained_head_is_refused():
    with pytest.raises(ConfigError, match="no trained scoring head"):
        load_cross_encoder(RerankerSpec("default"), device="cpu")
