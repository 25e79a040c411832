"""The retrieval evaluation stage with the real MiniLM: equality with sentence-transformers'
evaluators, the saved run, the paired verdicts, lineage, Chroma agreement, general similarity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import SAMPLE_DIR
from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.embeddings import ModelSpec, encode_texts, truncate_normalize
from core.errors import ConfigError, InputError, LineageError
from core.evaluation.chroma_check import chroma_agreement
from core.evaluation.config import BM25_LABEL, RetrievalEvalConfig, dims_for
from core.evaluation.flips import compute_flips, flip_rows
from core.evaluation.metrics import (
    SEARCH_DEPTH,
    metric_names,
    relevance_from_indices,
    score_relevance,
    st_metric_key,
)
from core.evaluation.models import model_labels
from core.evaluation.results import load_retrieval_eval
from core.evaluation.search import id_tie_ranks, search_bm25, search_exact, top_k_from_scores
from core.evaluation.similarity import (
    compare_similarity,
    load_similarity_pairs,
    pair_cosines,
    similarity_score,
)
from core.evaluation.stage import evaluate_retrieval
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import create_run, load_run

N_PASSAGES = 60
N_QUERIES = 30
DIMS = (384, 256, 128, 64)


def _sample_items() -> list[dict]:
    lines = (SAMPLE_DIR / "qa_sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def sample():
    """60 passages (verbatim FAQ quotes) and 30 questions, each answered by one of them."""
    items = _sample_items()[:N_PASSAGES]
    passages = {chunk_id_for(i["evidence"]): i["evidence"] for i in items}
    assert len(passages) == N_PASSAGES
    queries = [(i["id"], i["question"], chunk_id_for(i["evidence"])) for i in items[::2]][
        :N_QUERIES
    ]
    return passages, queries


@pytest.fixture
def runs(sample):
    """A corpus run and a qa run whose test split holds the 30 questions."""
    passages, queries = sample
    corpus = create_run("corpus", name="faq sample")
    save_chunks(
        corpus,
        [
            Chunk(cid, text, "faq.pdf", chunk_index=n)
            for n, (cid, text) in enumerate(passages.items())
        ],
    )
    corpus.set_status("done")
    qa = create_run("qa", name="faq questions", parents={"corpus": corpus.id})
    items = [
        QAItem(id=qid, question=q, chunk_id=cid, split="test", origin="sample")
        for qid, q, cid in queries
    ]
    items.append(
        QAItem(id="train-1", question="What is Debian?", chunk_id=list(passages)[1], split="train")
    )
    save_qa(qa, items)
    qa.set_status("done")
    return corpus, qa


def _st_scores(model, passages, queries, relevant, dim):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    evaluator = InformationRetrievalEvaluator(
        queries={qid: q for qid, q, _ in queries},
        corpus=passages,
        relevant_docs=relevant,
        truncate_dim=dim,
        write_csv=False,
    )
    return evaluator(model)  # flat: {"cosine_accuracy@1": ..., "cosine_ndcg@10": ...}


def _st_value(st_scores, name):
    return float(st_scores[f"cosine_{st_metric_key(name)}"])


class NoisyModel:
    """A degraded copy of a model: fixed Gaussian noise per text (seeded by the text) on top of
    its embeddings. Big noise makes a truly worse model; tiny noise an indistinguishable one."""

    def __init__(self, model, noise: float) -> None:
        self.model = model
        self.noise = noise
        self.prompts = {}

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def encode(self, texts, **kwargs):
        emb = np.asarray(self.model.encode(texts, **kwargs), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            emb[row] += (
                np.random.default_rng(seed).normal(0, self.noise, emb.shape[1]).astype(np.float32)
            )
        return emb


def test_metrics_equal_sentence_transformers_per_dim(minilm, sample):
    passages, queries = sample
    ids = list(passages)
    # Several relevant chunks for a third of the queries, so recall, nDCG's ideal DCG and MAP's
    # denominator are exercised beyond the single-gold case.
    relevant = {
        qid: {cid} | ({ids[(n * 7) % N_PASSAGES]} if n % 3 == 0 else set())
        for n, (qid, _, cid) in enumerate(queries)
    }
    corpus = encode_texts(minilm, [passages[c] for c in ids])  # (60, 384), encoded once
    query_emb = encode_texts(minilm, [q for _, q, _ in queries])  # (30, 384)
    index_of = {cid: i for i, cid in enumerate(ids)}
    gold = [[index_of[c] for c in relevant[qid]] for qid, _, _ in queries]
    for dim in DIMS:
        top, _ = search_exact(
            truncate_normalize(query_emb, dim),
            truncate_normalize(corpus, dim),
            SEARCH_DEPTH,
            id_tie_ranks(ids),
        )
        ours = score_relevance(*relevance_from_indices(top, gold))
        theirs = _st_scores(minilm, passages, queries, relevant, dim)
        for name in metric_names():
            assert float(np.mean(ours[name])) == pytest.approx(_st_value(theirs, name), abs=1e-9), (
                dim,
                name,
            )


def test_ties_are_broken_by_ascending_id_like_sentence_transformers():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    ids = ["e", "a", "d", "b", "c"]
    top, vals = top_k_from_scores(scores, 3, id_tie_ranks(ids))
    assert [ids[i] for i in top[0]] == ["a", "b", "d"]  # 0.9, then the 0.5 ties by id
    assert vals[0].tolist() == [0.9, 0.5, 0.5]


def test_stage_end_to_end_saves_a_run_equal_to_sentence_transformers(minilm, sample, runs):
    passages, queries = sample
    corpus, qa = runs
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        dims=(384, 128),
        include_bm25=True,
        chroma_check=False,
        n_resamples=500,
        n_permutations=2000,
    )
    events = []
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm, on_progress=events.append)

    run = load_run(result.run_id)
    assert run.manifest.status == "done"
    assert run.manifest.parents == {"qa": qa.id}
    for name in (
        "metrics.csv",
        "deltas.csv",
        "tradeoff.csv",
        "per_query.jsonl",
        "flips.json",
        "similarity.csv",
        "result.json",
    ):
        assert run.artifact(name).exists(), name
    assert (
        result.corpus_size == N_PASSAGES and result.n_queries == N_QUERIES
    )  # the train item is left out
    assert events and events[-1].message == "done"
    # the progress line counts its steps up, never back ("similarity (31/32)", "what to ship (30/32)")
    import re

    positions = [int(m.group(1)) for e in events if (m := re.search(r"\((\d+)/\d+\)", e.message))]
    assert positions and positions == sorted(positions), " | ".join(e.message for e in events)

    metrics = pd.read_csv(run.artifact("metrics.csv"))
    assert list(metrics.columns[:4]) == ["model", "kind", "dim", "metric"]
    assert {
        "k",
        "value",
        "ci_low",
        "ci_high",
        "n_queries",
        "corpus_size",
        "random_baseline",
    } <= set(metrics.columns)
    assert (
        (metrics["ci_low"] <= metrics["value"]) & (metrics["value"] <= metrics["ci_high"])
    ).all()
    assert metrics["value"].between(0, 1).all()
    relevant = {qid: {cid} for qid, _, cid in queries}
    # 128 is a truncation of the same encoding, checked against sentence-transformers per dim
    # in test_metrics_equal_sentence_transformers_per_dim; here one dim checks the stage's wiring.
    for dim in (128,):
        theirs = _st_scores(minilm, passages, queries, relevant, dim)
        ours = metrics[
            (metrics["model"] == "all-MiniLM-L6-v2") & (metrics["dim"] == dim)
        ].set_index("metric")["value"]
        for name in metric_names():
            assert ours[name] == pytest.approx(_st_value(theirs, name), abs=1e-9), (dim, name)
    hit5 = metrics[metrics["metric"] == "hit_rate@5"]
    assert np.allclose(hit5["random_baseline"], 5 / N_PASSAGES)
    assert set(metrics.loc[metrics["model"] == BM25_LABEL, "dim"].isna()) == {True}

    per_query = [
        json.loads(line) for line in run.artifact("per_query.jsonl").read_text().splitlines()
    ]
    assert len(per_query) == N_QUERIES * 3  # two dims + BM25
    assert all(len(r["top_ids"]) == 10 for r in per_query)
    ranks = [r["gold_rank"] for r in per_query if r["dim"] == 384]
    hit1 = metrics[(metrics["metric"] == "hit_rate@1") & (metrics["dim"] == 384)]["value"].iloc[0]
    assert np.mean([r == 1 for r in ranks]) == pytest.approx(hit1)

    loaded = load_retrieval_eval(result.run_id)
    pd.testing.assert_frame_equal(loaded.metrics, result.metrics, check_dtype=False)
    assert loaded.tradeoff["bytes_per_vector"].tolist() == [384 * 4, 128 * 4]
    assert (loaded.tradeoff["latency_ms"] > 0).all()
    assert (
        loaded.similarity is not None and loaded.similarity["metric"].iloc[0] == "spearman_cosine"
    )
    assert loaded.deltas.empty  # one embedding model: nothing to compare


def test_truly_better_model_is_significant_and_flips_are_listed(minilm, runs):
    _, qa = runs
    degraded = ModelSpec("local", "degraded-minilm")
    models = {degraded: NoisyModel(minilm, 0.12), ModelSpec(): minilm}
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(degraded, ModelSpec()),
        dims=(384, 64),
        chroma_check=False,
        similarity_csv=None,
        n_resamples=1000,
        n_permutations=4000,
    )
    result = evaluate_retrieval(config, model_loader=models.__getitem__)
    ndcg = result.deltas[result.deltas["metric"] == "ndcg@10"].set_index("dim")
    assert ndcg.loc[384, "delta"] > 0.2
    assert ndcg.loc[384, "ci_low"] > 0  # the interval excludes zero
    assert bool(ndcg.loc[384, "significant"])
    hit = result.deltas[
        (result.deltas["metric"] == "hit_rate@5") & (result.deltas["dim"] == 384)
    ].iloc[0]
    assert hit["test"] == "mcnemar-exact"

    flips = result.flips
    assert flips["k"] == 5 and flips["base"] == "degraded-minilm"
    comp = next(c for c in flips["comparisons"] if c["dim"] == 384)
    assert len(comp["gained"]) > len(comp["lost"])
    row = comp["gained"][0]
    assert not set(row["gold_ids"]) & set(row["base_top"]) and set(row["gold_ids"]) & set(
        row["model_top"]
    )
    assert row["gold_ids"][0] in flips["texts"]
    table = flip_rows(comp, flips["texts"], "gained")
    assert len(table) == 5 * len(comp["gained"])  # k rows per flipped question
    assert "★" in "".join(table["model"]) and "★" not in "".join(table["base"])
    # the same flips recomputed from the saved per-query table, any k
    again = compute_flips(result.per_query, "degraded-minilm", "all-MiniLM-L6-v2", 384, 5)
    assert [r["query_id"] for r in again["gained"]] == [r["query_id"] for r in comp["gained"]]
    hit5 = result.deltas[
        (result.deltas["metric"] == "hit_rate@5") & (result.deltas["dim"] == 384)
    ].iloc[0]
    assert hit5["delta"] == pytest.approx((len(comp["gained"]) - len(comp["lost"])) / N_QUERIES)


def test_indistinguishable_model_is_not_significant(minilm, runs):
    _, qa = runs
    twin = ModelSpec("local", "minilm-twin")
    models = {ModelSpec(): minilm, twin: NoisyModel(minilm, 0.004)}
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(ModelSpec(), twin),
        dims=(384,),
        chroma_check=False,
        similarity_csv=None,
        n_resamples=1000,
        n_permutations=4000,
    )
    result = evaluate_retrieval(config, model_loader=models.__getitem__)
    ndcg = result.deltas[result.deltas["metric"] == "ndcg@10"].iloc[0]
    assert ndcg["ci_low"] <= 0 <= ndcg["ci_high"]
    assert not bool(ndcg["significant"])
    assert not result.deltas["significant"].any()


def test_model_run_from_another_qa_run_is_refused(runs):
    corpus, qa = runs
    other_corpus = create_run("corpus", name="other")
    other_qa = create_run("qa", parents={"corpus": other_corpus.id})
    model_run = create_run("model", parents={"qa": other_qa.id})
    model_run.set_status("done")
    config = RetrievalEvalConfig(
        qa_run_id=qa.id, models=(ModelSpec(), ModelSpec("run", model_run.id))
    )
    with pytest.raises(LineageError) as info:
        evaluate_retrieval(
            config, model_loader=lambda spec: pytest.fail("must refuse before loading")
        )
    message = str(info.value)
    assert model_run.id in message and qa.id in message
    assert other_corpus.id in message and corpus.id in message


def test_missing_split_is_a_clear_error(runs):
    _, qa = runs
    with pytest.raises(InputError, match="no accepted questions in the validation split"):
        evaluate_retrieval(
            RetrievalEvalConfig(qa_run_id=qa.id, split="validation"), model_loader=lambda s: None
        )


def test_chroma_collection_agrees_with_exact_search(minilm, runs):
    from core.config import ChromaSettings
    from core.documents.vector_store import index_corpus

    corpus, qa = runs
    index_corpus(corpus.id, minilm, ModelSpec(), 384, ChromaSettings())
    config = RetrievalEvalConfig(
        qa_run_id=qa.id, dims=(384, 128), similarity_csv=None, n_resamples=200, n_permutations=500
    )
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    checked = [c for c in result.chroma if c.get("checked")]
    assert [c["dim"] for c in checked] == [384]  # only the indexed dimension has a collection
    assert checked[0]["overlap"] >= 0.99
    assert checked[0]["n_queries"] == N_QUERIES
    assert not any("disagree" in w for w in result.warnings)


def test_similarity_equals_sentence_transformers_evaluators(minilm, tmp_path):
    from sentence_transformers.sentence_transformer.evaluation import (
        BinaryClassificationEvaluator,
        EmbeddingSimilarityEvaluator,
    )

    scored = load_similarity_pairs(SAMPLE_DIR / "sts_pairs.csv")
    assert scored.kind == "scored" and len(scored) >= 40
    sts = EmbeddingSimilarityEvaluator(
        list(scored.sentences1), list(scored.sentences2), list(scored.values), write_csv=False
    )
    theirs = sts(minilm)
    ours = similarity_score(pair_cosines(minilm, scored), scored)
    assert ours == pytest.approx(theirs["spearman_cosine"], abs=1e-6)

    frame = pd.read_csv(SAMPLE_DIR / "sts_pairs.csv")
    frame["label"] = (frame["score"] >= 3).astype(int)
    path = tmp_path / "labelled.csv"
    frame[["sentence1", "sentence2", "label"]].to_csv(path, index=False)
    labelled = load_similarity_pairs(path)
    assert labelled.kind == "labelled"
    binary = BinaryClassificationEvaluator(
        list(labelled.sentences1),
        list(labelled.sentences2),
        [int(v) for v in labelled.values],
        write_csv=False,
    )
    theirs = binary(minilm)
    ours = similarity_score(pair_cosines(minilm, labelled), labelled)
    assert ours == pytest.approx(theirs["cosine_ap"], abs=1e-6)

    table = compare_similarity(
        {"base": minilm, "broken": NoisyModel(minilm, 0.2)}, scored, "base", n_resamples=300
    )
    base, broken = table.set_index("model").loc["base"], table.set_index("model").loc["broken"]
    assert base["ci_low"] <= base["value"] <= base["ci_high"]
    assert broken["delta"] < 0 and broken["delta_ci_high"] < 0  # a broken model shows up


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,score\nx,y,1\n", "needs the columns sentence1, sentence2 and score"),
        ("sentence1,sentence2,label\n" + "x,y,1\n" * 6, "every label is 1"),
        ("sentence1,sentence2,score\n" + "x,y,oops\n" * 6, "must be numeric"),
        ("sentence1,sentence2,score\nx,y,1\n", "has 1 usable pairs"),
    ],
)
def test_bad_pairs_files_are_explained(text, message):
    with pytest.raises(InputError, match=message):
        load_similarity_pairs(text.encode(), name="upload.csv")


def test_sample_sts_file_is_well_formed():
    frame = pd.read_csv(Path(SAMPLE_DIR) / "sts_pairs.csv")
    assert list(frame.columns) == ["sentence1", "sentence2", "score"]
    assert len(frame) >= 40 and frame["score"].between(0, 5).all()


def test_dims_default_to_native_and_matryoshka_steps_below_it():
    assert dims_for(384) == [384, 256, 128, 64]
    assert dims_for(768) == [768, 512, 256, 128, 64]
    assert dims_for(384, [512, 64, 128]) == [128, 64]  # 512 exceeds the model


def test_chroma_agreement_reports_rates_instead_of_failing():
    exact = [["a", "b", "c"], ["d", "e", "f"]]
    chroma = [[("a", 0.9), ("b", 0.8), ("c", 0.7)], [("e", 0.9), ("d", 0.9), ("x", 0.1)]]
    report = chroma_agreement(chroma, exact, k=3)
    assert report["overlap"] == pytest.approx((1 + 2 / 3) / 2)
    assert report["identical_rate"] == 0.5
    assert report["top1_rate"] == 0.5


def test_bm25_finds_the_lexical_match_and_breaks_ties_by_id():
    texts = ["apt-get installs packages", "dpkg is low level", "the cat sat", "a dog ran"]
    ids = ["c3", "c2", "c1", "c0"]
    idx, scores = search_bm25(texts, ["how does dpkg work", "zebra"], 4, id_tie_ranks(ids))
    assert idx[0, 0] == 1
    assert [ids[i] for i in idx[1]] == ["c0", "c1", "c2", "c3"]  # all scores 0: ascending id
    assert np.all(scores[1] == 0)


def test_model_labels_use_run_names_and_refuse_repeats():
    a, b = create_run("model", name="tuned"), create_run("model", name="tuned")
    specs = [ModelSpec(), ModelSpec("run", a.id), ModelSpec("run", b.id)]
    labels = model_labels(specs, [None, a, b])
    assert labels == ["all-MiniLM-L6-v2", f"tuned ({a.id[-6:]})", f"tuned ({b.id[-6:]})"]
    bm25 = create_run("model", name="BM25")
    assert model_labels([ModelSpec("run", bm25.id)], [bm25]) == [f"BM25 ({bm25.id[-6:]})"]
    with pytest.raises(ConfigError, match="listed twice"):
        model_labels([ModelSpec(), ModelSpec()])
