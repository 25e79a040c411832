"""Splits are by chunk, seeded, and the leak check fails loudly on any leaking dataset."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, InputError
from core.questions.dataset import QAItem
from core.questions.splits import (
    SplitConfig,
    assign_splits,
    check_no_leak,
    dealing_of,
    normalize_split,
    question_clusters,
    split_chunks,
    split_counts,
)


def items_for(n_chunks: int, per_chunk: int = 2) -> list[QAItem]:
    return [
        QAItem(id=f"q{c}-{k}", question=f"Question {k} about chunk {c}?", chunk_id=f"c{c:03d}")
        for c in range(n_chunks)
        for k in range(per_chunk)
    ]


def chunk_splits(items: list[QAItem]) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for i in items:
        out.setdefault(i.chunk_id, set()).add(i.split)
    return out


def test_every_question_of_a_chunk_shares_its_split():
    items = assign_splits(items_for(20, per_chunk=3))
    assert all(len(s) == 1 for s in chunk_splits(items).values())
    per_split = Counter(next(iter(s)) for s in chunk_splits(items).values())
    assert per_split == {"train": 14, "validation": 3, "test": 3}
    check_no_leak(items)


def test_seeded_and_deterministic():
    a = assign_splits(items_for(30), SplitConfig(seed=1))
    b = assign_splits(items_for(30), SplitConfig(seed=1))
    c = assign_splits(items_for(30), SplitConfig(seed=2))
    assert [i.split for i in a] == [i.split for i in b]
    assert [i.split for i in a] != [i.split for i in c]


def test_input_order_does_not_change_the_split():
    items = items_for(25)
    forward = {i.id: i.split for i in assign_splits(items)}
    backward = {i.id: i.split for i in assign_splits(list(reversed(items)))}
    assert forward == backward


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, {"train": 1}),
        (3, {"train": 1, "validation": 1, "test": 1}),
        (10, {"train": 7, "validation": 2, "test": 1}),
    ],
)
def test_small_sets_still_get_every_split(n, expected):
    mapping = split_chunks([f"c{i}" for i in range(n)])
    counts = Counter(mapping.values())
    assert sum(counts.values()) == n
    if n >= 3:
        assert set(counts) == {"train", "validation", "test"}
    assert counts["train"] == expected["train"]


def test_rejected_items_follow_their_chunk_or_get_none():
    items = [
        QAItem(id="a", question="Good question about c1?", chunk_id="c1"),
        QAItem(
            id="b", question="QUESTION #1", chunk_id="c1", status="rejected", reason="template_echo"
        ),
        QAItem(id="c", question="...", chunk_id="c9", status="rejected", reason="placeholder"),
    ]
    out = assign_splits(items)
    assert out[1].split == out[0].split is not None
    assert out[2].split is None


def test_keep_existing_moves_no_chunk():
    items = assign_splits(items_for(10))
    before = {i.chunk_id: i.split for i in items}
    grown = items + [QAItem(id="new", question="A brand new question here?", chunk_id="c999")]
    after = assign_splits(grown, keep_existing=True)
    assert {i.chunk_id: i.split for i in after if i.chunk_id in before} == before
    assert after[-1].split in {"train", "validation", "test"}


def test_leak_by_chunk_fails_loudly_and_names_it():
    items = [
        QAItem(id="a", question="How is it installed?", chunk_id="c_leaky", split="train"),
        QAItem(id="b", question="Why is it installed?", chunk_id="c_leaky", split="test"),
        QAItem(id="c", question="What is it?", chunk_id="c_fine", split="train"),
    ]
    with pytest.raises(InputError) as info:
        check_no_leak(items)
    message = str(info.value)
    assert "leaks between splits" in message
    assert "c_leaky in test+train" in message
    assert "c_fine" not in message
    assert "re-split by chunk" in message


def test_leak_by_question_text_fails_loudly():
    items = [
        QAItem(id="a", question="How do I install dpkg?", chunk_id="c1", split="train"),
        QAItem(id="b", question="how do i install DPKG ?", chunk_id="c2", split="test"),
    ]
    with pytest.raises(
        InputError, match=r"1 question\(s\) in more than one split \('How do I install dpkg\?'"
    ):
        check_no_leak(items)


def test_items_without_split_are_not_a_leak():
    check_no_leak(
        [
            QAItem(id="a", question="How do I install it?", chunk_id="c1", split="train"),
            QAItem(id="b", question="Why do I install it?", chunk_id="c1", split=None),
        ]
    )


def test_keep_existing_refuses_a_leaking_input():
    items = [
        QAItem(id="a", question="How is it installed?", chunk_id="c1", split="train"),
        QAItem(id="b", question="Why is it installed?", chunk_id="c1", split="validation"),
    ]
    with pytest.raises(InputError, match="c1 in train\\+validation"):
        assign_splits(items, keep_existing=True)


def test_config_must_add_up():
    with pytest.raises(ConfigError, match="add up to 1"):
        SplitConfig(train=0.8, validation=0.15, test=0.15)
    assert (
        SplitConfig.from_dict({"train": 0.8, "validation": 0.1, "test": 0.1, "x": 1}).train == 0.8
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("train", "train"),
        ("VAL", "validation"),
        ("dev", "validation"),
        (" Test ", "test"),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_split_names_are_normalised(raw, expected):
    assert normalize_split(raw) == expected


def test_unknown_split_name_is_refused():
    with pytest.raises(InputError, match="'holdout' is not a split name"):
        normalize_split("holdout")


def test_split_counts():
    items = assign_splits(items_for(20, per_chunk=2))
    counts = split_counts(items)
    assert counts["train"] == {"questions": 28, "chunks": 14}
    assert sum(v["questions"] for v in counts.values()) == 40


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 15), st.booleans()), min_size=1, max_size=60),
    seed=st.integers(0, 1000),
)
def test_any_dataset_split_by_chunk_never_leaks(pairs, seed):
    items = [
        QAItem(
            id=f"q{n}",
            question=f"Question number {n} about chunk {c}?",
            chunk_id=f"c{c}",
            status="accepted" if ok else "rejected",
        )
        for n, (c, ok) in enumerate(pairs)
    ]
    out = assign_splits(items, SplitConfig(seed=seed))
    check_no_leak(out)
    for chunk_id, splits in chunk_splits(out).items():
        assert len(splits) == 1, chunk_id
    accepted = [i for i in out if i.status == "accepted"]
    assert all(i.split is not None for i in accepted)


def grouped_items(sizes: list[int]) -> list[QAItem]:
    """One question per group; a group of k chunks is one question whose evidence links k
    chunks (its gold chunk and k - 1 linked ones)."""
    items, c = [], 0
    for g, size in enumerate(sizes):
        ids = [f"c{c + j:05d}" for j in range(size)]
        c += size
        items.append(
            QAItem(id=f"g{g}", question=f"Question {g}?", chunk_id=ids[0], linked_chunk_ids=ids[1:])
        )
    return items


@settings(max_examples=80, deadline=None)
@given(
    singles=st.integers(150, 900),
    pairs=st.integers(0, 100),
    bigs=st.lists(st.integers(4, 80), max_size=8),
    seed=st.integers(0, 10_000),
)
def test_splits_keep_their_shares_within_two_points(singles, pairs, bigs, seed):
    """Whenever no group is larger than the smallest share, each split's share of the dealt
    chunks ends within 2 points of what was asked (on main a big group dealt last into the test
    split could double it: 0.45 / 0.15 / 0.40 on the R manuals)."""
    sizes = [1] * singles + [2] * pairs + bigs
    total = sum(sizes)
    assume(max(sizes) <= 0.15 * total)
    items = assign_splits(grouped_items(sizes), SplitConfig(seed=seed))
    dealing = dealing_of(items, SplitConfig(seed=seed))
    assert dealing.n_chunks == total
    assert dealing.within(0.02), dealing.rows()
    assert dealing.problems() == [] and dealing.too_large == []
    check_no_leak(items)


def test_a_group_too_large_to_place_is_named_with_the_fix():
    """One group holds a quarter of the chunks (the R manuals' boilerplate chained 1,871 chunks):
    no split can take it at its share, and the dealing says so, with an example and the fix."""
    items = grouped_items([1] * 150 + [50])
    out = assign_splits(items, SplitConfig(seed=3))
    dealing = dealing_of(out, SplitConfig(seed=3))
    (group,) = dealing.too_large
    assert group["chunks"] == 50 and group["questions"] == 1
    assert group["examples"] == ["Question 150?"]
    (problem, *rest) = dealing.problems()
    assert problem.startswith("One group of 50 chunks (25% of the 200 dealt, 1 questions)")
    assert "not_specific" in problem and "split column" in problem
    rows = {r["split"]: r for r in dealing.rows()}
    assert rows["train"]["asked"] == "70%" and rows["test"]["asked"] == "15%"
    # the smaller groups still fill the test and validation splits to their shares
    assert dealing.chunks["test"] == 30 and dealing.chunks["validation"] == 30


def test_question_clusters_join_questions_that_share_a_chunk_or_a_text():
    items = [
        QAItem(id="a", question="What is A?", chunk_id="c1"),
        QAItem(id="b", question="What else is in c1?", chunk_id="c1"),
        QAItem(id="c", question="What is C?", chunk_id="c2", linked_chunk_ids=["c3"]),
        QAItem(id="d", question="What is D?", chunk_id="c3"),
        QAItem(id="e", question="What is A?", chunk_id="c9"),  # the same text as a
        QAItem(id="f", question="Alone?", chunk_id="c7"),
        QAItem(id="g", question="Near f?", chunk_id="c8", meta={"near_duplicates": ["f"]}),
        QAItem(id="h", question="On its own?", chunk_id="c5"),
    ]
    assert question_clusters(items) == [0, 0, 1, 1, 0, 2, 2, 3]
    assert question_clusters(items[7:]) == [0]
