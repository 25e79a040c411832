"""Where questions come from (a person, an LLM, a document heading, a cloze sentence), how a
fine-tune weighs them, and how much a model's training overlaps a question set it is evaluated on.

One home for each: the fine-tune draws its pairs with `training_items`, and the evaluation
recomputes the very same pairs with it to count the overlap, so the two never disagree.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from core.text import normalize_question

if TYPE_CHECKING:
    from core.questions.dataset import QAItem

Source = Literal["llm", "human", "heading", "cloze"]
SOURCES: tuple[Source, ...] = ("human", "llm", "heading", "cloze")
SOURCE_OF_ORIGIN: dict[str, Source] = {
    "generated": "llm",
    "manual": "human",
    "imported": "human",
    "sample": "human",
    "heading": "heading",
    "cloze": "cloze",
}


STRUCTURE_ONLY = (
    "Every pair of this set comes from the documents' structure, and so does its validation "
    "split: headings and sentences are easy, lexical queries, so the validation curves flatter "
    "the model. Judge it on the Retrieval eval page with questions people wrote."
)


def structure_only_caution(sources: Mapping[str, Mapping[str, int]]) -> str:
    """STRUCTURE_ONLY when every training pair used comes from headings or cloze sentences
    (the Fine-tune page and the model card say it alike), else ''."""
    used = {s for s, counts in sources.items() if counts.get("used", 0)} or set(sources)
    return STRUCTURE_ONLY if used and used <= {"heading", "cloze"} else ""


def sources_text(sources: Mapping[str, Mapping[str, int]]) -> str:
    """'heading 152 · cloze 80 of 161 training pairs' from {source: {"available", "used"}}; a
    source weighted 0 reads 'cloze left out'. '' when nothing is known (runs made before)."""
    parts = []
    for source in sorted(sources, key=lambda s: SOURCES.index(s) if s in SOURCES else 99):
        used, available = sources[source].get("used", 0), sources[source].get("available", 0)
        if not used:
            parts.append(f"{source} left out")
        elif used == available:
            parts.append(f"{source} {used:,}")
        else:
            parts.append(f"{source} {used:,} of {available:,}")
    return f"{' · '.join(parts)} training pairs" if parts else ""


def weigh_by_source(
    items: Sequence[QAItem], weights: Mapping[str, float], seed: int = 42
) -> list[QAItem]:
    """The training items after the source weights: a weight w keeps round(w x n) of a source's
    n items, whole copies first and the rest drawn with the seed (0 leaves the source out; a
    source without a weight keeps weight 1). Corpus order is kept within each copy."""
    if not weights:
        return list(items)
    rng = random.Random(seed)
    out: list[QAItem] = []
    by_source: dict[str, list[QAItem]] = {}
    for item in items:
        by_source.setdefault(item.source, []).append(item)
    for source, group in by_source.items():
        wanted = round(weights.get(source, 1.0) * len(group))
        copies, rest = divmod(wanted, len(group))
        out.extend(group * copies)
        out.extend(group[i] for i in sorted(rng.sample(range(len(group)), rest)))
    return out


def training_items(
    train: Sequence[QAItem],
    known_chunks: Collection[str],
    weights: Mapping[str, float],
    seed: int,
) -> tuple[list[QAItem], list[QAItem], dict[str, dict[str, int]]]:
    """The distinct train items on known chunks, those the weights keep (what a fine-tune trains
    on), and per source how many were available and used."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for item in train:
        if item.chunk_id not in known_chunks or (item.question, item.chunk_id) in seen:
            continue
        seen.add((item.question, item.chunk_id))
        unique.append(item)
    used = weigh_by_source(unique, weights, seed)
    available, counted = Counter(i.source for i in unique), Counter(i.source for i in used)
    return unique, used, {s: {"available": n, "used": counted[s]} for s, n in available.items()}


@dataclass(frozen=True)
class TrainingOverlap:
    """How much of an evaluated question set a model saw in training."""

    n_queries: int
    same_questions: int  # evaluated questions whose text was a training query
    trained_chunks: int  # evaluated questions with a gold chunk that was a training positive
    seen_ids: tuple[str, ...] = ()  # the ids of those questions (either way)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seen_ids": list(self.seen_ids)}


def training_overlap(used: Sequence[QAItem], evaluated: Sequence[QAItem]) -> TrainingOverlap:
    """Count the evaluated questions a model trained on `used` has seen: by text (the duplicate
    key, core.text) and by gold chunk (a training positive)."""
    keys = {normalize_question(i.question) for i in used}
    positives = {i.chunk_id for i in used}
    same = [normalize_question(i.question) in keys for i in evaluated]
    chunks = [bool(positives & set(i.gold_ids)) for i in evaluated]
    return TrainingOverlap(
        n_queries=len(evaluated),
        same_questions=sum(same),
        trained_chunks=sum(chunks),
        seen_ids=tuple(i.id for i, a, b in zip(evaluated, same, chunks, strict=True) if a or b),
    )
