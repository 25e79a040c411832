"""Train/validation/test splits by chunk, never by question, and the check that proves it.

Splitting by question would put two questions about one chunk on both sides, so the model would
be tested on a chunk it was trained on. Here every chunk gets one split and all its questions
follow it; `check_no_leak` verifies that for any dataset, generated or imported.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.dataset import QAItem
from core.errors import ConfigError, InputError
from core.gate import normalize_question

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
) -> dict[str, str]:
    """chunk id -> split. Chunks in `existing` keep their split; the others are shuffled with
    the seed and dealt so each split's total comes as close to its share as possible."""
    config = config or SplitConfig()
    existing = existing or {}
    unique = sorted(set(chunk_ids))
    assigned = {c: existing[c] for c in unique if c in existing}
    fresh = [c for c in unique if c not in existing]
    random.Random(config.seed).shuffle(fresh)
    targets = _targets(len(unique), config)
    have = Counter(assigned.values())
    need = {s: max(0, targets[s] - have[s]) for s in SPLITS}
    position = 0
    for split in ("test", "validation", "train"):
        take = fresh[position : position + need[split]]
        assigned.update(dict.fromkeys(take, split))
        position += len(take)
    for chunk_id in fresh[position:]:  # rounding left-overs go to the largest share
        assigned[chunk_id] = max(SPLITS, key=lambda s: config.shares()[s])
    return assigned


def assign_splits(
    items: Sequence[QAItem],
    config: SplitConfig | None = None,
    *,
    keep_existing: bool = False,
) -> list[QAItem]:
    """Give every item the split of its chunk. Only chunks with an accepted question are dealt;
    a rejected item gets its chunk's split when the chunk has one, else None.

    With `keep_existing`, chunks whose items already carry a split keep it (review edits do not
    move chunks between splits)."""
    existing: dict[str, str] = {}
    if keep_existing:
        check_no_leak(items)
        existing = {i.chunk_id: i.split for i in items if i.split is not None}
    accepted_chunks = [i.chunk_id for i in items if i.status == "accepted"]
    mapping = split_chunks(accepted_chunks, config, existing)
    return [i.model_copy(update={"split": mapping.get(i.chunk_id)}) for i in items]


def check_no_leak(items: Sequence[QAItem]) -> None:
    """Raise InputError when a chunk, or the same question text, sits in two splits.

    Items without a split are ignored. The message names the leaking chunks and questions."""
    by_chunk: dict[str, set[str]] = defaultdict(set)
    by_question: dict[str, set[str]] = defaultdict(set)
    examples: dict[str, str] = {}
    for item in items:
        if item.split is None:
            continue
        by_chunk[item.chunk_id].add(item.split)
        key = normalize_question(item.question)
        if key:
            by_question[key].add(item.split)
            examples.setdefault(key, item.question)
    chunk_leaks = {c: s for c, s in by_chunk.items() if len(s) > 1}
    question_leaks = {q: s for q, s in by_question.items() if len(s) > 1}
    if not chunk_leaks and not question_leaks:
        return
    parts = []
    if chunk_leaks:
        named = "; ".join(
            f"{c} in {'+'.join(sorted(s))}" for c, s in sorted(chunk_leaks.items())[:5]
        )
        more = f" and {len(chunk_leaks) - 5} more" if len(chunk_leaks) > 5 else ""
        parts.append(f"{len(chunk_leaks)} chunk(s) in more than one split ({named}{more})")
    if question_leaks:
        named = "; ".join(
            f"{examples[q]!r} in {'+'.join(sorted(s))}" for q, s in list(question_leaks.items())[:5]
        )
        more = f" and {len(question_leaks) - 5} more" if len(question_leaks) > 5 else ""
        parts.append(f"{len(question_leaks)} question(s) in more than one split ({named}{more})")
    raise InputError(
        "The dataset leaks between splits: test questions would be scored on chunks the model "
        "was trained on.",
        found="; ".join(parts),
        fix="re-split by chunk (drop the split column on import, or re-save the qa run)",
    )


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
