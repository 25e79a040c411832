"""The Questions stage end to end with real parts: the sample corpus, the embedded offline LLM
(SmolLM2-135M) and the packaged MiniLM for near-duplicates."""

from __future__ import annotations

import pytest

from core.config import LLMSettings
from core.documents.corpus import load_chunks
from core.llm.client import make_llm
from core.questions.dataset import QAItem, load_qa
from core.questions.gate import REASONS, GateConfig, apply_gate
from core.questions.generation import GenerationConfig, generate_question_run
from core.questions.splits import check_no_leak


@pytest.mark.slow
def test_near_duplicates_with_the_real_embedding_model(minilm):
    questions = [
        "How often are the Debian archives updated?",
        "How often is the Debian archive updated?",  # a paraphrase
        "Which program installs a .deb package file?",
    ]
    items = [QAItem(id=f"q{i}", question=q, chunk_id="c1") for i, q in enumerate(questions)]
    report = apply_gate(items, {"c1": ""}, GateConfig(near_duplicate_threshold=0.9), model=minilm)
    assert [i.reason for i in report.items] == ["", "near_duplicate", ""]
    strict = apply_gate(items, {"c1": ""}, GateConfig(near_duplicate_threshold=0.999), model=minilm)
    assert strict.counts["accepted"] == 3


@pytest.mark.slow
@pytest.mark.llm
def test_embedded_llm_generates_gated_questions_for_sample_chunks(tmp_path, minilm):
    from core.documents.stage import ingest_sample_corpus

    corpus = ingest_sample_corpus()
    llm = make_llm(LLMSettings(backend="embedded"), cache_dir=tmp_path / "llm-cache")
    config = GenerationConfig(n_per_chunk=1, max_chunks=4, with_answers=False, seed=7)
    result = generate_question_run(corpus.run.id, llm, config, model=minilm)

    gate = result.gate
    print(
        f"\nembedded LLM on 4 sample chunks: {gate['accepted']} accepted, {gate['rejected']} "
        f"rejected {gate['by_reason']}, {len(result.failures)} chunk(s) failed "
        f"{gate['failures_by_kind']}; {result.usage['calls']} call(s), "
        f"{result.usage['total_tokens']} tokens (estimated {result.estimate.total_tokens})"
    )
    for item in result.items:
        print(f"  {item.status:8} {item.reason:15} {item.question[:100]!r}")
    for failure in result.failures:
        print(f"  failed   {failure.kind:15} {(failure.raw or '')[:100]!r}")

    assert result.run.manifest.status == "done"
    assert len(result.items) + len(result.failures) >= 1
    assert {f.chunk_id for f in result.failures} | {i.chunk_id for i in result.items} <= {
        c.id for c in load_chunks(corpus.run.id)
    }
    for item in result.items:
        assert item.status in {"accepted", "rejected"}
        if item.status == "rejected":
            assert item.reason in REASONS and item.meta["reason_text"]
    saved = load_qa(result.run, accepted_only=False)
    assert [i.id for i in saved] == [i.id for i in result.items]
    check_no_leak(saved)
    assert result.usage["calls"] >= 1 and result.usage["completion_tokens"] > 0
