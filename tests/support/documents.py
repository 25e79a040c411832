"""Small real documents for heading tests: PDFs written with pymupdf (with or without an outline,
headings in a larger or bold font, a running header in the margin), Markdown and HTML."""

from __future__ import annotations

import random

_SYLLABLES = [
    "ba",
    "ko",
    "ri",
    "len",
    "mu",
    "sa",
    "tor",
    "vi",
    "pe",
    "dan",
    "lo",
    "qui",
    "ne",
    "sha",
]


def section_text(seed: int, n_sentences: int = 14, first: str = "") -> str:
    """Distinct prose for one section (about 1,000 characters: a chunk of its own), of made-up
    words, so no two sections share a run of eight words."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))

    sentences = [first] if first else []
    while len(sentences) < n_sentences:
        words = [word() for _ in range(rng.randint(8, 12))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


SECTIONS = [
    (
        "Installing the system",
        section_text(1, first="The installer boots from a USB stick and asks for a mirror."),
    ),
    (
        "Upgrading packages safely",
        section_text(2, first="The package manager keeps a database of installed files."),
    ),
    ("Introduction", section_text(3, first="A generic heading names no topic at all.")),
    ("3.2", section_text(4, first="A heading of numbers only says nothing.")),
    (
        "Choosing a mirror near you",
        section_text(5, first="A mirror close to you answers faster and costs less."),
    ),
]


def pdf_bytes(
    sections: list[tuple[str, str]] = SECTIONS,
    *,
    outline: bool = True,
    running_header: str | None = "Debian Handbook",
    header_size: float = 9,
    numbered: bool = True,
) -> bytes:
    """One section per page: a heading (14 pt bold, numbered '1.', '2.' …) and its body (10 pt),
    with a running header in the top margin of every page and, when asked, an outline."""
    import pymupdf

    doc = pymupdf.open()
    toc = []
    for number, (title, body) in enumerate(sections, start=1):
        page = doc.new_page(width=595, height=842)
        if running_header:
            font = "hebo" if header_size > 10 else "helv"
            page.insert_text((72, 30), running_header, fontsize=header_size, fontname=font)
        heading = f"{number}. {title}" if numbered else title
        page.insert_text((72, 100), heading, fontsize=16, fontname="hebo")
        box = pymupdf.Rect(72, 130, 523, 800)
        page.insert_textbox(box, body, fontsize=10, fontname="helv")
        toc.append([1, title, number])
    if outline:
        doc.set_toc(toc)
    data = doc.tobytes()
    doc.close()
    return data


MARKDOWN = """# Installing the system

The installer boots from a USB stick and asks for a mirror. It then partitions the disk.

Upgrading packages safely
-------------------------

The package manager keeps a database of installed files and their versions, and compares it.

```bash
# this is a comment, not a heading
apt upgrade
```

## Contents

Nothing here names a topic, so the heading is not a query.

### Choosing a mirror near you ###

A mirror close to you answers faster and costs less bandwidth for everyone involved.
"""

HTML = """<html><head><title>Guide</title></head><body>
<h1>Installing the system</h1>
<p>The installer boots from a USB stick and asks for a mirror. It then partitions the disk.</p>
<h2>Upgrading packages safely</h2>
<p>The package manager keeps a database of installed files and their versions, and compares it.</p>
<h3>Choosing a mirror near you</h3>
<p>A mirror close to you answers faster and costs less bandwidth for everyone involved.</p>
</body></html>
"""
