"""Gold chunks that mean something: evidence or heading text found all over the corpus is not
specific, and the item is rejected with the count (core.questions.specificity)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.documents.corpus import Chunk
from core.questions.dataset import QAItem
from core.questions.leakage import EvidenceIndex
from core.questions.specificity import (
    MAX_GOLD_ELSEWHERE,
    reject_unspecific,
    specificity_problem,
)

BOILER = "This function is deprecated and will be removed in a future release of the package."


def corpus(n_repeats: int) -> list[Chunk]:
    """Document 'ref' with BOILER in `n_repeats` chunks far apart, plus unique chunks."""
    chunks = []
    for i in range(40):
        text = f"Section {i} describes the unique option number {i} in detail."
        if i % 5 == 0 and i // 5 < n_repeats:
            text += " " + BOILER
        chunks.append(
            Chunk(id=f"r{i:02d}", text=text, source="ref.pdf", doc_id="ref", chunk_index=i)
        )
    return chunks


def matched(chunks: list[Chunk], quote: str, origin: str = "cloze", question: str = "") -> QAItem:
    index = EvidenceIndex.of(chunks)
    found = index.match(quote)
    return QAItem(
        id="x",
        question=question or quote,
        chunk_id=found.gold_ids[0],
        gold_chunk_ids=found.gold_ids,
        linked_chunk_ids=found.linked_ids,
        evidence=quote,
        origin=origin,  # type: ignore[arg-type]
    )


def test_boilerplate_evidence_in_many_places_is_not_specific():
    chunks = corpus(6)
    item = matched(chunks, BOILER)
    assert len(item.gold_ids) == 6
    problem = specificity_problem(item, EvidenceIndex.of(chunks))
    assert problem == (
        "its evidence is in 5 chunks beyond its own and their overlapping neighbours (at most 2)"
    )
    (rejected,) = reject_unspecific([item], EvidenceIndex.of(chunks))
    assert rejected.status == "rejected" and rejected.reason == "not_specific"
    assert rejected.meta["reason_text"] == problem


def test_evidence_in_its_chunk_and_an_overlapping_neighbour_is_specific():
    chunks = corpus(0)
    chunks[11] = Chunk(
        id="r11",
        text=chunks[11].text + " " + BOILER,
        source="ref.pdf",
        doc_id="ref",
        chunk_index=11,
    )
    chunks[12] = Chunk(
        id="r12",
        text=BOILER + " " + chunks[12].text,
        source="ref.pdf",
        doc_id="ref",
        chunk_index=12,
    )
    item = matched(chunks, BOILER)
    assert item.gold_ids == ["r11", "r12"]
    assert specificity_problem(item, EvidenceIndex.of(chunks)) is None


def test_a_heading_named_in_many_chunks_is_not_specific():
    chunks = corpus(0)
    for i in (3, 9, 15, 21, 27, 33):
        chunks[i] = Chunk(
            id=chunks[i].id,
            text=chunks[i].text + " See grid.refresh.",
            source="ref.pdf",
            doc_id="ref",
            chunk_index=i,
        )
    quote = "Section 30 describes the unique option number 30 in detail."
    item = matched(chunks, quote, origin="heading", question="grid.refresh")
    problem = specificity_problem(item, EvidenceIndex.of(chunks))
    assert problem == (
        "'grid.refresh' is found in 6 chunks beyond its own and their overlapping neighbours "
        "(at most 5)"
    )
    assert (
        specificity_problem(
            item.model_copy(update={"question": "option 30"}), EvidenceIndex.of(chunks)
        )
        is None
    )


@settings(max_examples=40, deadline=None)
@given(repeats=st.integers(0, 8))
def test_no_accepted_item_has_more_than_five_gold_chunks(repeats):
    chunks = corpus(repeats)
    (out,) = reject_unspecific(
        [
            matched(chunks, BOILER)
            if repeats
            else matched(chunks, "Section 7 describes the unique option number 7 in detail.")
        ],
        EvidenceIndex.of(chunks),
    )
    if out.status == "accepted":
        assert len(out.gold_ids) <= 3 + MAX_GOLD_ELSEWHERE
    else:
        assert repeats > 1 + MAX_GOLD_ELSEWHERE
