"""Cloze pairs, source weights and training overlap: hand-checked cases."""

from __future__ import annotations

import pytest

from core.documents.corpus import Chunk, chunk_id_for
from core.errors import ConfigError
from core.finetune.config import FinetuneConfig
from core.questions.dataset import QAItem
from core.questions.from_documents import DocumentPairsConfig
from core.questions.leakage import EvidenceIndex
from core.questions.sources import (
    sources_text,
    training_items,
    training_overlap,
    weigh_by_source,
)
from core.questions.structure import cloze_items, cloze_sentences, looks_like_contents

SENTENCE = "Debian keeps every release in its own archive section for years."
TEXT_A = (
    "Mirrors copy the archive every six hours. "
    + SENTENCE
    + " Old releases move to the archive host."
)
TEXT_B = SENTENCE + " Security updates arrive through their own mirror network instead."


def _chunk(text: str, index: int) -> Chunk:
    return Chunk(chunk_id_for(text), text, "faq.pdf", page=1, doc_id="d", chunk_index=index)


def test_cloze_sentences_keep_statements_and_drop_code_lists_and_contents():
    text = (
        "2 1.5 What is the difference between Debian and others?\n\n"
        "Run apt-get -y install foo=1.2.3 --no-install-recommends now please ok.\n\n"
        "What is the latest version of Debian in the archive today?\n\n" + SENTENCE
    )
    assert cloze_sentences(text) == [SENTENCE]
    contents = "1.1 What is this FAQ ... 1\n1.2 What is Debian ... 1\n1.3 What is Linux ... 2"
    assert looks_like_contents(contents) and cloze_sentences(contents) == []


def test_a_cloze_pair_drops_its_sentence_from_the_positive_and_counts_every_chunk_holding_it():
    a, b = _chunk(TEXT_A, 0), _chunk(TEXT_B, 1)
    index = EvidenceIndex.of([a, b])
    # The other two sentences of A have 7 words (< 8): the only eligible one is drawn.
    (item,) = cloze_items([a], 3, seed=0, index=index)
    assert item.question == SENTENCE
    assert item.origin == "cloze" and item.source == "cloze"
    assert item.chunk_id == a.id and item.gold_ids == [a.id, b.id]  # the overlap holds it too
    assert SENTENCE not in item.positive
    assert (
        item.positive
        == "Mirrors copy the archive every six hours. Old releases move to the archive host."
    )
    assert item.evidence == SENTENCE


def test_cloze_draws_are_seeded():
    chunks = [
        _chunk(f"{SENTENCE} Sentence number {n} is also long enough to be drawn here.", n)
        for n in range(5)
    ]
    index = EvidenceIndex.of(chunks)
    first = [i.question for i in cloze_items(chunks, 1, seed=7, index=index)]
    assert first == [i.question for i in cloze_items(chunks, 1, seed=7, index=index)]


def _items(source_counts: dict[str, int]) -> list[QAItem]:
    origin = {"human": "imported", "llm": "generated", "heading": "heading", "cloze": "cloze"}
    return [
        QAItem(
            id=f"{s}{n}",
            question=f"{s} question {n}?",
            chunk_id=f"c_{s}{n}",
            origin=origin[s],
            split="train",
        )
        for s, count in source_counts.items()
        for n in range(count)
    ]


def test_source_weights_keep_round_w_times_n_pairs_of_each_source():
    items = _items({"heading": 10, "cloze": 8, "human": 4})
    used = weigh_by_source(items, {"heading": 0.5, "cloze": 0, "human": 2.25}, seed=3)
    counts = {s: sum(i.source == s for i in used) for s in ("heading", "cloze", "human")}
    assert counts == {"heading": 5, "cloze": 0, "human": 9}  # 2 x 4 copies + 1 drawn
    assert weigh_by_source(items, {}, 3) == items
    assert weigh_by_source(items, {"cloze": 0.5}, 3).count(items[0]) == 1  # unweighted: once


def test_training_items_report_what_each_source_had_and_gave():
    items = _items({"heading": 4, "cloze": 2})
    unique, used, sources = training_items(
        items + items[:1], {i.chunk_id for i in items}, {"cloze": 0}, 0
    )
    assert len(unique) == 6 and len(used) == 4
    assert sources == {"heading": {"available": 4, "used": 4}, "cloze": {"available": 2, "used": 0}}
    assert sources_text(sources) == "heading 4 · cloze left out training pairs"
    assert (
        sources_text({"cloze": {"available": 161, "used": 80}}) == "cloze 80 of 161 training pairs"
    )


