"""Gold chunks from evidence, splits that keep them together, and the text leak check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.documents.corpus import Chunk
from core.errors import InputError
from core.questions.dataset import QAItem
from core.questions.leakage import (
    LEAK_NGRAM,
    EvidenceIndex,
    check_no_leak,
    evidence_too_short,
    find_text_leaks,
    match_evidence,
)
from core.questions.splits import SplitConfig, assign_splits
from core.text import normalize_question

FIRST = "Stable releases get security updates. The archives are updated twice every day by"
SECOND = "The archives are updated twice every day by the mirror network of volunteers."
THIRD = "The dpkg program installs a downloaded package file onto the running system."
QUOTE = "The archives are updated twice every day"  # in the overlap of FIRST and SECOND


def chunks() -> list[Chunk]:
    return [Chunk(id=f"c{i}", text=t, source="s") for i, t in enumerate((FIRST, SECOND, THIRD))]


def test_a_quote_in_two_overlapping_chunks_makes_both_gold():
    found = match_evidence(QUOTE, chunks())
    assert found.gold_ids == ["c0", "c1"] and found.how == "contained"
    assert found.linked_ids == ["c0", "c1"]


def test_linked_chunks_share_a_long_run_of_words_without_holding_the_whole_quote():
    quote = "The archives are updated twice every day by the mirror network"
    found = match_evidence(quote, chunks())
    assert found.gold_ids == ["c1"]  # only SECOND holds it whole
    assert found.linked_ids == ["c0", "c1"]  # FIRST ends with its first 8 words


def test_short_runs_of_words_do_not_link():
    found = match_evidence("installs a downloaded package file onto the running system", chunks())
    assert found.gold_ids == found.linked_ids == ["c2"]


def item(iid: str, chunk_id: str, split=None, evidence=None, gold=(), linked=(), q=None):
    return QAItem(
        id=iid,
        question=q or f"Question {iid}?",
        chunk_id=chunk_id,
        gold_chunk_ids=list(gold),
        linked_chunk_ids=list(linked),
        evidence=evidence,
        split=split,
    )


def test_text_leak_is_found_when_ids_differ():
    """The sample corpus' s126 case: a test question's evidence also sits in a train chunk."""
    texts = {c.id: c.text for c in chunks()}
    items = [
        item("t", "c1", "test", evidence=QUOTE),  # gold chunk only: the id check sees no leak
        item("r", "c0", "train"),
    ]
    leaks = find_text_leaks(items, texts)
    assert [(x.item_id, x.chunk_id) for x in leaks] == [("t", "c0")]
    with pytest.raises(InputError) as info:
        check_no_leak(items, texts)
    assert f"share {LEAK_NGRAM} or more words with a training chunk" in str(info.value)
    assert "test question t in train chunk c0" in str(info.value)
    check_no_leak(items)  # without texts only ids and questions are compared


def test_a_chunk_shared_through_gold_ids_is_a_leak_by_id():
    items = [item("t", "c1", "test", gold=["c0"]), item("r", "c0", "train")]
    with pytest.raises(InputError, match="c0 in test\\+train"):
        check_no_leak(items)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40))
def test_splits_keep_every_question_with_all_its_chunks(seed, n):
    """Chunks linked by one question's evidence, and chunks of the same question text, are
    always dealt into one split, whatever the seed."""
    items = []
    for c in range(n):
        linked = [f"c{(c + 1) % n}"] if c % 3 == 0 else []
        items.append(item(f"q{c}", f"c{c}", linked=linked))
    items.append(item("dup-a", "c1", q="Is it the same question?"))
    items.append(item("dup-b", f"c{n - 1}", q="Is it the same question?"))
    out = assign_splits(items, SplitConfig(seed=seed))
    split_of = {}
    for it in out:
        for chunk_id in it.split_chunk_ids:
            split_of.setdefault(chunk_id, set()).add(it.split)
    assert all(len(s) == 1 for s in split_of.values())
    dups = {i.split for i in out if i.id.startswith("dup")}
    assert len(dups) == 1
    check_no_leak(out)


def test_gold_ids_without_evidence_are_the_chunk_only():
    assert item("g", "c5").gold_ids == ["c5"]
    assert item("g", "c5", gold=["c6"]).gold_ids == ["c5", "c6"]


def test_old_items_with_evidence_in_meta_still_read():
    old = QAItem.model_validate(
        {"id": "s1", "question": "Q?", "chunk_id": "c", "meta": {"evidence": "x y"}}
    )
    assert old.evidence == "x y"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Can I create my own functions in C++?", "Can I create my own functions in C?"),
        ("Is C# supported?", "Is C supported?"),
        ("Does it use 10% of the disk?", "Does it use 10 of the disk?"),
        ("Is .NET installed?", "Is NET installed?"),
        ("Is a < b here?", "Is a > b here?"),
    ],
)
def test_symbols_that_change_meaning_keep_questions_apart(a, b):
    assert normalize_question(a) != normalize_question(b)


def test_punctuation_that_does_not_change_meaning_is_still_dropped():
    assert normalize_question("How  OFTEN, are archives updated?") == normalize_question(
        "how often are archives updated"
    )


def test_a_quote_that_differs_only_in_case_and_punctuation_is_found():
    """Matching and the leak check share one key (core.text.match_key): on main `quote in text`
    missed this quote, so it lost its linked chunk while the leak check still saw the text."""
    found = match_evidence("THE ARCHIVES, are updated twice -- every day", chunks())
    assert found.gold_ids == ["c0", "c1"] and found.how == "contained"


def test_a_quote_under_five_words_links_no_chunk_and_is_never_a_leak():
    """'Debian' is in most of a Debian manual: it says nothing about where the answer is."""
    corpus = [
        Chunk(id=f"d{i}", text=f"Debian note {i}: {t}", source="s", doc_id="d", chunk_index=i)
        for i, t in enumerate((FIRST, SECOND, THIRD))
    ]
    assert match_evidence("Debian", corpus).how == "too_short"
    assert match_evidence("Debian", corpus).gold_ids == []
    assert evidence_too_short("the archives are updated") and not evidence_too_short(QUOTE)
    texts = {c.id: c.text for c in corpus}
    items = [item("t", "d1", "test", evidence="Debian"), item("r", "d0", "train")]
    assert find_text_leaks(items, texts) == []
    check_no_leak(items, texts)


def test_find_phrase_and_what_lies_elsewhere():
    corpus = [
        Chunk(id=f"k{i}", text=t, source="s", doc_id=doc, chunk_index=i)
        for i, (doc, t) in enumerate(
            [
                ("a", "grid.refresh redraws the page."),
                ("a", "Call grid.refresh after drawing."),
                ("a", "Nothing here."),
                ("a", "See grid.refresh for details."),
                ("b", "grid.refresh, again"),
                ("b", "grid refreshments are served"),
            ]
        )
    ]
    index = EvidenceIndex.of(corpus)
    assert index.find_phrase("grid.refresh") == ["k0", "k1", "k3", "k4"]
    # k1 neighbours k0 (one position away in document a); k3 is two away, k4 in document b
    assert index.elsewhere("k0", ["k0", "k1", "k3", "k4"]) == ["k3", "k4"]


def test_near_duplicate_questions_in_two_splits_are_a_leak_with_the_fix():
    items = [
        item("a", "c0", "train", q="How often are the archives updated?"),
        item("b", "c2", "test", q="How often do the archives get updated?"),
    ]
    check_no_leak(items)  # not tied: nothing to report
    tied = [
        items[0].model_copy(update={"meta": {"near_duplicates": ["b"]}}),
        items[1].model_copy(update={"meta": {"near_duplicates": ["a"]}}),
    ]
    with pytest.raises(InputError) as info:
        check_no_leak(tied, fix="drop the split column")
    assert "1 pair(s) of near-duplicate questions in different splits" in str(info.value)
    assert "drop the split column" in str(info.value)
    dealt = assign_splits([i.model_copy(update={"split": None}) for i in tied])
    assert dealt[0].split == dealt[1].split


def test_a_quote_over_a_chunk_boundary_finds_the_chunk_holding_most_of_it():
    """The quote's start ends one chunk and its end starts the next: the chunk sharing the
    longer part is its gold chunk (`overlap`), found by the chunks' edge words."""
    a = "Intro words here. The security team publishes advisories for every"
    b = "stable package within days of a fix, and the mirrors copy them."
    corpus = [
        Chunk(id="e0", text=a, source="s", doc_id="d", chunk_index=0),
        Chunk(id="e1", text=b, source="s", doc_id="d", chunk_index=1),
        Chunk(id="e2", text="Unrelated text about dpkg and apt.", source="s", doc_id="d"),
    ]
    quote = "The security team publishes advisories for every stable package"
    found = match_evidence(quote, corpus)
    assert found.how == "overlap" and found.gold_ids == ["e0"]
    tail = "for every stable package within days of a fix"
    assert match_evidence(tail, corpus).gold_ids == ["e1"]
    # a few shared words at an edge are chance: 17 characters, under the 20 a straddle needs
    assert match_evidence("mirrors copy them, then nothing else matches", corpus).how == "not_found"
