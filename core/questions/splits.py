"""Train/validation/test splits by chunk, never by question.

Splitting by question would put two questions about one chunk on both sides, so the model would
be tested on a chunk it was trained on. Here every chunk gets one split and all its questions
follow it. Chunks are dealt in groups: the gold and linked chunks of one question (chunks overlap,
so its evidence can sit in two), and the chunks of questions with the same text, always share a
split. `core.questions.leakage.check_no_leak` verifies the result for any dataset, generated or imported.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import ConfigError, InputError
from core.questions.dataset import QAItem
from core.questions.leakage import check_no_leak
from core.text import normalize_question

__all__ = [
    "SPLITS",
    "SplitConfig",
    "assign_splits",
    "check_no_leak",
    "chunk_groups",
    "normalize_split",
    "split_chunks",
    "split_counts",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


@dataclass(frozen=True)
class SplitConfig:
    """Shares of chunks per split (they must add up to 1) and the seed of the shuffle."""

    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15
    seed: int = 42

    def __post_init__(self) -> None:
        shares = (self.train, self.validation, self.test)
        if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
            raise ConfigError(
                "Split shares must be non-negative and add up to 1.",
                found=f"train {self.train}, validation {self.validation}, test {self.test}",
                fix="e.g. 0.7 / 0.15 / 0.15",
            )

    def shares(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def normalize_split(value: object) -> str | None:
    """Map 'val', 'dev', 'Train', … to train/validation/test; None for blanks.

    Raises InputError for a value that is no known split name."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in {"", "nan", "none", "null"}:
        return None
    if text not in _SPLIT_ALIASES:
        raise InputError(
            f"{value!r} is not a split name.", fix="use train, validation (val, dev) or test"
        )
    return _SPLIT_ALIASES[text]


def _targets(n: int, config: SplitConfig) -> dict[str, int]:
    """How many of n chunks each split gets: largest remainders, and at least one chunk for
    every split with a positive share when there are enough chunks."""
    shares = config.shares()
    raw = {s: shares[s] * n for s in SPLITS}
    counts = {s: int(raw[s]) for s in SPLITS}
    for s in sorted(SPLITS, key=lambda s: raw[s] - counts[s], reverse=True):
        if sum(counts.values()) >= n:
            break
        counts[s] += 1
    positive = [s for s in SPLITS if shares[s] > 0]
    if n >= len(positive):
        for s in positive:
            if counts[s] == 0:
                donor = max(SPLITS, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    return counts


def split_chunks(
    chunk_ids: Sequence[str],
    config: SplitConfig | None = None,
    existing: dict[str, str] | None = None,
    groups: Sequence[Sequence[str]] = (),
) -> dict[str, str]:
    """chunk id -> split. Chunks in `existing` keep their split (and so does every chunk grouped
    with them); the other groups are shuffled with the seed and dealt so each split's total comes
    as close to its share as possible. `groups` lists chunks that must share a split; chunks in
    no group are groups of one."""
    config = config or SplitConfig()
    existing = existing or {}
    unique = sorted(set(chunk_ids))
    members = _merge_groups(unique, groups)
    assigned: dict[str, str] = {}
    fresh: list[list[str]] = []
    for group in members:
        known = sorted({existing[c] for c in group if c in existing})
        if len(known) > 1:
            raise InputError(
                "Chunks that must share a split already sit in different splits.",
                found=f"chunks {', '.join(group[:5])} in {' + '.join(known)}",
                fix="re-split the question set instead of keeping its splits",
            )
        if known:
            assigned.update(dict.fromkeys(group, known[0]))
        else:
            fresh.append(group)
    random.Random(config.seed).shuffle(fresh)
    targets = _targets(len(unique), config)
    have = Counter(assigned.values())
    need = {s: max(0, targets[s] - have[s]) for s in SPLITS}
    position = 0
    for split in ("test", "validation", "train"):
        taken = 0
        while position < len(fresh) and taken < need[split]:
            group = fresh[position]
            assigned.update(dict.fromkeys(group, split))
            taken += len(group)
            position += 1
    for group in fresh[position:]:  # rounding left-overs go to the largest share
        assigned.update(dict.fromkeys(group, max(SPLITS, key=lambda s: config.shares()[s])))
    return assigned


def _merge_groups(chunk_ids: Sequence[str], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """Connected components of chunks (union-find), each sorted, in order of their first chunk.
    Chunks of a group that are not in `chunk_ids` are left out."""
    parent = {c: c for c in chunk_ids}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for group in groups:
        present = [c for c in group if c in parent]
        for other in present[1:]:
            a, b = find(present[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    components: dict[str, list[str]] = defaultdict(list)
    for c in chunk_ids:
        components[find(c)].append(c)
    return sorted((sorted(m) for m in components.values()), key=lambda m: m[0])


def chunk_groups(items: Sequence[QAItem]) -> list[list[str]]:
    """Chunks that must share a split: each accepted question's gold and linked chunks, and the
    chunks of accepted questions with the same text (its duplicate key)."""
    groups: list[list[str]] = []
    by_question: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.status != "accepted":
            continue
        groups.append(item.split_chunk_ids)
        key = normalize_question(item.question)
        if key:
            by_question[key].extend(item.split_chunk_ids)
    groups.extend(g for g in by_question.values() if len(g) > 1)
    return groups


def assign_splits(
    items: Sequence[QAItem],
    config: SplitConfig | None = None,
    *,
    keep_existing: bool = False,
) -> list[QAItem]:
    """Give every item the split of its chunks. Only chunks of accepted questions are dealt, in
    groups (chunk_groups); a rejected item gets its chunk's split when the chunk has one, else
    None.

    With `keep_existing`, chunks whose items already carry a split keep it (review edits do not
    move chunks between splits)."""
    existing: dict[str, str] = {}
    if keep_existing:
        check_no_leak(items)
        for item in items:
            if item.split is not None:
                existing.update(dict.fromkeys(item.split_chunk_ids, item.split))
    accepted_chunks = [c for i in items if i.status == "accepted" for c in i.split_chunk_ids]
    mapping = split_chunks(accepted_chunks, config, existing, chunk_groups(items))
    return [i.model_copy(update={"split": mapping.get(i.chunk_id)}) for i in items]


def split_counts(items: Sequence[QAItem]) -> dict[str, dict[str, int]]:
    """Per split: accepted questions and distinct chunks."""
    out: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, None):
        chosen = [i for i in items if i.status == "accepted" and i.split == split]
        if chosen or split is not None:
            out[split or "none"] = {
                "questions": len(chosen),
                "chunks": len({i.chunk_id for i in chosen}),
            }
    return out
