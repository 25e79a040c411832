"""A retrieval evaluation runs as a background job: started in one tab, that tab closed, it is
still there when the page is opened again, with its progress and then its results. A second
browser session keeps its own selections."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import no_exception, wait_idle
from tests.e2e.test_browser_walk import (
    choose,
    click,
    expect_text,
    go,
    run_evaluation,
    selected,
)

pytestmark = pytest.mark.slow


def test_an_evaluation_outlives_its_tab_and_sessions_keep_their_own_choices(page, app_url):
    go(page, app_url + "/documents")
    click(page, "Use the sample corpus")
    expect_text(page, r"1 document, 2\d\d chunks")
    go(page, app_url + "/questions")
    click(page, "Load the sample question set")
    expect_text(page, r"163 question\(s\) matched to chunks")

    # Session A, in a second tab: the validation split, started, and the tab closed at once.
    first = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    starter = first.new_page()
    starter.set_default_timeout(120_000)
    go(starter, app_url + "/retrieval_eval")
    choose(starter, "Split", "^validation$")
    run_evaluation(starter)
    expect_text(starter, r"^Running:")
    assert starter.get_by_role("button", name="Stop").count() == 1
    first.close()  # the tab, and its session, gone mid-run

    # Session B, another browser context (another user): its own, untouched choices.
    other = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        tab = other.new_page()
        tab.set_default_timeout(120_000)
        go(tab, app_url + "/retrieval_eval")
        assert selected(tab, "Split") == "test"
        no_exception(tab)
    finally:
        other.close()

    # The page opened again: the job kept going and its results appear.
    go(page, app_url + "/retrieval_eval")
    page.locator(".js-plotly-plot").first.wait_for(timeout=600_000)
    wait_idle(page)
    assert page.get_by_text(re.compile(r"^Running:")).count() == 0
    assert selected(page, "Evaluation run").startswith("all-MiniLM-L6-v2 alone on")
    no_exception(page)
