"""End to end in a real browser, with no LLM: pairs from the sample PDF's own headings and
sentences, aligned with the hand-written set; a model tuned on them; evaluated on the
hand-written questions, with what it trained on and saw beside the figures."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import no_exception, shoot, wait_idle
from tests.e2e.test_browser_walk import (
    choose,
    click,
    expect_text,
    go,
    run_evaluation,
    set_number,
)

pytestmark = pytest.mark.slow


def test_documents_to_a_model_scored_on_human_questions_without_an_llm(page, app_url):
    elsewhere: list[str] = []  # requests to any host but the app: none, even for the icon
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith((app_url, "data:", "blob:")) else elsewhere.append(r.url)
        ),
    )
    go(page, app_url + "/documents")
    icon = page.locator("link[rel~='icon']").first.get_attribute("href") or ""
    assert icon.startswith(app_url), icon  # the icon ships with the app
    assert not elsewhere, elsewhere
    click(page, "Use the sample corpus")
    expect_text(page, r"1 document, 2\d\d chunks")

    go(page, app_url + "/questions")
    click(page, "Load the sample question set")
    expect_text(page, r"163 question\(s\) matched to chunks")
    page.get_by_text("From the documents (no LLM)", exact=True).click()
    wait_idle(page)
    click(page, "^Preview$")
    expect_text(page, r"^Before saving: \d+ pair\(s\), \d+ accepted\.$")
    assert page.get_by_text(re.compile(r"generic_heading|empty_section")).count() >= 1
    no_exception(page)
    shoot(page, "pairs-from-documents", height=2600)
    click(page, "Save question set")
    expect_text(page, r"pair\(s\) from the documents\.")

    go(page, app_url + "/finetune")
    choose(page, "Question set", "From the documents")
    set_number(page, "Epochs", 1)
    set_number(page, "Max sequence length (0 = model's)", 128)
    expect_text(page, r"heading \d+ · cloze \d+ training pairs")
    click(page, "Start fine-tune")
    expect_text(page, r"Done\.", timeout_s=900)
    no_exception(page)

    go(page, app_url + "/retrieval_eval")
    choose(page, "Question set (qa run)", "Sample questions")
    expect_text(page, r"^all-MiniLM-L6-v2 · From the documents")  # the default name says so
    run_evaluation(page)
    expect_text(page, r"What the tuned models trained on", timeout_s=900)
    expect_text(
        page, r"none of the 20 evaluated questions or their gold chunks were in its training"
    )
    no_exception(page)
