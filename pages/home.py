"""Home: what ragbench answers, the loop, and where each stage stands."""

from __future__ import annotations

import streamlit as st

from core.runs.folders import KIND_LABELS, RUN_KINDS, Run, list_runs
from core.runs.jobs import running_jobs
from pages._ui import guard_page  # _ui also leaves the pages-folder mode

guard_page()  # team mode: nothing of this page before sign-in

st.title("ragbench")
st.markdown(
    "**Does fine-tuning our embedding model on our own documents make retrieval and answers "
    "better, by how much, and can we trust the number?**\n\n"
    "Walk the pages in order: **Documents** (load, chunk, index) → **Questions** (synthetic "
    "questions with a quality gate) → **Fine-tune** (Matryoshka + MNRL) → **Retrieval eval** "
    "(base vs tuned with confidence intervals) → **RAG eval** (answers scored with RAGAS) → "
    "**Runs** (history, comparison, export). The sample corpus (the Debian FAQ, 73 pages, with a "
    "hand-written question set) lets you try the whole loop offline."
)
METRICS_PER_ROW = 5  # nine in one row cut every label at 1400 px ('Chroma i…', 'Question…')


def run_counts_ui(runs: list[Run], running: list[Run]) -> None:
    """Finished runs of each kind, a few metrics a row so each label fits."""
    for start in range(0, len(RUN_KINDS), METRICS_PER_ROW):
        kinds = RUN_KINDS[start : start + METRICS_PER_ROW]
        for col, kind in zip(st.columns(METRICS_PER_ROW), kinds, strict=False):
            # Finished runs only: a job still running is counted apart, not as a result.
            live = sum(1 for r in running if r.kind == kind)
            col.metric(
                KIND_LABELS[kind],
                sum(1 for r in runs if r.kind == kind and r.manifest.status == "done"),
                delta=f"{live} running" if live else None,
                delta_color="off",
                help="Finished runs (stopped and failed ones are listed on the Runs page).",
            )


runs = list_runs()
running = running_jobs()
run_counts_ui(runs, running)
if running:
    st.markdown("**Running now** (background jobs: closing a tab does not stop them)")
    for run in running:
        st.markdown(f"- {KIND_LABELS[run.kind]}: {run.manifest.name or run.id} (`{run.id}`)")
