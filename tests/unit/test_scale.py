"""At scale (issue 28): BM25 through a sparse matrix equals rank_bm25's scores, the hybrids and
every search score a block of questions at a time with the same results as one block, replayed
random draws equal fresh ones, a column's sign-flip p does not depend on the columns beside it,
and a long job's progress names each step with an ETA."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import SAMPLE_DIR
from core.evaluation import resampling, search
from core.evaluation.hybrid import LexicalSide, score_hybrids
from core.evaluation.quantization import quantize, quantized_scores, unpack_bits
from core.evaluation.search import BM25Index, id_tie_ranks, search_bm25, tokenize_bm25
from core.evaluation.statistics import (
    bootstrap_means,
    compare_paired,
    maxt_adjust,
    sign_flip_pvalue,
)
from core.progress import StepPlan


def _rank_bm25(texts, queries):
    from rank_bm25 import BM25Okapi

    index = BM25Okapi([tokenize_bm25(t) or ["\u2205"] for t in texts])
    return np.stack([index.get_scores(tokenize_bm25(q)) for q in queries])


def test_sparse_bm25_equals_rank_bm25_on_the_sample_to_1e9():
    from core.documents.corpus import load_chunks
    from core.documents.stage import ingest_sample_corpus

    corpus = ingest_sample_corpus().run
    texts = [c.text for c in load_chunks(corpus)]
    lines = (SAMPLE_DIR / "qa_sample.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(x)["question"] for x in lines if x.strip()]
    ours = BM25Index(texts).scores(questions)
    reference = _rank_bm25(texts, questions)
    assert ours.shape == reference.shape == (len(questions), len(texts))
    assert np.abs(ours - reference).max() <= 1e-9
    ids = [f"c{i:05d}" for i in range(len(texts))]
    top, _ = search_bm25(texts, questions, 100, id_tie_ranks(ids))
    ref_top = np.lexsort((np.arange(len(texts))[None, :].repeat(len(questions), 0), -reference))
    assert (top == ref_top[:, :100]).mean() > 0.999  # ties at 1e-16 may swap, nothing else


def test_sparse_bm25_keeps_rank_bm25s_edge_cases():
    texts = ["the the dpkg", "", "apt installs the packages", "the cat", "the dog", "dpkg dpkg"]
    queries = ["dpkg dpkg the", "zebra", "", "THE Cat!"]  # repeats, unknown, empty, case
    assert np.abs(BM25Index(texts).scores(queries) - _rank_bm25(texts, queries)).max() <= 1e-12


def test_every_search_scores_a_block_of_questions_at_a_time(monkeypatch):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    texts = [" ".join(rng.choice(words, 12)) for _ in range(40)]
    questions = [" ".join(rng.choice(words, 4)) for _ in range(30)]
    corpus = rng.normal(size=(40, 8)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[rng.integers(0, 40, 30)] + 0.3 * rng.normal(size=(30, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gold = [[int(g)] for g in rng.integers(0, 40, 30)]
    ties = id_tie_ranks([f"c{i:03d}" for i in range(40)])
    lexical = LexicalSide(BM25Index(texts), questions, questions[:20])
    args = ("m", 8, corpus, queries, lexical, gold, ties, "ndcg@10")
    whole = score_hybrids(*args, val_queries=queries[:20], val_gold=gold[:20])
    seen = []
    original = BM25Index.scores
    monkeypatch.setattr(search, "BLOCK_SCORES", 40 * 7)  # 7 questions a block
    monkeypatch.setattr(
        BM25Index, "scores", lambda self, qs: seen.append(len(qs)) or original(self, qs)
    )
    blocked = score_hybrids(*args, val_queries=queries[:20], val_gold=gold[:20])
    assert seen and max(seen) == 7  # never the (n, N) matrix of every question
    for (a, info_a), (b, info_b) in zip(whole, blocked, strict=True):
        assert info_a == info_b
        assert np.array_equal(a.top_idx, b.top_idx)
        # float32 products of another block shape round differently in the last bit
        np.testing.assert_allclose(a.top_scores, b.top_scores, rtol=0, atol=1e-6)
    idx, val = search.search_exact(queries, corpus, 10, ties)
    assert np.array_equal(idx, search.search_exact(queries, corpus, 10, ties, block=1000)[0])


def test_quantized_scores_equal_their_definitions():
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(50, 24)).astype(np.float32)
    queries = rng.normal(size=(7, 24)).astype(np.float32)
    bits_q = unpack_bits(quantize(queries, "binary"), 24)
    bits_c = unpack_bits(quantize(corpus, "binary"), 24)
    equal_bits = bits_q @ bits_c.T + (1 - bits_q) @ (1 - bits_c).T
    got = quantized_scores(queries, quantize(corpus, "binary"), "binary", None, 24)
    assert np.array_equal(got, equal_bits)


def test_replayed_draws_equal_fresh_ones(monkeypatch):
    values = np.random.default_rng(2).normal(size=(60, 3))
    clusters = np.arange(60) // 2
    resampling._draws.clear()
    first = bootstrap_means(values, 700, seed=5, clusters=clusters)
    again = bootstrap_means(values, 700, seed=5, clusters=clusters)  # replayed
    monkeypatch.setattr(resampling, "_DRAWS_MAX_BYTES", 0)  # drawn afresh, as before
    fresh = bootstrap_means(values, 700, seed=5, clusters=clusters)
    assert np.array_equal(first, again) and np.array_equal(first, fresh)
    p_fresh = sign_flip_pvalue(values, 3000, seed=5, clusters=clusters)
    monkeypatch.setattr(resampling, "_DRAWS_MAX_BYTES", 64_000_000)
    assert np.array_equal(sign_flip_pvalue(values, 3000, seed=5, clusters=clusters), p_fresh)


def test_a_columns_sign_flip_p_does_not_depend_on_the_columns_beside_it():
    # Column a: two clusters with totals 1 and 1e-9; flipping the small one moves the statistic
    # by 2e-9, inside a tolerance scaled by the largest statistic of the call (4 here, column
    # b's) but not inside its own. Tested alone or with b, a's p must be the same.
    a = np.zeros(16)
    a[0], a[1] = 1.0, 1e-9
    b = np.ones(16)
    both = np.stack([a, b], axis=1)
    alone = sign_flip_pvalue(a)[0]
    assert alone == pytest.approx(0.5)
    assert sign_flip_pvalue(both)[0] == alone
    assert maxt_adjust(both).p_raw[0] == alone


def test_paired_comparison_reuses_the_familys_sign_flip_p():
    rng = np.random.default_rng(3)
    base, other = rng.random(80), rng.random(80)
    clusters = np.arange(80) // 3
    family = maxt_adjust(np.stack([other - base], axis=1), clusters, 2000, seed=1)
    own = compare_paired(base, other, "ndcg@10", clusters=clusters, n_permutations=2000, seed=1)
    reused = compare_paired(
        base, other, "ndcg@10", clusters=clusters, n_permutations=2000, seed=1,
        sign_flip_p=float(family.p_raw[0]),
    )  # fmt: skip
    assert own == reused


def test_step_plan_names_each_step_and_gives_an_eta(monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 10.0, 40.0, 40.0, 40.0, 40.0])
    monkeypatch.setattr("core.progress.time.monotonic", lambda: next(clock))
    events = []
    plan = StepPlan("job", events.append)
    plan.add("first", 1.0)
    plan.add("second", 3.0)
    with plan.step("first"):
        pass
    with plan.step("second") as progress:
        from core.progress import ProgressEvent

        progress(ProgressEvent("encoding", 1, 2, "1/2 texts"))
    plan.finish()
    messages = [e.message for e in events]
    assert messages[0] == "first (1/2)" and messages[2] == "second (2/2)"
    assert "second (2/2): 1/2 texts" in messages and messages[-1] == "done"
    # after `first` (cost 1 in 10 s), 3 units are left: 30 s
    assert events[2].eta_s == pytest.approx(30.0)
    # halfway through `second` at 40 s: 2.5 of 4 done, 1.5 left at 16 s a unit
    assert events[3].eta_s == pytest.approx(40.0 / 2.5 * 1.5)


def test_pruned_weighted_fusion_equals_the_full_one():
    from core.evaluation.hybrid import WEIGHTS, weighted_search, weighted_tops

    rng = np.random.default_rng(4)
    n, n_corpus = 12, 600
    dense = rng.normal(size=(n, n_corpus)).astype(np.float32)
    lexical = np.where(rng.random((n, n_corpus)) < 0.05, rng.random((n, n_corpus)) * 9, 0.0)
    lexical[0] = 0.0  # a question sharing no word with any chunk: BM25 all zero
    lexical[1, :3] = 5.0  # three chunks tied at the top
    dense[2] = np.round(dense[2], 1)  # many dense ties
    ties = id_tie_ranks([f"c{i:04d}" for i in rng.permutation(n_corpus)])
    pruned = weighted_tops(dense, lexical, WEIGHTS, 100, ties, pool=120)
    for w in WEIGHTS:
        top, scores = weighted_search(dense, lexical, w, 100, ties)
        assert np.array_equal(pruned[w][0], top), w
        assert np.array_equal(pruned[w][1], scores), w
