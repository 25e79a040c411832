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
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import ConfigError, InputError
from core.questions.dataset import QAItem
from core.questions.leakage import check_no_leak, near_duplicate_ids
from core.text import normalize_question

__all__ = [
    "SPLITS",
    "SplitConfig",
    "assign_splits",
    "check_no_leak",
    "chunk_groups",
    "dealing_of",
    "question_clusters",
    "normalize_split",
    "split_chunks",
    "split_counts",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SHARE_TOLERANCE = 0.02  # how far a split's share of chunks may end from what was asked
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
    with them); the other groups are shuffled with the seed and dealt, largest first, each to the
    split furthest below its share that can hold it (_best_split), so each split's share of chunks
    ends as close to what was asked as the groups allow. `groups` lists chunks that must share a
    split; chunks in no group are groups of one."""
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
    need = {s: targets[s] - have[s] for s in SPLITS}
    for group in _largest_first(fresh):
        split = _best_split(len(group), need, targets)
        assigned.update(dict.fromkeys(group, split))
        need[split] -= len(group)
    return assigned


def _largest_first(groups: list[list[str]]) -> list[list[str]]:
    """Groups by size, largest first; groups of one size keep their shuffled order."""
    return sorted(groups, key=len, reverse=True)


def _best_split(size: int, need: dict[str, int], targets: dict[str, int]) -> str:
    """Where a group of `size` chunks goes: among the splits it fits in (their remaining need is
    at least its size), the one furthest below its target relative to that target; when it fits
    nowhere, the one with the most room left, so it overshoots least. Dealing the largest groups
    first this way leaves the small ones to fill every split to its share."""
    open_splits = [s for s in SPLITS if targets[s] > 0] or list(SPLITS)
    fits = [s for s in open_splits if need[s] >= size]
    if fits:
        return max(fits, key=lambda s: (need[s] / max(1, targets[s]), need[s]))
    return max(open_splits, key=lambda s: need[s])


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
    """Chunks that must share a split: each accepted question's gold and linked chunks, the
    chunks of accepted questions with the same text (its duplicate key), and the chunks of
    near-duplicate questions."""
    groups: list[list[str]] = []
    by_question: dict[str, list[str]] = defaultdict(list)
    accepted = {i.id: i for i in items if i.status == "accepted"}
    for item in accepted.values():
        groups.append(item.split_chunk_ids)
        key = normalize_question(item.question)
        if key:
            by_question[key].extend(item.split_chunk_ids)
        for other in near_duplicate_ids(item):
            if other in accepted:
                groups.append([*item.split_chunk_ids, *accepted[other].split_chunk_ids])
    groups.extend(g for g in by_question.values() if len(g) > 1)
    return groups


def question_clusters(items: Sequence[QAItem]) -> list[int]:
    """Each item's cluster: items that share a gold or linked chunk, the same text or a
    near-duplicate tie are one cluster (the groups the split deals, restricted to these items),
    numbered 0, 1, … by first appearance. Questions of one cluster are not independent
    evidence: the statistics resample and flip whole clusters."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    position = {item.id: n for n, item in enumerate(items)}
    for n, item in enumerate(items):
        keys = [f"chunk:{c}" for c in item.split_chunk_ids]
        text = normalize_question(item.question)
        keys += [f"text:{text}"] if text else []
        for key in keys:
            if key in first:
                join(first[key], n)
            else:
                first[key] = n
        for other in near_duplicate_ids(item):
            if other in position:
                join(position[other], n)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(find(n), len(numbers)) for n in range(len(items))]


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


@dataclass(frozen=True)
class Dealing:
    """How the chunks were dealt: each split's chunks and questions, the shares asked, and the
    groups too large to place (larger than the smallest share)."""

    asked: dict[str, float]
    chunks: dict[str, int]
    questions: dict[str, int]
    largest_group: int = 0
    too_large: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        return sum(self.chunks.values())

    def achieved(self) -> dict[str, float]:
        total = self.n_chunks
        return {s: (self.chunks.get(s, 0) / total if total else 0.0) for s in SPLITS}

    def off_by(self) -> float:
        """The largest gap between a split's achieved and asked share of chunks."""
        achieved = self.achieved()
        return max(abs(achieved[s] - self.asked.get(s, 0.0)) for s in SPLITS)

    def within(self, tolerance: float = SHARE_TOLERANCE) -> bool:
        return self.off_by() <= tolerance + 1e-9

    def rows(self) -> list[dict[str, Any]]:
        """Per split: questions, chunks, the share asked and the share achieved (page, CLI)."""
        achieved = self.achieved()
        return [
            {
                "split": s,
                "questions": self.questions.get(s, 0),
                "chunks": self.chunks.get(s, 0),
                "asked": f"{self.asked.get(s, 0.0):.0%}",
                "achieved": f"{achieved[s]:.1%}",
            }
            for s in SPLITS
        ]

    def problems(self) -> list[str]:
        """What keeps the shares from what was asked, and what to do (empty when nothing)."""
        out = []
        smallest = min((v for v in self.asked.values() if v > 0), default=0.0)
        for group in self.too_large:
            examples = "; ".join(repr(q[:50]) for q in group["examples"])
            out.append(
                f"One group of {group['chunks']:,} chunks ({group['share']:.0%} of the "
                f"{self.n_chunks:,} dealt, {group['questions']:,} questions) is larger than the "
                f"smallest share ({smallest:.0%}), so no split can hold it at its share: its "
                f"questions share gold or linked chunks and must sit together (e.g. {examples}). "
                "Fix: reject the questions whose evidence is all over the corpus (reason "
                "not_specific), or import with a split column of your own."
            )
        if not self.within():
            achieved = self.achieved()
            shares = ", ".join(
                f"{s} {achieved[s]:.1%} (asked {self.asked.get(s, 0.0):.0%})" for s in SPLITS
            )
            out.append(
                f"The splits' shares of chunks are off by up to {self.off_by():.1%}: {shares}."
                + ("" if self.too_large else " Chunks kept from earlier splits fix the rest.")
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dealing:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def dealing_of(items: Sequence[QAItem], config: SplitConfig | None = None) -> Dealing:
    """How `items` (with their splits) divide the chunks, against the shares of `config`."""
    config = config or SplitConfig()
    placed = [i for i in items if i.status == "accepted" and i.split is not None]
    split_of: dict[str, str] = {}
    questions: Counter[str] = Counter()
    for item in placed:
        questions[str(item.split)] += 1
        split_of.update(dict.fromkeys(item.split_chunk_ids, str(item.split)))
    chunks = Counter(split_of.values())
    groups = _merge_groups(sorted(split_of), chunk_groups(placed))
    n = len(split_of)
    smallest = min((v for v in config.shares().values() if v > 0), default=0.0)
    too_large = []
    for group in sorted(groups, key=len, reverse=True):
        if not n or len(group) <= smallest * n or len(group) <= 1:
            break
        members = set(group)
        asking = [i for i in placed if members.intersection(i.split_chunk_ids)]
        too_large.append(
            {
                "chunks": len(group),
                "share": len(group) / n,
                "questions": len(asking),
                "examples": [i.question for i in asking[:3]],
            }
        )
    return Dealing(
        asked=config.shares(),
        chunks={s: chunks.get(s, 0) for s in SPLITS},
        questions={s: questions.get(s, 0) for s in SPLITS},
        largest_group=max((len(g) for g in groups), default=0),
        too_large=too_large,
    )
