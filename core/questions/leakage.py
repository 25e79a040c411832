"""Leaks between splits, and which chunks a quote belongs to.

How it works:
1. `match_evidence` finds a question's gold chunks: every chunk that contains the evidence quote
   (chunks overlap, so a quote can sit in two). Quote and chunk are compared by one key
   (core.text.match_key: NFKC, lower case, words only), the same one the leak check uses, so
   a quote that differs from its chunk in case or punctuation is still found. A quote that
   straddles a chunk boundary gets the chunk sharing the longest start or end of it. Its linked
   chunks are every chunk sharing a run of LEAK_NGRAM words with the quote (gold included): the
   split keeps them on the question's side. A quote under MIN_EVIDENCE_WORDS words says nothing
   about where the answer is, so it links no chunk and is never compared for leaks.
2. `check_no_leak` refuses a dataset where
   - a chunk (gold or linked) belongs to questions of two splits (by id),
   - the same question (its duplicate key, core.text) sits in two splits, or
   - a validation or test question's evidence shares a run of LEAK_NGRAM words with a chunk that
     a train question points at (by text: a training positive that holds the held-out answer),
   - two near-duplicate questions (embedding cosine at the gate's threshold, found when the set
     was made and tied in their meta) sit in two splits.
   The message names the leaks and a fix that applies to how the splits were made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.errors import InputError
from core.text import contains_key, match_key, normalize_question, word_ngrams, words

if TYPE_CHECKING:
    from core.documents.corpus import Chunk
    from core.questions.dataset import QAItem

LEAK_NGRAM = 8  # words in a run that counts as shared text (evidence quotes are 8-25 words)
MIN_EVIDENCE_WORDS = 5  # a shorter quote ("Debian") is in too many chunks to say where it is
NEIGHBOURS = 1  # chunks either side in one document: overlapping, so the same place
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
    how: Literal["contained", "overlap", "not_found", "too_short"]

    @property
    def primary(self) -> str | None:
        return self.gold_ids[0] if self.gold_ids else None


def evidence_too_short(evidence: str | None) -> bool:
    """Whether a quote has too few words to say which chunks hold the answer ('Debian' is in
    most of a Debian manual): such a quote links no chunk and is not compared for leaks."""
    return len(words(evidence or "")) < MIN_EVIDENCE_WORDS


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
    """The LEAK_NGRAM-word runs of every quote long enough to be specific, by owner index."""
    wanted: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for owner, quote in enumerate(quotes):
        if evidence_too_short(quote):
            continue
        for gram in word_ngrams(quote, LEAK_NGRAM):
            wanted[gram].append(owner)
    return wanted


@dataclass
class EvidenceIndex:
    """A corpus prepared for matching quotes: each chunk's match key (core.text.match_key), its
    words, and its place (document, position) to tell an overlapping neighbour from a chunk
    elsewhere."""

    ids: list[str]
    keys: list[str]
    tokens: list[list[str]] = field(default_factory=list)
    places: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._order = {cid: i for i, cid in enumerate(self.ids)}
        self._postings: dict[str, set[int]] | None = None
        self._ends: dict[tuple[str, str, str], list[int]] | None = None

    @classmethod
    def of(cls, chunks: Sequence[Chunk]) -> EvidenceIndex:
        keys = [match_key(c.text) for c in chunks]
        places = [(c.doc_id or c.source, c.chunk_index) for c in chunks]
        return cls([c.id for c in chunks], keys, [k.split() for k in keys], places)

    def match(self, evidence: str) -> EvidenceMatch:
        """Gold and linked chunks of one quote."""
        return self.match_many([evidence])[0]

    def match_many(self, evidences: Sequence[str | None]) -> list[EvidenceMatch]:
        """Gold and linked chunks of every quote, in one pass over the corpus. A quote under
        MIN_EVIDENCE_WORDS words matches nothing (`too_short`)."""
        quotes = [match_key(e or "") for e in evidences]
        shared = _grams_found(self.tokens, _wanted(quotes))
        shared += [set() for _ in range(len(quotes) - len(shared))]
        out = []
        for quote, positions in zip(quotes, shared, strict=True):
            if not quote:
                out.append(EvidenceMatch([], [], "not_found"))
                continue
            if evidence_too_short(quote):
                out.append(EvidenceMatch([], [], "too_short"))
                continue
            # A chunk holding the whole quote shares its n-grams: only those are candidates.
            gold = [self.ids[p] for p in sorted(positions) if contains_key(self.keys[p], quote)]
            how: Literal["contained", "overlap", "not_found", "too_short"] = "contained"
            if not gold:
                best = self._straddled(quote)
                gold, how = ([best], "overlap") if best else ([], "not_found")
            linked = sorted(set(gold) | {self.ids[p] for p in positions}, key=self._order.get)
            out.append(EvidenceMatch(gold, linked if gold else [], how))
        return out

    def _straddled(self, quote: str) -> str | None:
        """The chunk a quote runs into or out of: its start ends the chunk, or its end starts
        it (a chunk boundary fell inside the quote), sharing the longest part of it. Chunks are
        looked up by their last (first) two words, so each quote costs a few dictionary
        lookups per word, not a pass over the corpus."""
        if self._ends is None:
            self._ends = defaultdict(list)
            for position, tokens in enumerate(self.tokens):
                if len(tokens) >= 2:
                    self._ends[("last", tokens[-2], tokens[-1])].append(position)
                    self._ends[("first", tokens[0], tokens[1])].append(position)
        parts = quote.split()
        best_id, best = None, 0
        for k in range(2, len(parts) + 1):  # the first k words of the quote end a chunk ...
            for head, key in (
                (True, ("last", parts[k - 2], parts[k - 1])),
                (False, ("first", parts[-k], parts[-k + 1])),  # ... or its last k start one
            ):
                for position in self._ends.get(key, []):
                    tokens = self.tokens[position]
                    shared = parts[:k] if head else parts[-k:]
                    if (tokens[-k:] if head else tokens[:k]) != shared:
                        continue
                    overlap = len(" ".join(shared))
                    if overlap > best or (
                        overlap == best and best_id and self._earlier(position, best_id)
                    ):
                        best_id, best = self.ids[position], overlap
        # A few shared words are chance; a real straddle shares a good part of the quote.
        return best_id if best_id is not None and best >= max(20, len(quote) // 4) else None

    def _earlier(self, position: int, chunk_id: str) -> bool:
        return position < self._order[chunk_id]

    def find_phrase(self, text: str) -> list[str]:
        """Every chunk holding `text` as whole words (same key as quotes), in corpus order."""
        key = match_key(text)
        if not key:
            return []
        if self._postings is None:
            postings: dict[str, set[int]] = defaultdict(set)
            for position, tokens in enumerate(self.tokens):
                for token in tokens:
                    postings[token].add(position)
            self._postings = dict(postings)
        sets = sorted((self._postings.get(t, set()) for t in set(key.split())), key=len)
        candidates = set.intersection(*sets) if sets else set()
        return [self.ids[p] for p in sorted(candidates) if contains_key(self.keys[p], key)]

    def elsewhere(self, chunk_id: str, ids: Sequence[str]) -> list[str]:
        """The chunks of `ids` that are neither `chunk_id` nor its overlapping neighbours (within
        NEIGHBOURS positions in the same document)."""
        at = self._order.get(chunk_id)
        if at is None:
            return [c for c in ids if c != chunk_id]
        doc, position = self.places[at]
        out = []
        for cid in ids:
            other = self._order.get(cid)
            if other is None:
                continue
            other_doc, other_position = self.places[other]
            if other_doc != doc or abs(other_position - position) > NEIGHBOURS:
                out.append(cid)
        return out


def match_evidence(evidence: str, chunks: Sequence[Chunk]) -> EvidenceMatch:
    """Gold and linked chunks of one quote in `chunks` (EvidenceIndex.match_many for many)."""
    return EvidenceIndex.of(chunks).match(evidence)


# ------------------------------------------------------------------ the leak check

NEAR_DUPLICATES_KEY = "near_duplicates"  # in an item's meta: ids of questions it nearly repeats


def near_duplicate_ids(item: QAItem) -> list[str]:
    """The ids of the questions this one nearly repeats (embedding cosine at the gate's
    threshold, core.questions.gate.tie_near_duplicates): they must share its split."""
    ids = item.meta.get(NEAR_DUPLICATES_KEY) or []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def find_near_duplicate_leaks(items: Sequence[QAItem]) -> list[tuple[QAItem, QAItem]]:
    """Pairs of near-duplicate questions (tied in meta) that sit in two splits."""
    by_id = {i.id: i for i in items if i.split is not None}
    pairs = []
    for item in by_id.values():
        for other_id in near_duplicate_ids(item):
            other = by_id.get(other_id)
            if other is not None and other.split != item.split and item.id < other.id:
                pairs.append((item, other))
    return pairs


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
    near_leaks = find_near_duplicate_leaks(placed)
    if not chunk_leaks and not question_leaks and not text_leaks and not near_leaks:
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
    if near_leaks:
        named = [f"{a.question!r} ({a.split}) ~ {b.question!r} ({b.split})" for a, b in near_leaks]
        parts.append(
            f"{len(near_leaks)} pair(s) of near-duplicate questions in different splits "
            f"({_named(named[:5], len(near_leaks))})"
        )
    raise InputError(
        "The dataset leaks between splits: held-out questions would be scored on text the "
        "model was trained on.",
        found="; ".join(parts),
        fix=fix,
    )
