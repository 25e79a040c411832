"""Section headings of a parsed document, located in its text: the weak supervision a document
carries of its own (a heading names what its section is about).

How it works:
1. PDF: the outline (`get_toc()`: level, title, page) when the file has one; otherwise lines set
   in a font larger than the body text (the most common size, by characters) or in bold at body
   size on a line of their own, levels ranked by size. Lines repeated in the page margins on
   several pages are counted (`repeats`): they are running headers, not sections.
2. Markdown, HTML (read as Markdown) and plain text: ATX headings (`## Title`) and setext
   headings (a line underlined with `===` or `---`), outside fenced code.
3. Each heading is located in the document's text (`core.documents.chunking.document_text`, the
   text the chunks are cut from): a PDF heading on its page or a neighbour, in outline order, as
   the start of a paragraph, matched on letters and digits so line breaks, hyphenation and
   section numbers do not matter. `start`/`end` are its offsets; a heading that cannot be found
   keeps `start=None`.
A section's body is the text from its heading's end to the next located heading.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal

from core.documents.chunking import document_text
from core.documents.parsing import PAGE_SEPARATOR, ParsedDocument

HeadingOrigin = Literal["outline", "font", "markdown"]
FONT_RATIO = 1.15  # a line this much larger than the body font is a heading
MAX_HEADING_WORDS = 25  # a longer "heading" is a paragraph set in a large font
_NUMBERING = re.compile(
    r"^\s*(?:(?:chapter|section|part|appendix)\s+[\w.]+\s*[:.\-–—]?\s*|"
    r"(?:\d+|[A-Z])(?:\.\d+)+\.?\s+|\d+[.)]?\s+)",
    re.IGNORECASE,
)
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_OR_TABLE = re.compile(r"^\s*(?:[-*+>|]|\d+[.)])\s")


@dataclass(frozen=True)
class Heading:
    """One heading: its title as written, level (1 = top), page, and where it sits in the text."""

    title: str
    level: int
    page: int | None
    origin: HeadingOrigin
    start: int | None = None  # offset of the heading's paragraph in the document text
    end: int | None = None  # offset just after the title
    repeats: int = 1  # pages whose margin holds the same line (running headers repeat)

    @property
    def located(self) -> bool:
        return self.start is not None


def strip_numbering(title: str) -> str:
    """'3.1.7 Why …' -> 'Why …'; 'Chapter 2: Setup' -> 'Setup'; markdown emphasis dropped."""
    text = " ".join(title.replace("*", " ").replace("`", "'").split())
    stripped = _NUMBERING.sub("", text, count=1).strip()
    return stripped.rstrip(":").strip()


def _squash(text: str) -> tuple[str, list[int]]:
    """Letters and digits only (case kept), with each one's offset in `text`."""
    kept = [(ch, i) for i, ch in enumerate(text) if ch.isalnum()]
    return "".join(ch for ch, _ in kept), [i for _, i in kept]


# ------------------------------------------------------------------ Markdown and plain text


def markdown_headings(text: str) -> list[Heading]:
    """ATX and setext headings of Markdown text, located (offsets into `text`)."""
    found: list[Heading] = []
    offset, fenced, previous = 0, False, None  # previous: (line, its offset) for setext
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if _FENCE.match(bare):
            fenced, previous = not fenced, None
        elif not fenced:
            atx = _ATX.match(bare)
            setext = _SETEXT.match(bare)
            if atx:
                title = atx.group(2).strip()
                found.append(
                    Heading(title, len(atx.group(1)), None, "markdown", offset, offset + len(bare))
                )
                previous = None
            elif setext and previous and _is_setext_title(previous[0], setext.group(1)):
                level = 1 if setext.group(1).startswith("=") else 2
                title, at = previous[0].strip(), previous[1]
                found.append(Heading(title, level, None, "markdown", at, offset + len(bare)))
                previous = None
            else:
                previous = (bare, offset) if bare.strip() else None
        offset += len(line)
    return found