def test_training_overlap_counts_seen_questions_and_trained_chunks():
    train = _items({"heading": 3})
    evaluated = [
        QAItem(id="e1", question="HEADING question 0?", chunk_id="c_other", split="test"),
        QAItem(id="e2", question="Something new?", chunk_id="c_heading1", split="test"),
        QAItem(
            id="e3",
            question="Unrelated?",
            chunk_id="c_x",
            gold_chunk_ids=["c_heading2"],
            split="test",
        ),
        QAItem(id="e4", question="Unseen?", chunk_id="c_y", split="test"),
    ]
    overlap = training_overlap(train, evaluated)
    assert (overlap.n_queries, overlap.same_questions, overlap.trained_chunks) == (4, 1, 2)


def test_bad_source_weights_and_pair_settings_say_how_to_fix_them():
    with pytest.raises(ConfigError, match="Unknown question source 'clozes'.*did you mean 'cloze'"):
        FinetuneConfig(source_weights={"clozes": 1})
    with pytest.raises(ConfigError, match="Every source weight is 0"):
        FinetuneConfig(source_weights={"cloze": 0, "heading": 0})
    with pytest.raises(ConfigError, match="outside 0..10"):
        FinetuneConfig(source_weights={"cloze": -1})
    with pytest.raises(ConfigError, match="No pair source is selected"):
        DocumentPairsConfig(headings=False, cloze=False)
    with pytest.raises(ConfigError, match="include_aligned needs a question set"):
        DocumentPairsConfig(include_aligned=True)
    cfg = FinetuneConfig(source_weights={"cloze": 0.5})
    assert FinetuneConfig.from_dict(cfg.to_dict()).source_weights == {"cloze": 0.5}


def test_a_heading_that_ends_its_chunk_points_at_the_next_chunk_where_its_section_is():
    """Issue 26, item 8: the heading's chunk held the heading and a few words of its section
    ('3.1 What is S? S is a very high level …'); the section's text is in the next chunk."""
    from core.documents.headings import markdown_headings, section_bodies
    from core.questions.structure import EVIDENCE_WORDS, heading_items
    from tests.support.documents import section_text

    before = section_text(10, n_sentences=6)
    body = section_text(11, n_sentences=14, first="Zorp is a very high level language for data.")
    text = f"{before}\n\n## What is Zorp?\n\n{body}"
    words = body.split()
    split_at = text.index(body) + len(" ".join(words[: EVIDENCE_WORDS + 5]))
    # The first chunk ends 30 words into the section; the next one holds the rest, overlapping.
    first = _chunk(text[:split_at], 0)
    second = _chunk(text[split_at - 60 :], 1)
    index = EvidenceIndex.of([first, second])
    headings = markdown_headings(text)
    texts = {first.id: first.text, second.id: second.text}
    (item,) = heading_items("zorp.md", text, headings, section_bodies(text, headings), index, texts)
    assert item.status == "accepted", item.meta
    assert item.gold_ids == [second.id, first.id]  # the section's text first, the quote's chunk too
    assert item.chunk_id == second.id and item.positive is None  # the next chunk has no heading
    assert item.evidence == " ".join(words[:EVIDENCE_WORDS])


def test_a_heading_whose_section_fills_its_chunk_keeps_that_chunk_alone():
    from core.documents.headings import markdown_headings, section_bodies
    from core.questions.structure import heading_items
    from tests.support.documents import section_text

    body = section_text(12, n_sentences=14)
    text = f"## Choosing a mirror\n\n{body}"
    only = _chunk(text, 0)
    headings = markdown_headings(text)
    (item,) = heading_items(
        "m.md",
        text,
        headings,
        section_bodies(text, headings),
        EvidenceIndex.of([only]),
        {only.id: only.text},
    )
    assert item.gold_ids == [only.id] and "Choosing a mirror" not in item.positive


def test_an_index_by_another_name_and_a_cross_reference_make_no_pair():
    """Seen on the R manuals: 'Function and variable index' became a test question whose gold
    chunk is a list of page numbers, and 'See Chapter 9 [R Bugs], page 45, for more details.' a
    cloze query; neither names a topic. Headings that merely contain the word stay."""
    from core.documents.headings import Heading
    from core.questions.structure import heading_rejection

    body = "A section body long enough to be a section of its own. " * 5

    def rejected(title: str):
        heading = Heading(title=title, level=1, page=3, origin="font", start=0, end=len(title))
        found = heading_rejection(title, heading, body)
        return found.reason if found else None

    for title in ("Function and variable index", "Concept Index", "Index of functions"):
        assert rejected(title) == "generic_heading", title
    for title in ("Creating an index", "Indexing data frames", "R index of packages"):
        assert rejected(title) is None, title
    reference = "See Chapter 9 [R Bugs], page 45, for more details."
    statement = "See the examples below for the most common ways to import a file."
    assert cloze_sentences(f"{reference} {statement} {SENTENCE}") == [statement, SENTENCE]
