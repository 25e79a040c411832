"""Training pairs from the documents' own structure, no LLM: a section heading as the query for
the start of its section, and the inverse cloze task (a sentence as the query, the rest of its
chunk as the positive; Lee et al. 2019).

How it works:
1. Headings (core.documents.headings) come from each original file. One that names no topic is
   rejected with a reason: numbers or a section label only, a generic heading ('Introduction',
   'Contents', …), a running header (the same margin line on RUNNING_PAGES pages or more), a
   heading not found in the text, one whose section is empty, or a line found by its font that
   runs over MAX_HEADING_WORDS (a paragraph set large; an outline's long titles are real).
2. A heading's evidence is the start of its section (EVIDENCE_WORDS words), found in the corpus
   (core.questions.leakage). Its gold chunks are the chunks holding the section's start (its
   first SECTION_START_WORDS words), each at least MIN_START_SHARE of it, next to the chunk of
   the quote, plus any other chunk holding the whole quote: a heading that ends its chunk with
   a few words of its section points at the next chunk too, where the section's text is. The
   chunk holding most of the start is the training chunk, and its positive text drops the
   heading, so the pair cannot be learned by string matching.
3. Cloze: from each chosen chunk, `per_chunk` sentences of MIN..MAX_SENTENCE_WORDS words that
   are mostly letters, drawn with the seed; the sentence is the query and its evidence, the chunk
   without it the positive.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.documents.corpus import Chunk
from core.documents.headings import MAX_HEADING_WORDS, Heading, strip_numbering
from core.questions.dataset import QAItem
from core.questions.leakage import LEAK_NGRAM, EvidenceIndex
from core.text import normalize_question, normalize_space, word_ngrams

EVIDENCE_WORDS = 25
SECTION_START_WORDS = 100  # about half a default chunk: where a reader finds the section
MIN_START_SHARE = 0.5  # of the start's word runs: a chunk holding less is not where it is
MIN_BODY_WORDS = 8
RUNNING_PAGES = 3
MIN_SENTENCE_WORDS = 8
MAX_SENTENCE_WORDS = 40
GENERIC_HEADINGS = frozenset(
    normalize_question(h)
    for h in (
        "abstract",
        "about",
        "about this document",
        "acknowledgements",
        "acknowledgments",
        "appendix",
        "appendices",
        "bibliography",
        "changelog",
        "change log",
        "colophon",
        "conclusion",
        "conclusions",
        "contents",
        "contents at a glance",
        "copyright",
        "credits",
        "disclaimer",
        "errata",
        "example",
        "examples",
        "figures",
        "footnotes",
        "foreword",
        "further reading",
        "glossary",
        "index",
        "introduction",
        "license",
        "licence",
        "list of figures",
        "list of tables",
        "notes",
        "overview",
        "preface",
        "references",
        "revision history",
        "see also",
        "summary",
        "table of contents",
        "tables",
        "toc",
    )
)
_CODE = re.compile(r"[`{}$=<>|\\]|--|\s-\w\b")
# An index by another name ("Function and variable index", "Index of concepts"): no topic.
_INDEX_WORDS = (
    r"(?:function|variable|concept|general|subject|command|keyword|program|option|method|class|"
    r"type|name|topic|author|file|package|symbol|operator|macro|alphabetical|and|&|,)s?"
)
_INDEX_HEADING = re.compile(
    rf"(?i)(?:{_INDEX_WORDS}\s+){{0,4}}index(?:es)?|index\s+of\s+(?:{_INDEX_WORDS}\s*)+"
)
# A cross-reference, not a statement ("See Chapter 9 [R Bugs], page 45, for more details.").
_CROSS_REFERENCE = re.compile(
    r"(?i)^\(?see\b.{0,80}\b(?:chapter|section|page|appendix|figure|table)\s+[\w.]+"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’')\]]*\s+(?=[\"“‘(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Rejection:
    """Why a heading is not a query: a gate reason code and the detail."""

    reason: str
    detail: str


def heading_rejection(title: str, heading: Heading, body: str) -> Rejection | None:
    """Why this heading (its title without numbering) makes no query, or None when it does."""
    if not re.search(r"[^\W\d_]{2,}", title) or re.fullmatch(
        r"(?i)(chapter|section|part|appendix)\s+[\w.]+", title
    ):
        return Rejection("numbers_only", f"{heading.title!r} has no words")
    if normalize_question(title) in GENERIC_HEADINGS or _INDEX_HEADING.fullmatch(title.strip()):
        return Rejection("generic_heading", f"{title!r} names no topic")
    if heading.repeats >= RUNNING_PAGES:
        return Rejection("running_header", f"{title!r} is in the margin of {heading.repeats} pages")
    if heading.origin == "font" and len(title.split()) > MAX_HEADING_WORDS:
        return Rejection("too_long", f"{len(title.split())} words > {MAX_HEADING_WORDS}")
    if not heading.located:
        where = f" on page {heading.page}" if heading.page else ""
        return Rejection("heading_not_found", f"{title!r} was not found in the text{where}")
    n_words = len(body.split())
    if n_words < MIN_BODY_WORDS:
        return Rejection(
            "empty_section", f"{n_words} word(s) before the next heading (< {MIN_BODY_WORDS})"
        )
    return None


def _item_id(prefix: str, *parts: str) -> str:
    return f"{prefix}_{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:12]}"


def _without(text: str, part: str) -> str | None:
    """`text` with every copy of `part` removed and the gaps tidied; None if it is absent."""
    if not part.strip() or part not in text:
        return None
    while part in text:
        at = text.find(part)
        left, right = text[:at].rstrip(" \t"), text[at + len(part) :].lstrip(" \t")
        if left.endswith("\n") or right.startswith("\n"):
            text = f"{left}\n{right}"
        else:
            text = f"{left} {right}" if left and right else left + right
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def evidence_of(body: str) -> str:
    """The start of a section that identifies its chunk: its first EVIDENCE_WORDS words."""
    return " ".join(normalize_space(body).split()[:EVIDENCE_WORDS])


def _section_gold(
    anchor: str, start: str, start_linked: Sequence[str], index: EvidenceIndex
) -> list[str]:
    """The chunks next to `anchor` (the quote's chunk) that hold at least MIN_START_SHARE of the
    section's `start` (by LEAK_NGRAM-word runs), the one holding most first; [anchor] when the
    start is too short to say."""
    grams = word_ngrams(start, LEAK_NGRAM)
    near = list(dict.fromkeys([anchor, *start_linked]))
    near = [c for c in near if c not in index.elsewhere(anchor, near)]
    tokens = dict(zip(index.ids, index.tokens, strict=True))
    shares = {
        c: len(grams & word_ngrams(" ".join(tokens.get(c, [])), LEAK_NGRAM)) / max(1, len(grams))
        for c in near
    }
    order = {c: n for n, c in enumerate(index.ids)}
    held = sorted(
        (c for c in near if shares[c] >= MIN_START_SHARE), key=lambda c: (-shares[c], order[c])
    )
    return held or [anchor]


def heading_items(
    source: str,
    doc_text: str,
    headings: Sequence[Heading],
    bodies: Sequence[str],
    index: EvidenceIndex,
    chunk_texts: dict[str, str],
) -> list[QAItem]:
    """One item per heading of one document: accepted with its gold chunks, or rejected with a
    reason (kept, so the review grid shows what was left out and why)."""
    evidences = [evidence_of(b) for b in bodies]
    matches = index.match_many(evidences)
    starts = [" ".join(normalize_space(b).split()[:SECTION_START_WORDS]) for b in bodies]
    start_matches = index.match_many(starts)
    items = []
    for heading, body, evidence, match, start, start_match in zip(
        headings, bodies, evidences, matches, starts, start_matches, strict=True
    ):
        title = strip_numbering(heading.title)
        meta: dict[str, object] = {
            "file": source,
            "page": heading.page,
            "level": heading.level,
            "found_by": heading.origin,
        }
        if title != heading.title:
            meta["raw"] = heading.title
        item = QAItem(
            id=_item_id("h", source, str(heading.start), heading.title),
            question=title or heading.title,
            chunk_id="",
            origin="heading",
            meta=meta,
        )
        rejection = heading_rejection(title, heading, body)
        if rejection is None and match.primary is None:
            rejection = Rejection("evidence_not_found", f"the section start {evidence[:60]!r}")
        if rejection is not None:
            update = {
                "status": "rejected",
                "reason": rejection.reason,
                "meta": {**meta, "reason_text": rejection.detail},
            }
            items.append(item.model_copy(update=update))
            continue
        section = _section_gold(str(match.primary), start, start_match.linked_ids, index)
        gold = list(dict.fromkeys([*section, *match.gold_ids]))
        primary = gold[0]
        heading_text = doc_text[heading.start : heading.end] if heading.start is not None else ""
        items.append(
            item.model_copy(
                update={
                    "chunk_id": primary,
                    "gold_chunk_ids": gold,
                    "linked_chunk_ids": list(dict.fromkeys([*gold, *match.linked_ids])),
                    "evidence": evidence,
                    "positive": _without(chunk_texts[primary], heading_text),
                }
            )
        )
    return items


def looks_like_contents(text: str) -> bool:
    """A table of contents or an index: dot leaders, or numbered section titles in a row."""
    leaders = text.count(" ... ") + text.count(". . .")
    numbered = len(re.findall(r"(?:^|\s)\d+(?:\.\d+)+\.?\s+[A-Z]", text))
    return leaders >= 3 or numbered >= 3


_LEGALESE = (
    "copyright",
    "all rights reserved",
    "permission is granted",
    "redistribute",
    "without any warranty",
    "warranty",
    "general public license",
    "free software foundation",
    "verbatim copies",
    "licensed under",
    "terms of the",
)


def looks_like_boilerplate(text: str) -> bool:
    """A licence or copyright page (three or more of its stock phrases) or a table of contents
    or index (dot leaders): text that is in the documents but not what anyone asks about."""
    lower = " ".join(text.lower().split())
    leaders = text.count(" ... ") + text.count(". . .")
    return leaders >= 3 or sum(p in lower for p in _LEGALESE) >= 3


def cloze_sentences(text: str) -> list[str]:
    """The sentences of a chunk that make a cloze query: statements of MIN..MAX_SENTENCE_WORDS
    words that start with a letter, mostly letters (not code, tables, link lists or a numbered
    heading); none from a table of contents. Questions are left to the headings they usually are."""
    if looks_like_contents(text):
        return []
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
            n_words = len(sentence.split())
            if not MIN_SENTENCE_WORDS <= n_words <= MAX_SENTENCE_WORDS:
                continue
            # A sentence starts with a letter ('2 1.5 What is …' is a table-of-contents line).
            if not re.match(r"[\"“‘(]?[^\W\d_]", sentence) or not sentence.endswith((".", "!")):
                continue
            visible = [c for c in sentence if not c.isspace()]
            if sum(c.isalpha() for c in visible) < 0.75 * len(visible) or "..." in sentence:
                continue
            if _CODE.search(sentence):  # a command line or markup, not prose
                continue
            if _CROSS_REFERENCE.match(sentence):  # points elsewhere, says nothing itself
                continue
            out.append(sentence)
    return out


def cloze_items(
    chunks: Sequence[Chunk], per_chunk: int, seed: int, index: EvidenceIndex
) -> list[QAItem]:
    """Up to `per_chunk` cloze items from each chunk: the sentence is the query, the chunk
    without it the positive; its gold chunks are every chunk holding the sentence."""
    rng = random.Random(seed)
    drawn: list[tuple[Chunk, str]] = []
    for chunk in chunks:
        sentences = list(dict.fromkeys(cloze_sentences(chunk.text)))
        for sentence in rng.sample(sentences, min(per_chunk, len(sentences))):
            drawn.append((chunk, sentence))
    matches = index.match_many([s for _, s in drawn])
    items = []
    for (chunk, sentence), match in zip(drawn, matches, strict=True):
        flat = " ".join(chunk.text.split())
        positive = _without(flat, sentence)
        gold = list(dict.fromkeys([chunk.id, *match.gold_ids]))
        items.append(
            QAItem(
                id=_item_id("z", chunk.id, sentence),
                question=sentence,
                chunk_id=chunk.id,
                gold_chunk_ids=gold,
                linked_chunk_ids=list(dict.fromkeys([*gold, *match.linked_ids])),
                evidence=sentence,
                origin="cloze",
                positive=positive,
                meta={"file": chunk.source, "page": chunk.page},
            )
        )
    return items
