"""Streamlit-only: the Retrieval eval page's cross-fitted evaluation (core.crossfit): the recipe,
what a split and a K-fold evaluation can detect and what it costs, Start, progress with Stop,
Resume for a stopped one, and the fold spread beside a cross-fitted result."""

from __future__ import annotations

import streamlit as st

from core.crossfit.config import CrossfitConfig
from core.crossfit.job import resume_crossfit, start_crossfit
from core.crossfit.plan import estimate_cost, plan_power
from core.crossfit.stage import stop_crossfit
from core.embeddings import ModelSpec
from core.errors import RagbenchError
from core.finetune.config import FinetuneConfig
from core.runs.folders import list_runs
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._ui import cached_model, error_boundary, locked, run_picker

JOBS_KEY = "reval_cf_jobs"


def _config_ui(qa_id: str) -> CrossfitConfig | None:
    cols = st.columns(5)
    folds = cols[0].number_input("Folds (K)", 2, 10, 5, key="reval_cf_folds")
    epochs = cols[1].number_input("Epochs", 1, 20, 2, key="reval_cf_epochs")
    batch = cols[2].number_input("Batch size", 2, 512, 32, key="reval_cf_batch")
    length = cols[3].number_input("Max length", 16, 1024, 256, step=16, key="reval_cf_len")
    seed = cols[4].number_input("Fold seed", 0, 2**31 - 1, 42, key="reval_cf_seed")
    left, right = st.columns(2)
    bm25 = left.checkbox("BM25 on the same questions", True, key="reval_cf_bm25")
    final = right.checkbox(
        "Also train the model to ship on every question", False, key="reval_cf_final"
    )
    try:
        return CrossfitConfig(
            qa_run_id=qa_id,
            folds=int(folds),
            seed=int(seed),
            recipe=FinetuneConfig(
                base_model=ModelSpec(),
                epochs=int(epochs),
                batch_size=int(batch),
                max_seq_length=int(length),
            ),
            include_bm25=bool(bm25),
            final_model=bool(final),
        )
    except RagbenchError as exc:
        st.error(str(exc))
        return None


def _resume_ui() -> None:
    """Stopped or failed cross-fits, each with a Resume button."""
    halted = [r for r in list_runs("crossfit") if r.manifest.status in ("stopped", "failed")]
    for run in halted[:5]:
        done = run.manifest.summary.get("folds_done", 0)
        st.caption(f"{run.manifest.name} (`{run.id}`): {run.manifest.status} after {done} fold(s).")
        if st.button("Resume", key=f"reval_cf_resume_{run.id}", disabled=locked("run")):
            with error_boundary("Resuming the cross-fit"):
                resume_crossfit(run.id)
                st.toast(f"Cross-fit {run.id} resumes at its next unfinished fold.")
                st.rerun()


def crossfit_ui() -> None:
    """The cross-fitted evaluation section of the Retrieval eval page."""
    st.caption(
        "A split evaluation tests only the held-out 15% of your questions. A cross-fit deals the "
        "questions' clusters into K folds and fine-tunes one model per fold, with the same "
        "recipe, on the other folds: every question is then scored by a model that never saw it "
        "or its chunks, so all of them count. It judges the recipe (the gain of fine-tuning this "
        "way on this data), and costs K fine-tunes."
    )
    qa_id = run_picker("qa", "Question set to cross-fit", key="reval_cf_qa")
    if qa_id is None:
        return
    config = _config_ui(qa_id)
    if config is None:
        return
    plan_col, start_col = st.columns(2)
    if plan_col.button("What can it detect?", key="reval_cf_plan"):
        with error_boundary("Planning the cross-fit"):
            plan = plan_power(config, model_loader=lambda s: cached_model(s.source, s.ref))
            st.info(plan.text())
            st.caption(f"Cost: {estimate_cost(config).text()}")
    if start_col.button(
        "Start cross-fit", type="primary", key="reval_cf_start", disabled=locked("run")
    ):
        with error_boundary("Starting the cross-fit"):
            run = start_crossfit(config)
            st.toast(f"Cross-fit {run.id} started in the background: {config.folds} fine-tunes.")
    running_panel("crossfit", JOBS_KEY, "cross-fit", stop=stop_crossfit)
    ended = ended_job("crossfit", JOBS_KEY)
    if ended is not None:
        ended_notice(ended, "cross-fit", "The cross-fit finished: its evaluation is shown below.")
        result_id = ended.manifest.summary.get("retrieval_eval")
        if result_id:
            st.session_state["reval_pick"] = result_id
    _resume_ui()


def fold_spread_ui(result) -> None:  # noqa: ANN001 - core.evaluation.results.RetrievalEvalResult
    """A cross-fitted result's primary metric per fold: how much the recipe's gain varies."""
    spread = result.fold_spread()
    if spread.empty:
        return
    st.markdown(
        f"**{result.primary_metric} per fold** (each fold model on the questions it never saw)"
    )
    st.dataframe(
        spread.assign(
            base=spread["base"].round(3), tuned=spread["tuned"].round(3), delta=spread["delta"]
        ).style.format({"delta": "{:+.3f}"}),
        hide_index=True,
        key="reval_cf_spread",
    )
