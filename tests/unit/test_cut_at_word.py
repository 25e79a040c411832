"""Long text shown in a short space is cut at a word, never mid-word (issue 26: the fifth
Documents search hit was cut mid-word; the report's summary column cut raw JSON mid-string)."""

from __future__ import annotations

from core.text import cut_at_word


def test_a_cut_falls_between_words_and_says_so():
    text = "Debian is a free operating system for your computer"
    assert cut_at_word(text, 12) == "Debian is a …"  # 'free' began at 12: dropped whole
    assert cut_at_word(text, 11) == "Debian is a …"  # the limit falls on the space
    assert cut_at_word(text, 14) == "Debian is a …"  # 'fr' of 'free' is not kept
    assert cut_at_word(text, len(text)) == text  # short enough: untouched, no ellipsis


def test_one_word_longer_than_the_limit_is_the_only_mid_word_cut():
    assert cut_at_word("supercalifragilistic", 5) == "super …"


def test_the_review_grid_and_the_report_cut_at_a_word_too():
    from core.questions.dataset import QAItem
    from core.questions.review import PASSAGE_CHARS, review_rows
    from core.report.html import _summary_text

    long = " ".join(["overlapping"] * 100)  # 12 characters a word with its space
    assert _summary_text({"note": long}) == "note: " + " ".join(["overlapping"] * 5) + " …"
    (row,) = review_rows([QAItem(id="q", question="Why?", chunk_id="c")], {"c": long})
    assert row["passage"] == " ".join(["overlapping"] * (PASSAGE_CHARS // 12)) + " …"
