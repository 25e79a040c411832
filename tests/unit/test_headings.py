"""Headings from PDF (outline and font sizes), Markdown and HTML, located in the text the chunks
are cut from; and the rules that turn away headings that name no topic."""

from __future__ import annotations

import pytest

from core.documents.headings import (
    Heading,
    document_headings,
    locate_heading,
    markdown_headings,
    section_bodies,
    strip_numbering,
)
from core.documents.parsing import parse_file
from core.questions.structure import heading_rejection
from tests.support.documents import HTML, MARKDOWN, SECTIONS, pdf_bytes


def _headings(name: str, data: bytes) -> tuple[str, list[Heading]]:
    return document_headings(parse_file(name, data), data)


def test_pdf_outline_headings_are_located_after_their_section_numbers():
    text, headings = _headings("guide.pdf", pdf_bytes())
    assert [h.title for h in headings] == [title for title, _ in SECTIONS]
    assert {h.origin for h in headings} == {"outline"}
    assert [h.page for h in headings] == [1, 2, 3, 4, 5]
    assert all(h.located for h in headings)
    # The heading's span in the text is its numbered line; the body starts right after it.
    first = headings[0]
    assert text[first.start : first.end] == "1. Installing the system"
    bodies = section_bodies(text, headings)
    assert bodies[0].startswith("The installer boots from a USB stick")
    assert "Debian Handbook" not in bodies[0].split("\n\n")[0]


def test_pdf_without_outline_finds_headings_by_font_size():
    text, headings = _headings("guide.pdf", pdf_bytes(outline=False))
    assert [h.origin for h in headings] == ["font"] * 5
    assert [strip_numbering(h.title) for h in headings] == [t for t, _ in SECTIONS]
    assert [h.page for h in headings] == [1, 2, 3, 4, 5]
    assert all(h.located for h in headings)
    # The 9 pt running header is smaller than the body text: not a heading candidate.
    assert not any("Handbook" in h.title for h in headings)


def test_a_large_running_header_is_counted_on_every_page_and_rejected():
    text, headings = _headings("guide.pdf", pdf_bytes(outline=False, header_size=16))
    headers = [h for h in headings if h.title == "Debian Handbook"]
    assert len(headers) == 5 and {h.repeats for h in headers} == {5}
    bodies = section_bodies(text, headings)
    rejected = heading_rejection("Debian Handbook", headers[0], bodies[headings.index(headers[0])])
    assert rejected is not None and rejected.reason == "running_header"
    assert "margin of 5 pages" in rejected.detail


def test_markdown_atx_and_setext_headings_but_not_comments_in_code():
    data = MARKDOWN.encode()
    text, headings = _headings("guide.md", data)
    assert [(h.title, h.level) for h in headings] == [
        ("Installing the system", 1),
        ("Upgrading packages safely", 2),
        ("Contents", 2),
        ("Choosing a mirror near you", 3),  # closing hashes dropped
    ]
    bodies = section_bodies(text, headings)
    assert bodies[1].startswith("The package manager keeps a database")
    assert "apt upgrade" in bodies[1]  # the fenced block belongs to its section


def test_html_headings_come_through_as_markdown():
    text, headings = _headings("guide.html", HTML.encode())
    assert [(h.title, h.level) for h in headings] == [
        ("Installing the system", 1),
        ("Upgrading packages safely", 2),
        ("Choosing a mirror near you", 3),
    ]
    assert section_bodies(text, headings)[2].startswith("A mirror close to you")


def test_a_rule_under_a_list_item_is_not_a_heading():
    headings = markdown_headings("- an item\n---\n\nPlain paragraph\n===\n")
    assert [h.title for h in headings] == ["Plain paragraph"]


def test_locating_ignores_hyphenation_line_breaks_and_the_running_header():
    text = (
        "CHAPTER 3. CHOOSING A DEBIAN DISTRIBUTION\n\n"
        "3.1.7 Why is it that testing could be broken for months? Won't the fixes intro-duced\n"
        "in unstable flow down?\n\nThe bug fixes trickle down after a number of days."
    )
    title = "Why is it that testing could be broken for months? Won't the fixes introduced in unstable flow down?"
    start, end = locate_heading(text, title, 0, len(text))
    assert text[start:end].startswith("3.1.7 Why is it")
    assert text[end:].strip().startswith("The bug fixes")
    # Case is kept: an upper-case running header does not match a mixed-case title.
    assert locate_heading(text, "Choosing a Debian distribution", 0, len(text)) is None


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("3.2", "numbers_only"),
        ("Chapter 4", "numbers_only"),
        ("Introduction", "generic_heading"),
        ("Table of Contents", "generic_heading"),
        ("References", "generic_heading"),
    ],
)
def test_headings_that_name_no_topic_are_rejected_with_a_reason(title, reason):
    heading = Heading(title, 1, 1, "outline", start=0, end=len(title))
    rejected = heading_rejection(strip_numbering(title), heading, "enough words " * 10)
    assert rejected is not None and rejected.reason == reason


def test_informative_headings_pass_and_empty_or_missing_sections_do_not():
    found = Heading("Choosing a mirror", 2, 3, "outline", start=0, end=17)
    assert heading_rejection("Choosing a mirror", found, "A mirror close to you " * 3) is None
    empty = heading_rejection("Choosing a mirror", found, "See below.")
    assert empty is not None and empty.reason == "empty_section"
    missing = heading_rejection(
        "Choosing a mirror", Heading("Choosing a mirror", 2, 3, "outline"), ""
    )
    assert missing is not None and missing.reason == "heading_not_found"
    assert "page 3" in missing.detail
    long_line = " ".join(["word"] * 30)
    by_font = heading_rejection(long_line, Heading(long_line, 1, 1, "font", 0, 5), "x " * 20)
    assert by_font is not None and by_font.reason == "too_long"
    # An outline's long title is the author's: kept.
    assert (
        heading_rejection(long_line, Heading(long_line, 1, 1, "outline", 0, 5), "x " * 20) is None
    )


def test_numbering_is_stripped_from_titles():
    assert strip_numbering("3.1.7 Why is it?") == "Why is it?"
    assert strip_numbering("Chapter 2: Setting up") == "Setting up"
    assert strip_numbering("A.1 Appendix matter") == "Appendix matter"
    assert strip_numbering("**Bold heading**:") == "Bold heading"
    assert strip_numbering("Why 3 mirrors?") == "Why 3 mirrors?"
