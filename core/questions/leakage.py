"""Leaks between splits, and which chunks a quote belongs to.

How it works:
1. `match_evidence` finds a question's gold chunks: every chunk whose whitespace-normalised text
   contains the evidence quote (chunks overlap, so a quote can sit in two). A quote that
   straddles a chunk boundary gets the chunk sharing the longest start or end of it. Its linked
   chunks are every chunk sharing a run of LEAK_NGRAM words with the quote (gold included): the
   split keeps them on the question's side.
2. `check_no_leak` refuses a dataset where
   - a chunk (gold or linked) belongs to questions of two splits (by id),
   - the same question (its duplicate key, core.text) sits in two splits, or
   - a validation or test question's evidence shares a run of LEAK_NGRAM words with a chunk that
     a train question points at (by text: a training positive that holds the held-out answer).
   The message names the leaks and a fix that applies to how the splits were made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.errors import InputError
from core.text import normalize_question, normalize_space, word_ngrams, words

if TYPE_CHECKING:
    from core.documents.corpus import Chunk
    from core.questions.dataset import QAItem

LEAK_NGRAM = 8  # words in a run that counts as shared text (evidence quotes are 8-25 words)
HELD_OUT = ("validation", "test")
SPLIT_COLUMN_FIX = (
    "drop the split column on import so ragbench deals the splits by chunk, or fix the column "
    "so that these questions and chunks sit in one split"
)
RESPLIT_FIX = (
    "re-split by chunk: load or import the question set again (ragbench then deals the splits "
    "so that chunks sharing a question's evidence or text stay together)"
)


@dataclass(frozen=True)
class EvidenceMatch:
    """Where a quote sits in a corpus."""

    gold_ids: list[str]  # chunks holding the whole quote (or the best straddled one)
    linked_ids: list[str]  # chunks sharing a LEAK_NGRAM-word run with it (gold included)
    how: Literal["contained", "overlap", "not_found"]

    @property
    def primary(self) -> str | None:
        return self.gold_ids[0] if self.gold_ids else None


def _longest_contained(tokens: list[str], text: str, *, from_start: bool) -> int:
    """Characters of the longest prefix (or suffix) of `tokens` that occurs in `text`."""
    lo, hi = 0, len(tokens)
    while lo < hi:  # containment is monotone in the number of words
        mid = (lo + hi + 1) // 2
        part = " ".join(tokens[:mid] if from_start else tokens[-mid:])
        if part in text:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return 0
    return len(" ".join(tokens[:lo] if from_start else tokens[-lo:]))


def _grams_found(
    token_lists: Sequence[list[str]], wanted: Mapping[tuple[str, ...], list[int]]
) -> list[set[int]]:
    """For each text (as tokens), which of the wanted n-grams' owners occur in it: one pass over
    the texts, however many quotes there are (the n-grams of every quote are looked up at once).
    Returns, per owner index, the positions of the texts that share an n-gram with it."""
    n_owners = 1 + max((o for owners in wanted.values() for o in owners), default=-1)
    found: list[set[int]] = [set() for _ in range(n_owners)]
    sizes = sorted({len(g) for g in wanted})
    for position, tokens in enumerate(token_lists):
        for size in sizes:
            for i in range(len(tokens) - size + 1):
                owners = wanted.get(tuple(tokens[i : i + size]))
                if owners:
                    for owner in owners:
                        found[owner].add(position)
    return found


def _wanted(quotes: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
    wanted: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for owner, quote in enumerate(quotes):
        for gram in word_ngrams(quote, LEAK_NGRAM):
            wanted[gram].append(owner)
    return wanted


@dataclass
class EvidenceIndex:
    """A corpus prepared for matching quotes: normalised texts and word tokens."""

    ids: list[str]
    texts: list[str]  # whitespace-normalised
    tokens: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._order = {cid: i for i, cid in enumerate(self.ids)}

    @classmethod
    def of(cls, chunks: Sequence[Chunk]) -> EvidenceIndex:
        texts = [normalize_space(c.text) for c in chunks]
        return cls([c.id for c in chunks], texts, [words(t) for t in texts])

    def match(self, evidence: str) -> EvidenceMatch:
        """Gold and linked chunks of one quote."""
        return self.match_many([evidence])[0]

    def match_many(self, evidences: Sequence[str]) -> list[EvidenceMatch]:
        """Gold and linked chunks of every quote, in one pass over the corpus."""
        quotes = [normalize_space(e or "") for e in evidences]
        shared = _grams_found(self.tokens, _wanted(quotes))
        shared += [set() for _ in range(len(quotes) - len(shared))]
        out = []
        for quote, positions in zip(quotes, shared, strict=True):
            if not quote:
                out.append(EvidenceMatch([], [], "not_found"))
                continue
            # A chunk holding the whole quote shares its n-grams: only those are candidates.
            gold = [self.ids[p] for p in sorted(positions) if quote in self.texts[p]]
            how: Literal["contained", "overlap", "not_found"] = "contained"
            if not gold:
                best = self._straddled(quote)
                gold, how = ([best], "overlap") if best else ([], "not_found")
            linked = sorted(set(gold) | {self.ids[p] for p in positions}, key=self._order.get)
            out.append(EvidenceMatch(gold, linked if gold else [], how))
        return out

    def _straddled(self, quote: str) -> str | None:
        parts = quote.split()
        best_id, best = None, 0
        for cid, text in zip(self.ids, self.texts, strict=True):
            overlap = max(
                _longest_contained(parts, text, from_start=True),
                _longest_contained(parts, text, from_start=False),
            )
            if overlap > best:
                best_id, best = cid, overlap
        # A few shared words are chance; a real straddle shares a good part of the quote.
        return best_id if best_id is not None and best >= max(20, len(quote) // 4) else None


def match_evidence(evidence: str, chunks: Sequence[Chunk]) -> EvidenceMatch:
    """Gold and linked chunks of one quote in `chunks` (EvidenceIndex.match_many for many)."""
    return EvidenceIndex.of(chunks).match(evidence)


# ------------------------------------------------------------------ the leak check


@dataclass(frozen=True)
class TextLeak:
    """A held-out question whose evidence shares text with a chunk a train question points at."""

    item_id: str
    split: str
    chunk_id: str


def find_text_leaks(items: Sequence[QAItem], chunk_texts: Mapping[str, str]) -> list[TextLeak]:
    """Held-out (validation, test) questions whose evidence shares a LEAK_NGRAM-word run with a
    chunk that a train question points at (one pass over those chunks)."""
    held_out = [i for i in items if i.split in HELD_OUT and i.evidence]
    train_chunks = sorted({c for i in items if i.split == "train" for c in i.gold_ids})
    train_chunks = [c for c in train_chunks if c in chunk_texts]
    if not held_out or not train_chunks:
        return []
    wanted = _wanted([str(i.evidence) for i in held_out])
    shared = _grams_found([words(chunk_texts[c]) for c in train_chunks], wanted)
    return [
        TextLeak(item.id, str(item.split), train_chunks[p])
        for item, positions in zip(held_out, shared, strict=False)
        for p in sorted(positions)
    ]


def _named(pairs: Sequence[str], total: int) -> str:
    more = f" and {total - len(pairs)} more" if total > len(pairs) else ""
    return "; ".join(pairs) + more


def check_no_leak(
    items: Sequence[QAItem],
    chunk_texts: Mapping[str, str] | None = None,
    *,
    fix: str = RESPLIT_FIX,
) -> None:
    """Raise InputError when the dataset leaks between splits: by chunk id, by question text or
    (with `chunk_texts`) by evidence text. Items without a split are ignored. The message names
    the leaks; `fix` says what to do given how the splits were made."""
    by_chunk: dict[str, set[str]] = defaultdict(set)
    by_question: dict[str, set[str]] = defaultdict(set)
    examples: dict[str, str] = {}
    placed = [i for i in items if i.split is not None]
    for item in placed:
        for chunk_id in item.split_chunk_ids:
            by_chunk[chunk_id].add(str(item.split))
        key = normalize_question(item.question)
        if key:
            by_question[key].add(str(item.split))
            examples.setdefault(key, item.question)
    chunk_leaks = {c: s for c, s in by_chunk.items() if len(s) > 1}
    question_leaks = {q: s for q, s in by_question.items() if len(s) > 1}
    text_leaks = find_text_leaks(placed, chunk_texts) if chunk_texts is not None else []
    if not chunk_leaks and not question_leaks and not text_leaks:
        return
    parts = []
    if chunk_leaks:
        named = [f"{c} in {'+'.join(sorted(s))}" for c, s in sorted(chunk_leaks.items())[:5]]
        parts.append(
            f"{len(chunk_leaks)} chunk(s) in more than one split "
            f"({_named(named, len(chunk_leaks))})"
        )
    if question_leaks:
        named = [f"{examples[q]!r} in {'+'.join(sorted(s))}" for q, s in question_leaks.items()]
        parts.append(
            f"{len(question_leaks)} question(s) in more than one split "
            f"({_named(named[:5], len(question_leaks))})"
        )
    if text_leaks:
        named = [f"{t.split} question {t.item_id} in train chunk {t.chunk_id}" for t in text_leaks]
        parts.append(
            f"{len(text_leaks)} held-out evidence quote(s) share {LEAK_NGRAM} or more words with "
            f"a training chunk ({_named(named[:5], len(text_leaks))})"
        )
    raise InputError(
        "The dataset leaks between splits: held-out questions would be scored on text the "
        "model was trained on.",
        found="; ".join(parts),
        fix=fix,
    )
