"""Gold chunks that mean something: an item whose evidence (or, for a heading, its own text) is
found all over the corpus is not specific, and is rejected before it can make most of the
corpus relevant or join half the chunks into one split group.

How it works:
1. A quote sits in its own chunk and, since chunks overlap, maybe in a neighbour (the chunk
   before or after it in the same document): those are one place. Every other chunk holding it
   is somewhere else.
2. An accepted item is rejected as `not_specific` (the detail gives the count) when
   - its evidence is whole in more than MAX_GOLD_ELSEWHERE chunks elsewhere (so no accepted
     item has more than 3 + MAX_GOLD_ELSEWHERE = 5 gold chunks),
   - its evidence shares a LEAK_NGRAM-word run with more than MAX_LINKED_ELSEWHERE chunks
     elsewhere (repeated boilerplate that would chain chunks into one group), or
   - it is a heading whose text is in more than MAX_TEXT_ELSEWHERE chunks elsewhere
     (`grid.refresh` named in 17 chunks: as a query it points at all of them, not its section).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.questions.dataset import QAItem
from core.questions.leakage import LEAK_NGRAM, EvidenceIndex

MAX_GOLD_ELSEWHERE = 2
MAX_LINKED_ELSEWHERE = 5
MAX_TEXT_ELSEWHERE = 5
REASON = "not_specific"


def specificity_problem(item: QAItem, index: EvidenceIndex) -> str | None:
    """Why `item` is not specific (the counts in words), or None when it is."""
    own = item.chunk_id
    gold_far = index.elsewhere(own, item.gold_ids)
    if len(gold_far) > MAX_GOLD_ELSEWHERE:
        return (
            f"its evidence is in {len(gold_far)} chunks beyond its own and their overlapping "
            f"neighbours (at most {MAX_GOLD_ELSEWHERE})"
        )
    linked_far = index.elsewhere(own, item.split_chunk_ids)
    if len(linked_far) > MAX_LINKED_ELSEWHERE:
        return (
            f"its evidence shares {LEAK_NGRAM}-word runs with {len(linked_far)} chunks beyond its "
            f"own and their overlapping neighbours (at most {MAX_LINKED_ELSEWHERE})"
        )
    if item.origin == "heading":
        text_far = index.elsewhere(own, index.find_phrase(item.question))
        if len(text_far) > MAX_TEXT_ELSEWHERE:
            return (
                f"{item.question!r} is found in {len(text_far)} chunks beyond its own and their "
                f"overlapping neighbours (at most {MAX_TEXT_ELSEWHERE})"
            )
    return None


def reject_unspecific(items: Sequence[QAItem], index: EvidenceIndex) -> list[QAItem]:
    """Every accepted item that is not specific rejected with its reason (`not_specific`) and
    the counts in `meta["reason_text"]`; the others unchanged."""
    out = []
    for item in items:
        problem = specificity_problem(item, index) if item.status == "accepted" else None
        if problem is None:
            out.append(item)
            continue
        meta = {**item.meta, "reason_text": problem}
        out.append(item.model_copy(update={"status": "rejected", "reason": REASON, "meta": meta}))
    return out