def _is_setext_title(line: str, underline: str) -> bool:
    """A setext title is one plain line (a `---` under a list item or a table is a rule)."""
    if not line.strip() or _ATX.match(line) or _LIST_OR_TABLE.match(line):
        return False
    return not (underline.startswith("-") and len(underline) < 3)


# ------------------------------------------------------------------ PDF


def pdf_outline(data: bytes) -> list[tuple[int, str, int]]:
    """The PDF's outline as (level, title, page), [] when it has none."""
    import pymupdf

    with pymupdf.open(stream=data, filetype="pdf") as doc:
        return [(int(level), str(title), int(page)) for level, title, page, *_ in doc.get_toc()]


@dataclass(frozen=True)
class _Line:
    """One text line of a PDF page with its font and place."""

    page: int
    size: float
    bold: bool
    in_margin: bool
    top: float
    bottom: float
    text: str


def _page_lines(data: bytes) -> list[_Line]:
    """Every text line of the PDF, in page order."""
    import pymupdf

    rows = []
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for page in doc:
            margin = page.rect.height * 0.08
            for block in page.get_text("dict")["blocks"]:
                if block.get("type") != 0:
                    continue
                for line in block["lines"]:
                    spans = [s for s in line["spans"] if s["text"].strip()]
                    if not spans:
                        continue
                    top, bottom = line["bbox"][1], line["bbox"][3]
                    rows.append(
                        _Line(
                            page=page.number + 1,
                            size=round(max(s["size"] for s in spans), 1),
                            bold=all(s["flags"] & 16 or "Bold" in s["font"] for s in spans),
                            in_margin=bottom < page.rect.y0 + margin or top > page.rect.y1 - margin,
                            top=top,
                            bottom=bottom,
                            text=" ".join(" ".join(s["text"].split()) for s in spans),
                        )
                    )
    return rows


def _margin_repeats(lines: list[_Line]) -> Counter[str]:
    """How many pages carry each margin line (digits dropped: 'Page 3' repeats as 'Page ')."""
    pages: dict[str, set[int]] = {}
    for line in lines:
        if line.in_margin:
            pages.setdefault(_repeat_key(line.text), set()).add(line.page)
    return Counter({key: len(found) for key, found in pages.items()})


def _repeat_key(text: str) -> str:
    return re.sub(r"\d+", "", " ".join(text.lower().split()))


def _heading_lines(lines: list[_Line], body: float) -> list[_Line]:
    """Lines set larger than the body, or bold at body size, short enough to be a heading; a
    heading wrapped over two adjacent lines of one size is joined."""
    out: list[_Line] = []
    for line in lines:
        large = line.size >= body * FONT_RATIO
        if not (large or (line.bold and line.size >= body)):
            continue
        if len(line.text.split()) > MAX_HEADING_WORDS:
            continue
        prev = out[-1] if out else None
        adjacent = (
            prev is not None
            and (prev.page, prev.size, prev.in_margin) == (line.page, line.size, False)
            and not line.in_margin
            and 0 <= line.top - prev.bottom < line.size * 0.6
        )
        if prev is not None and adjacent:
            out[-1] = replace(prev, bottom=line.bottom, text=f"{prev.text} {line.text}")
        else:
            out.append(line)
    return out


def font_headings(data: bytes) -> list[Heading]:
    """Headings of a PDF without an outline, from font sizes (unlocated)."""
    lines = _page_lines(data)
    if not lines:
        return []
    weight: Counter[float] = Counter()
    for line in lines:
        weight[line.size] += len(line.text)
    body = weight.most_common(1)[0][0]
    repeats = _margin_repeats(lines)
    candidates = _heading_lines(lines, body)
    sizes = sorted({c.size for c in candidates}, reverse=True)
    return [
        Heading(
            c.text,
            sizes.index(c.size) + 1,
            c.page,
            "font",
            repeats=max(1, repeats.get(_repeat_key(c.text), 1)) if c.in_margin else 1,
        )
        for c in candidates
    ]


