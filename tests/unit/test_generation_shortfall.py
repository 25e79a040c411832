"""LLM generation never under-delivers in silence, estimates its time honestly, and leaves the
licence page out of a sample of chunks (issue 26, item 9)."""

from __future__ import annotations

from core.documents.corpus import Chunk, chunk_id_for
from core.formatting import duration_text
from core.llm.embedded import (
    EMBEDDED_PROMPT_TOKENS_PER_S,
    EMBEDDED_REPLY_TOKENS_PER_S,
    EMBEDDED_START_S,
)
from core.questions.generation import (
    GenerationConfig,
    estimate_generation,
    generate_question_run,
    select_chunks,
)
from core.questions.qa_runs import read_gate_report, shortfall_text
from tests.unit.test_questions import NO_DUPS, good, make_corpus, scripted_llm, topic_text

TOPICS = ["alpha", "beta", "gamma", "delta"]


def test_a_reply_with_fewer_questions_than_asked_is_counted_and_said(tmp_path):
    corpus_id, _ = make_corpus([topic_text(t) for t in TOPICS])
    llm, _ = scripted_llm(tmp_path, {t: good(t, n=1) for t in TOPICS})  # 1 where 2 are asked
    result = generate_question_run(corpus_id, llm, GenerationConfig(n_per_chunk=2, gate=NO_DUPS))
    summary = result.run.manifest.summary
    assert (summary["n_asked"], summary["n_returned"], summary["n_short_chunks"]) == (8, 4, 4)
    assert read_gate_report(result.run)["short_chunks"] == 4
    assert shortfall_text(summary) == (
        "asked for 8 question(s), the LLM returned 4: 4 chunk(s) gave fewer than asked"
    )


def test_a_full_delivery_says_nothing(tmp_path):
    corpus_id, _ = make_corpus([topic_text(t) for t in TOPICS])
    llm, _ = scripted_llm(tmp_path, {t: good(t, n=2) for t in TOPICS})
    result = generate_question_run(corpus_id, llm, GenerationConfig(n_per_chunk=2, gate=NO_DUPS))
    assert shortfall_text(result.run.manifest.summary) == ""


def test_the_embedded_estimate_of_four_chunks_is_about_a_minute_never_zero():
    """The issue's run: 2 per chunk on 4 chunks of ~1,000 characters took 69 s."""
    chunks = [Chunk(chunk_id_for(t), t, "r.pdf") for t in (f"{topic_text(x)} " * 6 for x in TOPICS)]
    config = GenerationConfig(n_per_chunk=2, with_answers=False)
    estimate = estimate_generation(chunks, config)
    seconds = estimate.seconds(
        EMBEDDED_PROMPT_TOKENS_PER_S, EMBEDDED_REPLY_TOKENS_PER_S, EMBEDDED_START_S
    )
    assert 50 <= seconds <= 90, seconds
    assert estimate.reply_budget_tokens == 4 * config.max_tokens
    assert duration_text(seconds) in {f"about {s} s" for s in range(50, 91, 5)}
    assert duration_text(20) == "about 20 s" and duration_text(0.2) == "about 5 s"
    assert duration_text(600) == "about 10 min" and duration_text(4000) == "about 1 h 07 min"


LICENCE = (
    "This document is free software; you can redistribute it and/or modify it under the terms "
    "of the GNU General Public License as published by the Free Software Foundation. It is "
    "distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY."
)


def test_a_sample_of_chunks_leaves_the_licence_page_and_the_contents_out():
    contents = "1.1 What is R ... 1\n1.2 What is S ... 2\n1.3 What is S-Plus ... 3\n"
    texts = [LICENCE, contents, *(topic_text(f"t{n}") for n in range(6))]
    chunks = [Chunk(chunk_id_for(t), t, "r.pdf") for t in texts]
    for seed in range(20):
        picked = select_chunks(chunks, 4, seed=seed)
        assert len(picked) == 4 and not {LICENCE, contents} & {c.text for c in picked}
    assert select_chunks(chunks, 0) == chunks  # every chunk when none is sampled
    assert len(select_chunks(chunks, 7, seed=1)) == 7  # too few others: they are drawn too
