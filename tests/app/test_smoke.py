"""Every page renders through the real entrypoint without an exception."""

from __future__ import annotations

import pytest

from tests.app.conftest import page_path

PAGES = [
    "home.py",
    "documents.py",
    "questions.py",
    "finetune.py",
    "retrieval_eval.py",
    "rag_eval.py",
    "runs.py",
]


def test_home_renders_with_sidebar(app):
    app.run()
    assert not app.exception, app.exception
    assert app.title[0].value == "ragbench"
    assert any("Device" in c.value for c in app.sidebar.caption)
    app.run()  # a rerun keeps the shared sidebar
    assert app.sidebar.radio(key="llm_backend").value == "embedded"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app, page):
    app.run()
    app.switch_page(page_path(page)).run()
    assert not app.exception, f"{page}: {app.exception}"
    assert app.title, f"{page} shows no title"


def test_llm_test_connection_reports_down_server(app):
    app.run()
    app.sidebar.radio(key="llm_backend").set_value("openai").run()
    app.text_input(key="llm_base_url").set_value("http://127.0.0.1:9/v1").run()
    app.button(key="llm_test").click().run()
    assert not app.exception
    assert any("Cannot reach the LLM server" in e.value for e in app.error)


def test_home_names_run_kinds_as_people_do_and_lists_running_jobs(app):
    import os

    from core.runs.folders import create_run
    from core.runs.jobs import process_start_time

    job = create_run("retrieval_eval", name="base vs tuned")
    me = os.getpid()  # an alive process stands in for the job's
    job.set_status(
        "running", job_module="core.evaluation.job", pid=me, pid_started=process_start_time(me)
    )
    gone = create_run("retrieval_eval", name="left running by a killed CLI")
    gone.set_status("running")  # no job behind it: not listed
    app.run()
    labels = [m.label for m in app.metric]
    assert "Retrieval evals" in labels and "retrieval_eval" not in labels
    assert any(f"base vs tuned (`{job.id}`)" in m.value for m in app.markdown)
    assert not any(gone.id in m.value for m in app.markdown)
    # Issue 26: a running job is not a finished run (it was counted as one).
    evals = next(m for m in app.metric if m.label == "Retrieval evals")
    assert evals.value == "0" and evals.delta == "1 running"


def _rows_of_columns(block) -> list[list]:
    """Every row of st.columns under `block`, as the lists of its columns."""
    from streamlit.testing.v1.element_tree import Block, Column

    rows = []
    children = list(block.children.values())
    columns = [c for c in children if isinstance(c, Column)]
    if columns:
        rows.append(columns)
    for child in children:
        if isinstance(child, Block):
            rows.extend(_rows_of_columns(child))
    return rows


def test_home_shows_its_run_counts_a_few_a_row_so_no_label_is_cut(app):
    """Browser tour: nine metrics in one row cut every label at 1400 px ('Chroma i…')."""
    from core.runs.folders import KIND_LABELS

    app.run()
    assert not app.exception, app.exception
    assert sorted(m.label for m in app.metric) == sorted(KIND_LABELS.values())
    rows = [r for r in _rows_of_columns(app.main) if any(c.metric for c in r)]
    assert len(rows) >= 2 and all(len(r) <= 5 for r in rows), [len(r) for r in rows]