def pdf_headings(data: bytes) -> list[Heading]:
    """A PDF's headings (unlocated): its outline, else its large or bold lines."""
    outline = pdf_outline(data)
    if not outline:
        return font_headings(data)
    repeats = _margin_repeats(_page_lines(data))
    return [
        Heading(title, level, page, "outline", repeats=max(1, repeats.get(_repeat_key(title), 1)))
        for level, title, page in outline
        if title.strip()
    ]


def _paragraphs(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """(start, end) of each blank-line-separated paragraph of text[lo:hi]."""
    out = []
    for match in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]*)*", text[lo:hi]):
        if match.group(0).strip():
            out.append((lo + match.start(), lo + match.end()))
    return out


def locate_heading(text: str, title: str, lo: int, hi: int) -> tuple[int, int] | None:
    """(start, end) of the first paragraph of text[lo:hi] that begins with `title`, matched on
    letters and digits (case kept; section numbers, line breaks and hyphens ignored); `end` is
    just after the title and its closing punctuation."""
    target, _ = _squash(strip_numbering(title))
    if not target:
        return None
    for start, end in _paragraphs(text, lo, hi):
        paragraph = text[start:end]
        squashed, offsets = _squash(paragraph)
        numbering = _NUMBERING.match(paragraph.lstrip(" \t*#_"))
        skip = len(_squash(numbering.group(0))[0]) if numbering else 0
        for k in dict.fromkeys((skip, 0)):  # after its number, or a title that is one
            if squashed.startswith(target, k):
                after = offsets[k + len(target) - 1] + 1
                while after < len(paragraph) and not paragraph[after].isspace():
                    after += 1  # the title's closing punctuation ('?', ')')
                return start, start + after
    return None


def locate_pdf_headings(doc: ParsedDocument, headings: list[Heading]) -> list[Heading]:
    """Each PDF heading located on its page (or a neighbour), in order; unfound ones unlocated."""
    text, starts = document_text(doc)
    ends = [s + len(p.text) for s, p in zip(starts, doc.pages, strict=True)]
    index_of = {p.number: i for i, p in enumerate(doc.pages)}
    cursor, out = 0, []
    for heading in headings:
        i = index_of.get(heading.page)
        if i is None:
            out.append(heading)
            continue
        lo = max(cursor, starts[max(0, i - 1)])
        hi = ends[min(len(ends) - 1, i + 1)]
        found = locate_heading(text, heading.title, lo, hi) if lo < hi else None
        if found is None:
            out.append(heading)
            continue
        out.append(replace(heading, start=found[0], end=found[1]))
        cursor = found[1]
    return out


def document_headings(doc: ParsedDocument, data: bytes) -> tuple[str, list[Heading]]:
    """The document's text (as the chunks were cut from it) and its headings, located where
    possible. `data` is the file's bytes (a PDF's outline and fonts are not in the text)."""
    text, _ = document_text(doc)
    if doc.kind == "pdf":
        return text, locate_pdf_headings(doc, pdf_headings(data))
    return text, markdown_headings(text)


def section_bodies(text: str, headings: list[Heading]) -> list[str]:
    """Each located heading's section text: from its end to the next located heading ('' for an
    unlocated heading). Page separators inside a section are kept as paragraph breaks."""
    located = sorted((h.start, h.end, n) for n, h in enumerate(headings) if h.located)
    bodies = [""] * len(headings)
    for k, (_, end, n) in enumerate(located):
        stop = located[k + 1][0] if k + 1 < len(located) else len(text)
        bodies[n] = text[end:stop].strip() if stop > end else ""
    return bodies


__all__ = [
    "PAGE_SEPARATOR",
    "Heading",
    "document_headings",
    "font_headings",
    "locate_heading",
    "markdown_headings",
    "pdf_headings",
    "section_bodies",
    "strip_numbering",
]
