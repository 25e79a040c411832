"""End to end in a real browser: upload a real PDF, then walk every stage on the sample corpus
with the offline defaults and check that figures and charts appear.

Set RAGBENCH_SCREENSHOTS=docs/screenshots to keep a screenshot of each page (the README's).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import SHOTS, no_exception, shoot, wait_idle

pytestmark = pytest.mark.slow


def go(tab, url: str) -> None:
    tab.goto(url)
    tab.wait_for_selector("h1", timeout=120_000)
    wait_idle(tab)


def click(tab, name: str) -> None:
    tab.get_by_role("button", name=re.compile(name)).first.click()
    wait_idle(tab)


def expect_text(tab, pattern: str, timeout_s: float = 600) -> None:
    """Wait until text matching `pattern` is visible on the page (a script run may take a while to
    start). Data grids keep a hidden copy of their cells, which must not count."""
    tab.get_by_text(re.compile(pattern)).locator("visible=true").first.wait_for(
        timeout=timeout_s * 1000
    )
    wait_idle(tab)


def set_number(tab, label: str, value: int) -> None:
    box = tab.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(tab)


def test_walk_every_stage(page, app_url, tmp_path):
    import pymupdf

    # A real, freshly made PDF to upload: 3 pages of known text.
    pdf = tmp_path / "handbook.pdf"
    doc = pymupdf.open()
    for i in range(3):
        p = doc.new_page()
        p.insert_text(
            (72, 72),
            f"Page {i + 1}: the coolant pump model ZX-{i} must be flushed every 400 hours.",
        )
    doc.save(pdf)

    # 1. Documents, landing straight on the page URL: the shared sidebar must be there.
    go(page, app_url + "/documents")
    assert page.get_by_text("Chroma", exact=True).count() >= 1, (
        "the entrypoint's sidebar is missing"
    )
    page.locator('input[type="file"]').first.set_input_files(str(pdf))
    wait_idle(page)
    click(page, "^Build corpus run")
    expect_text(page, r"1 document\(s\), [1-3] chunks")
    no_exception(page)
    click(page, "Use the sample corpus")
    expect_text(page, r"1 document\(s\), 2\d\d chunks")
    click(page, "Index into Chroma")
    expect_text(page, r"chunk\(s\) embedded")
    no_exception(page)
    shoot(page, "1-documents", height=2000)

    # 2. Questions: the hand-written sample set on the sample corpus.
    go(page, app_url + "/questions")
    click(page, "Load the sample question set")
    expect_text(page, r"163 question\(s\) matched to chunks")
    no_exception(page)
    shoot(page, "2-questions", height=2400)

    # 3. Fine-tune: one short epoch as a background job; the page polls the run folder.
    go(page, app_url + "/finetune")
    set_number(page, "Epochs", 1)
    set_number(page, "Max sequence length (0 = model's)", 128)
    click(page, "Start fine-tune")
    expect_text(page, r"Done\.", timeout_s=900)
    assert page.locator(".js-plotly-plot").count() >= 1, "no training charts"
    no_exception(page)
    shoot(page, "3-finetune", height=2600)

    # 4. Retrieval eval: base vs the tuned model, with charts.
    go(page, app_url + "/retrieval_eval")
    click(page, "Run evaluation")
    page.locator(".js-plotly-plot").first.wait_for(timeout=600_000)
    wait_idle(page)
    # The headline verdict (core.evaluation.verdict), in words, and a max-T adjusted verdict per
    # dim. "not significant" must not pass for "significant": each pattern names which it found.
    expect_text(
        page,
        r"^(No significant difference between .+|.+ is significantly (better|worse) than .+) "
        r"\(ndcg@10, primary metric; one family of \d+ tests, every model and dim of this "
        r"evaluation, Westfall–Young max-T adjusted\)",
    )
    expect_text(page, r"\b(not significant|significant) \(max-T p=[<0-9.]+\)")
    assert page.get_by_text(re.compile(r"Gold chunks: \d+ questions in \d+ clusters")).count() >= 1
    assert page.locator(".js-plotly-plot").count() >= 2, "metric and delta charts expected"
    no_exception(page)
    shoot(page, "4-retrieval-eval", height=5200)  # verdict, charts, deltas, trade-off, flips

    # 5. RAG eval. Answering with the 135M model takes minutes, so the walk runs it (5 questions,
    # judge-free metrics) only when it takes the README's screenshots; the `llm` test covers it.
    go(page, app_url + "/rag_eval")
    no_exception(page)
    if SHOTS:
        click(page, "Generate answers and score")
        page.locator(".js-plotly-plot").first.wait_for(timeout=900_000)
        wait_idle(page, timeout_s=900)
        no_exception(page)
        shoot(page, "5-rag-eval", height=4200)  # RAGAS side by side, deltas, per question
    # 6. Runs: lineage, comparison and the report.
    go(page, app_url + "/runs")
    no_exception(page)
    shoot(page, "6-runs", height=2400)
    assert page.get_by_text(re.compile(r"retrieval_eval-")).count() >= 1
