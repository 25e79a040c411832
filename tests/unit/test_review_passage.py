"""The review grid shows the passage beside each question, and the gate never calls a
document's own sentence an LLM preamble (issue 26, review grid)."""

from __future__ import annotations

from core.questions.dataset import QAItem
from core.questions.from_documents import document_gate_config
from core.questions.gate import GateConfig, check_question
from core.questions.review import REVIEW_COLUMNS, review_rows

SENTENCE = "Of course, it would be useful if the package also wrote its log to the console."


def test_a_document_sentence_is_not_a_preamble_but_an_llm_s_still_is():
    assert check_question(SENTENCE, config=document_gate_config()).accepted
    llm = check_question("Of course! Here are two questions about the chunk.", config=GateConfig())
    assert (llm.accepted, llm.reason) == (False, "preamble")


def test_the_review_grid_shows_the_passage_a_question_is_paired_with():
    long = "word " * 100
    items = [
        QAItem(id="q1", question="What is zorp?", chunk_id="c1"),
        QAItem(id="h1", question="Installing", chunk_id="c2", origin="heading", positive="Body."),
    ]
    rows = review_rows(items, {"c1": "Zorp is a tool.\n\nIt runs.", "c2": "Installing\n\nBody."})
    assert "passage" in REVIEW_COLUMNS
    assert [r["passage"] for r in rows] == ["Zorp is a tool. It runs.", "Body."]
    (cut,) = review_rows([items[0]], {"c1": long})
    assert cut["passage"].endswith(" …") and len(cut["passage"]) <= 302
    assert review_rows([items[0]])[0]["passage"] == ""  # no texts given: nothing to show
