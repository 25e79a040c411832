"""The hand-written question set for the sample corpus: schema, and every quote found in the PDF."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
QA_PATH = SAMPLE_DIR / "qa_sample.jsonl"
PDF_PATH = SAMPLE_DIR / "debian-faq.en.pdf"
README_PATH = SAMPLE_DIR / "README.md"

FIELDS = {"id", "question", "evidence", "page", "reference_answer"}
# 1-based PDF pages of each chapter's body (title pages, contents and index excluded).
CHAPTER_PAGES = {
    1: (9, 11),
    2: (13, 14),
    3: (15, 20),
    4: (21, 23),
    5: (25, 28),
    6: (29, 33),
    7: (35, 41),
    8: (43, 48),
    9: (49, 51),
    10: (53, 54),
    11: (55, 59),
    12: (61, 64),
    13: (65, 66),
    14: (67, 68),
    15: (69, 70),
    16: (71, 72),
}


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space."""
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def items() -> list[dict]:
    lines = QA_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def page_texts() -> list[str]:
    import pymupdf

    with pymupdf.open(PDF_PATH) as doc:
        return [normalize_space(page.get_text()) for page in doc]


@pytest.fixture(scope="module")
def document_text() -> str:
    import pymupdf

    with pymupdf.open(PDF_PATH) as doc:
        return normalize_space("\n".join(page.get_text() for page in doc))


def chapter_of(page: int) -> int | None:
    for chapter, (first, last) in CHAPTER_PAGES.items():
        if first <= page <= last:
            return chapter
    return None


def test_schema(items):
    assert len(items) >= 150
    for item in items:
        assert set(item) == FIELDS, item.get("id")
        assert re.fullmatch(r"s\d{3}", item["id"]), item["id"]
        assert isinstance(item["page"], int) and not isinstance(item["page"], bool)
        for field in ("question", "evidence", "reference_answer"):
            assert isinstance(item[field], str) and item[field].strip(), (item["id"], field)
        assert item["question"].endswith("?"), item["id"]
        assert 8 <= len(item["evidence"].split()) <= 25, item["id"]
        assert item["evidence"] == normalize_space(item["evidence"]), item["id"]


def test_ids_and_questions_unique(items):
    ids = Counter(item["id"] for item in items)
    questions = Counter(normalize_space(item["question"]).lower() for item in items)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [q for q, n in questions.items() if n > 1] == []


def test_every_chapter_covered(items):
    chapters = Counter(chapter_of(item["page"]) for item in items)
    assert None not in chapters, "an item points at a title, contents, blank or index page"
    assert set(chapters) == set(CHAPTER_PAGES)


def test_evidence_found_once_on_its_page(items, page_texts):
    assert len(page_texts) == 73
    missing = [i["id"] for i in items if page_texts[i["page"] - 1].count(i["evidence"]) != 1]
    assert missing == []


def test_evidence_unique_in_whole_document(items, document_text):
    repeated = {i["id"]: document_text.count(i["evidence"]) for i in items}
    assert {k: n for k, n in repeated.items() if n != 1} == {}


def test_evidence_avoids_hyphenated_line_breaks(items):
    import pymupdf

    # A word split as "pack-\nages" normalises to "pack- ages"; mark those breaks so no quote spans one.
    with pymupdf.open(PDF_PATH) as doc:
        marked = [normalize_space(re.sub(r"-[ \t]*\n", "-\x01", page.get_text())) for page in doc]
    spanning = [i["id"] for i in items if i["evidence"] not in marked[i["page"] - 1]]
    assert spanning == []


def test_readme_states_item_count(items):
    readme = README_PATH.read_text(encoding="utf-8")
    assert f"{len(items)} items" in readme
