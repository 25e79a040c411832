"""Reranking without a model: the reordered top N, the untouched tail, ties, the specs and the
settings a reranker training refuses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigError
from core.evaluation.reranking import rerank_pairs, rerank_ranking, split_rerank_deltas
from core.rerank.config import RerankerConfig
from core.rerank.data import labelled_pairs
from core.rerankers import (
    RerankerSpec,
    is_cross_encoder_folder,
    parse_reranker,
    rerank_hits,
    rerank_order,
)


def length_scorer(pairs):
    """A passage's score is its length: a ranking anyone can compute by hand."""
    return np.array([float(len(p)) for _, p in pairs])


def test_the_top_n_is_reordered_by_score_and_the_tail_keeps_the_retrievers_order():
    texts = ["aaaa", "a", "aaa", "aa", "aaaaa", "b"]
    top_idx = np.array([[1, 3, 2, 0, 4, 5]])  # the retriever's order
    idx, scores = rerank_ranking(top_idx, ["q"], texts, length_scorer, top=4)
    assert idx.tolist() == [[0, 2, 3, 1, 4, 5]]  # 4, 3, 2, 1 letters; then 4 and 5 unchanged
    assert scores[0, :4].tolist() == [4.0, 3.0, 2.0, 1.0]
    assert scores[0, 4:].tolist() == [1.0, 1.0]  # the tail ranks below every reranked hit


def test_a_tie_keeps_the_retrievers_order():
    assert rerank_order(np.array([1.0, 2.0, 1.0, 2.0])).tolist() == [1, 3, 0, 2]
    hits = [("x", 0.9), ("y", 0.8), ("z", 0.7)]
    texts = {"x": "ab", "y": "abc", "z": "cd"}
    assert [c for c, _ in rerank_hits("q", hits, texts, length_scorer)] == ["y", "x", "z"]


def test_reranking_tests_are_split_from_the_verdicts_table():
    models = [
        {"label": "base", "kind": "base"},
        {"label": "base + reranker", "kind": "reranked", "retriever": "base"},
        {"label": "BM25 + reranker", "kind": "reranked", "retriever": "BM25"},
    ]
    assert rerank_pairs(models) == [("base + reranker", "base"), ("BM25 + reranker", "BM25")]
    deltas = pd.DataFrame(
        {
            "model": ["tuned", "base + reranker", "BM25 + reranker"],
            "base_model": ["base", "base", "BM25"],
        }
    )
    verdicts, own = split_rerank_deltas(deltas, "base", models)
    assert verdicts["model"].tolist() == ["tuned", "base + reranker"]
    assert own["model"].tolist() == ["base + reranker", "BM25 + reranker"]


def test_reranker_specs_parse_and_refuse_what_they_cannot_use(tmp_path):
    assert parse_reranker("run:reranker-1") == RerankerSpec("run", "reranker-1")
    assert parse_reranker("reranker-2") == RerankerSpec("run", "reranker-2")
    assert parse_reranker("default") == RerankerSpec("default")
    with pytest.raises(ConfigError, match="Reranker 'x:y' is not understood"):
        parse_reranker("x:y")
    folder = tmp_path / "ce"
    folder.mkdir()
    config = {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}
    (folder / "config.json").write_text(json.dumps(config))
    assert is_cross_encoder_folder(folder)
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}  # an NLI classifier, not a reranker
    (folder / "config.json").write_text(json.dumps(config))
    assert not is_cross_encoder_folder(folder)


def test_a_reranker_config_is_checked_with_the_fine_tunes_messages():
    with pytest.raises(ConfigError, match="Rerank top 500 is outside 10..100"):
        RerankerConfig(qa_run_id="qa", rerank_top=500)
    with pytest.raises(ConfigError, match="Unknown reranker setting 'epoch'"):
        RerankerConfig.from_dict({"qa_run_id": "qa", "epoch": 2})
    cfg = RerankerConfig(qa_run_id="qa").update(epochs=1)
    assert RerankerConfig.from_dict(cfg.to_dict()) == cfg and cfg.epochs == 1


def test_mined_rows_become_one_labelled_pair_per_passage():
    from datasets import Dataset

    mined = Dataset.from_dict(
        {"anchor": ["q1", "q2"], "positive": ["p1", "p2"], "negative_1": ["n1", "n2"]}
    )
    pairs = labelled_pairs(mined)
    assert pairs == {
        "query": ["q1", "q1", "q2", "q2"],
        "passage": ["p1", "n1", "p2", "n2"],
        "label": [1.0, 0.0, 1.0, 0.0],
    }


def test_the_loop_tomls_reranker_section_becomes_a_reranker_config():
    from core.cli.rerank import config_from_options

    cfg = config_from_options("qa", {"epochs": 1, "rerank_top": 20}, "local:/models/ce")
    assert cfg.start == RerankerSpec("local", "/models/ce") and cfg.rerank_top == 20
    with pytest.raises(ConfigError, match="Unknown reranker setting 'rerank_tops'"):
        config_from_options("qa", {"rerank_tops": 20})
