"""Streamlit-only: the Fine-tune page's reranker section: train a cross-encoder on a question set
as a background job (core.rerank), follow it with Stop, and list finished rerankers with their
validation figures. Evaluating one is the Retrieval eval's job (and `eval-retrieval --reranker`)."""

from __future__ import annotations

import streamlit as st

from core.errors import RagbenchError
from core.rerank.config import RerankerConfig, check_reranker_config
from core.rerank.control import start_reranker, stop_reranker
from core.rerankers import parse_reranker, resolve_reranker
from core.runs.folders import list_runs
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._ui import locked, run_picker

KEY = "ft_rr"


def _config_ui(qa_id: str) -> RerankerConfig | None:
    """The reranker's settings, checked; None (with the message) when refused."""
    c1, c2, c3 = st.columns(3)
    start = c1.text_input(
        "Reranker start",
        value="default",
        key=f"{KEY}_start",
        help="default (the embedding model's transformer with a new head: weak), "
        "local:<cross-encoder folder>, hub:<id> (online), run:<reranker run>",
    )
    epochs = c2.number_input("Reranker epochs", 1, 20, 1, key=f"{KEY}_epochs")
    negatives = c3.number_input("Hard negatives per question", 1, 16, 4, key=f"{KEY}_negatives")
    try:
        spec = parse_reranker(start.strip() or "default")
        resolve_reranker(spec)  # a missing folder or run: said now, not at Start
        return RerankerConfig(
            qa_run_id=qa_id, start=spec, epochs=int(epochs), num_negatives=int(negatives)
        )
    except RagbenchError as exc:
        st.error(str(exc))
        return None


def _finished_table() -> None:
    runs = [r for r in list_runs("reranker") if r.manifest.status in ("done", "stopped")]
    if not runs:
        return
    rows = [
        {
            "reranker run": r.id,
            "name": r.manifest.name,
            "status": r.manifest.status,
            "miner alone ndcg@10": r.manifest.summary.get("ndcg@10_retriever"),
            "before training": r.manifest.summary.get("ndcg@10_before"),
            "after training": r.manifest.summary.get("ndcg@10_after"),
        }
        for r in runs
    ]
    st.caption("Validation ndcg@10 of the miner's top N, reranked (the test split is scored by "
               "Retrieval eval, with `--reranker run:ID` on the command line):")  # fmt: skip
    st.dataframe(rows, hide_index=True, key=f"{KEY}_runs")


def reranker_ui() -> None:
    """Train a reranker in the background; follow it; list the finished ones."""
    st.subheader("Reranker (cross-encoder)")
    st.caption(
        "A cross-encoder reads the question with each retrieved passage and reorders the top "
        "hits. It trains on the same training pairs, with hard negatives mined from the train "
        "split only (never a validation or test chunk)."
    )
    ended = ended_job("reranker", KEY)
    if ended is not None:
        ended_notice(ended, "reranker training")
    running_panel("reranker", KEY, "reranker training", stop=stop_reranker)
    qa_id = run_picker("qa", "Question set for the reranker", key=f"{KEY}_qa")
    if qa_id is not None:
        cfg = _config_ui(qa_id)
        if cfg is not None:
            for warning in check_reranker_config(cfg):
                st.warning(warning)
            if st.button("Train reranker", key=f"{KEY}_start_job", disabled=locked("run")):
                run = start_reranker(cfg)
                st.session_state.setdefault(f"{KEY}_watched", set()).add(run.id)
                st.toast(f"Reranker training {run.id} started in the background.")
                st.rerun()
    _finished_table()
