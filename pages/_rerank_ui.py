"""Streamlit-only: the Fine-tune page's reranker section: train a cross-encoder on a question set
as a background job (core.rerank), follow it with Stop, and list finished rerankers with their
validation figures; and the Retrieval eval page's choice of rerankers to evaluate (retrieve, then
rerank: core.evaluation.reranking)."""

from __future__ import annotations

import streamlit as st

from core.errors import RagbenchError
from core.formatting import count_text, duration_text
from core.rerank.config import RerankerConfig, check_reranker_config
from core.rerank.control import start_reranker, stop_reranker
from core.rerankers import (
    DEFAULT_RERANK_TOP,
    MAX_RERANK_TOP,
    MIN_RERANK_TOP,
    RerankerSpec,
    finished_rerankers,
    parse_reranker,
    reranker_warning,
    resolve_reranker,
)
from core.runs.folders import list_runs
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._ui import locked, resend_label, run_picker

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
               "Retrieval eval: its *Rerank* section, or `--reranker run:ID`):")  # fmt: skip
    st.dataframe(rows, hide_index=True, key=f"{KEY}_runs")
    for r in runs:
        if warning := reranker_warning(r):
            st.warning(f"{r.manifest.name or r.id}: {warning}")


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


def rerank_choice_ui(
    qa_id: str, n_questions: int | None = None, n_retrievers: int = 1
) -> tuple[tuple[RerankerSpec, ...], int]:
    """The Retrieval eval's reranker choice: (rerankers trained on this question set to
    evaluate, passages reranked per question). Nothing chosen: ((), default top).
    `n_retrievers`: the retriever arms each reranker will reorder (for the time estimate)."""
    from core.evaluation.plan import RERANK_S_PER_PAIR

    runs = finished_rerankers(qa_id)
    with st.expander("Rerank (retrieve, then rerank)", expanded=False):
        if not runs:
            st.caption(
                "No reranker trained on this question set yet: train one in the Fine-tune "
                "page's *Reranker* section to compare reranking with fine-tuning and fusion."
            )
            return (), DEFAULT_RERANK_TOP
        names = {r.id: f"{r.manifest.name or r.id} · {r.manifest.status}" for r in runs}
        resend_label(f"reval_rerankers_{qa_id}")
        chosen = st.multiselect(
            "Rerankers",
            list(names),
            default=[],
            format_func=lambda rid: names.get(rid, rid),
            key=f"reval_rerankers_{qa_id}",
            help="Each retriever (base, tuned, BM25, hybrids) is evaluated again with its top N "
            "reordered by the reranker, in the same paired tests.",
        )
        top = st.number_input(
            "Rerank the top N hits",
            MIN_RERANK_TOP,
            MAX_RERANK_TOP,
            DEFAULT_RERANK_TOP,
            step=10,
            key="reval_rerank_top",
        )
        if chosen and n_questions:
            pairs = n_retrievers * len(chosen) * n_questions * int(top)
            seconds = pairs * RERANK_S_PER_PAIR
            st.caption(
                f"Reranking {count_text(n_retrievers, 'retriever')} × "
                f"{count_text(len(chosen), 'reranker')} × {n_questions} questions × {int(top)} "
                f"passages: {duration_text(seconds)} on 2 CPU cores (a GPU is far faster)."
            )
        for run in runs:
            if run.id in chosen and (warning := reranker_warning(run)):
                st.warning(f"{names[run.id]}: {warning}")
    return tuple(RerankerSpec("run", rid) for rid in chosen), int(top)


def rag_reranker_ui(qa_id: str) -> str:
    """The RAG eval's optional reranked retriever: 'run:ID' of a reranker trained on this
    question set, or '' for none."""
    runs = finished_rerankers(qa_id)
    if not runs:
        return ""
    names = {r.id: f"{r.manifest.name or r.id} · {r.manifest.status}" for r in runs}
    resend_label(f"rag_reranker_{qa_id}")
    chosen = st.selectbox(
        "Also answer with a reranker: the tuned (or base) model's top 50, reranked",
        [None, *names],
        format_func=lambda rid: "no reranker" if rid is None else names.get(rid, rid),
        key=f"rag_reranker_{qa_id}",
    )
    if chosen is None:
        return ""
    if warning := reranker_warning(runs[[r.id for r in runs].index(chosen)]):
        st.warning(warning)
    return f"run:{chosen}"
