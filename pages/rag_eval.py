"""RAG eval page: answers of the base and tuned retrievers side by side, scored with RAGAS."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from core.charts.rag import ragas_bars_figure
from core.config import LLMSettings
from core.embeddings import ModelSpec, base_model_of
from core.formatting import count_text, fmt
from core.rag.answering import RagConfig
from core.rag.job import RagEvalRequest, start_rag_eval, start_retry
from core.rag.metrics import (
    DEFAULT_METRICS,
    LLM_METRICS,
    METRICS,
    NON_LLM_METRICS,
    RagasConfig,
    default_metrics,
    estimate_judge_calls,
    needs_reference_text,
    reference_count,
)
from core.rag.results import RagasEvalResult, export_json, load_ragas_eval
from core.rag.side_by_side import (
    per_question_table,
    rag_retrieval_flips,
    sample_means,
    sample_reasons,
)
from core.rag.summary import scoring_status, summary_display, summary_table
from core.report.tables import ragas_deltas_table
from core.runs.folders import list_runs, load_run
from core.runs.lineage import model_run_label, model_runs_for_qa, preferred_model
from core.spreadsheet import csv_bytes
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._rerank_ui import rag_reranker_ui
from pages._ui import (
    audited,
    chroma_settings,
    current_run,
    error_boundary,
    guard_page,
    llm_settings,
    locked,
    remember_run,
    run_picker,
)

guard_page()  # team mode: nothing of this page before sign-in

RESULT_KEY = "rag_result_run"
RESULT_PICKER = "rag_result"
JOBS_KEY = "rag"
DIM_CHOICES = [None, 768, 512, 384, 256, 128, 64]
LOW_CONFIDENCE = (
    "**The judge is the embedded 135M model: low-confidence scores; point the app at a stronger "
    "model in the sidebar** (LLM → OpenAI-compatible server: Ollama, vLLM, llama.cpp or OpenAI). "
    "The judge-free metrics (chunk-id and string-match context precision/recall, semantic "
    "similarity) do not depend on it."
)


@st.cache_data(show_spinner=False)
def cached_result(run_id: str, updated_at: str) -> RagasEvalResult:
    """A saved RAGAS evaluation, read once per run version."""
    return load_ragas_eval(run_id)


def judge_note(settings: LLMSettings, judged: bool) -> None:
    """Who writes the answers and who judges them: the caveat on the embedded model's judging
    only when a judged metric is chosen."""
    if settings.backend == "embedded" and judged:
        st.warning(LOW_CONFIDENCE, icon=":material/warning:")
    elif settings.backend == "embedded":
        st.caption(
            "Answers come from the embedded 135M model (demo quality); no judge is called for "
            "the chosen metrics."
        )
    else:
        role = "Generator and judge" if judged else "Generator (no judge called)"
        st.caption(f"{role}: **{settings.model}** at `{settings.base_url}`.")


def judge_ui(settings: LLMSettings, n_references: int) -> RagasConfig | None:
    """The metrics and the judge's settings; None until at least one metric is picked. With no
    reference answer among the questions, no metric that needs one is preselected."""
    embedded = settings.backend == "embedded"
    metrics = st.multiselect(
        "Metrics",
        list(DEFAULT_METRICS),
        # The 135M model rarely replies with valid JSON and needs ~10-30 s per judge call.
        default=list(default_metrics(embedded, has_references=n_references > 0)),
        format_func=lambda m: METRICS[m].label,
        key="rag_metrics",
        help="Judged: "
        + ", ".join(LLM_METRICS)
        + ". Judge-free: "
        + ", ".join(NON_LLM_METRICS)
        + ".",
    )
    repeats = st.number_input(
        "Judge repeats",
        1,
        10,
        1,
        key="rag_repeats",
        help="Judge every judged metric this many times (separate cached draws) and show the spread.",
    )
    strictness = st.number_input(
        "Answer-relevancy questions per answer",
        1,
        5,
        3,
        key="rag_strictness",
        help="Sent as separate single-completion requests, so servers that allow only n=1 work.",
    )
    temperature = st.number_input("Judge temperature", 0.0, 1.0, 0.0, 0.1, key="rag_temp")
    judge_note(settings, judged=any(METRICS[m].needs_llm for m in metrics))
    lacking = needs_reference_text(metrics, n_references)
    if lacking:
        st.warning(lacking)
    if embedded:
        st.caption(
            "With the embedded model the judge-free metrics are preselected: its judged scores mostly "
            "fail to parse (each failure is counted) and every judge call takes 10-30 s on a CPU."
        )
    if not metrics:
        st.caption("Pick at least one metric.")
        return None
    return RagasConfig(
        metrics=tuple(metrics),
        repeats=int(repeats),
        strictness=int(strictness),
        temperature=float(temperature),
    )


def tuned_ui(qa_id: str, model_runs: list, names: dict[str, str]) -> str | None:
    """The tuned retriever: the session's current model when it finished, else the newest
    finished one (core.runs.lineage.preferred_model); None for base only."""
    first = preferred_model(model_runs, current_run("model"))
    return st.selectbox(
        "Tuned retriever (model run)",
        [None, *names],
        index=1 + list(names).index(first) if first in names else 0,
        format_func=lambda rid: "none: base only" if rid is None else names.get(rid, rid),
        key=f"rag_tuned_{qa_id}",  # one choice per question set (labels depend on it)
        on_change=lambda: remember_run("model", st.session_state.get(f"rag_tuned_{qa_id}")),
    )


def setup_ui() -> dict | None:
    """The form; returns the chosen settings when the user pressed Run."""
    qa_id = run_picker("qa", "Question set (qa run)", key="rag_qa")
    if qa_id is None:
        st.info(
            "Generate questions on the **Questions** page first; answers are scored on their test split."
        )
        return None
    model_runs, hidden = model_runs_for_qa(qa_id)
    names = {r.id: model_run_label(r, qa_id) for r in model_runs}
    settings = llm_settings()
    left, right = st.columns(2)
    with left:
        tuned_id = tuned_ui(qa_id, model_runs, names)
        tuned_run = load_run(tuned_id) if tuned_id else None
        base = base_model_of([tuned_run])
        st.caption(
            f"Base retriever: **{base.label}**" + (" (the tuned model's base)" if tuned_run else "")
        )
        if hidden:
            st.caption(f"{hidden} model run(s) trained on another corpus are hidden.")
        k = st.slider("Top-k passages", 1, 10, 5, key="rag_k")
        hybrid = st.checkbox(
            "Also answer with a hybrid: the tuned (or base) model + BM25, fused by rank",
            value=False,
            key="rag_hybrid",
        )
        reranker = rag_reranker_ui(qa_id)
        dim = st.selectbox(
            "Dimension",
            DIM_CHOICES,
            format_func=lambda d: "native" if d is None else str(d),
            key="rag_dim",
            help="Matryoshka truncation of the query and chunk vectors (each dim has its own collection).",
        )
        default_limit = 5 if settings.backend == "embedded" else 0
        limit = st.number_input(
            "Questions (0 = the whole test split)",
            0,
            10000,
            default_limit,
            key="rag_limit",
            help="The embedded model needs several seconds per call: keep it to a few questions.",
        )
    with right:
        n_references, n_test = reference_count(qa_id)
        st.caption(
            f"Test split: {count_text(n_test, 'question')}, {n_references} with a reference answer."
        )
        ragas_config = judge_ui(settings, n_references)
    if ragas_config is None:
        return None
    n_questions = int(limit) or None
    estimate = estimate_judge_calls(n_questions or 1, ragas_config, int(k))
    per_retriever = sum(estimate.values())
    retrievers = (2 if tuned_id else 1) + int(hybrid) + int(bool(reranker))
    if per_retriever:
        st.caption(
            f"Judge requests before caching: about {per_retriever * retrievers:,}"
            + ("" if n_questions else " per question")
            + f" ({', '.join(f'{m} {n}' for m, n in estimate.items() if n)} per retriever)."
        )
    else:
        st.caption("No judge requests: the chosen metrics need no LLM judge.")
    if not st.button(
        "Generate answers and score", type="primary", key="rag_run", disabled=locked("run")
    ):
        return None
    return {
        "request": RagEvalRequest(
            qa_run_id=qa_id,
            base=base,
            tuned=ModelSpec("run", tuned_id) if tuned_id else None,
            hybrid=hybrid,
            rag_config=RagConfig(k=int(k), dim=dim, limit=n_questions),
            ragas_config=ragas_config,
            reranker=reranker,
        ),
        "settings": settings,
    }


def start_ui(choice: dict) -> None:
    """Start answering and scoring in the background; the panel below follows it."""
    with error_boundary("Starting the RAG evaluation"):
        run = start_rag_eval(choice["request"], choice["settings"], chroma_settings())
        st.toast(f"RAG evaluation {run.id} started in the background.")


def show_ended() -> None:
    """A RAG evaluation that ended while this page watched it: picked below when it is done,
    otherwise how it ended."""
    run = ended_job("ragas_eval", JOBS_KEY)
    if run is None:
        return
    if run.manifest.status == "done":
        st.session_state[RESULT_KEY] = run.id
        st.session_state[RESULT_PICKER] = run.id  # the picker below shows the run just made
    ended_notice(
        run,
        "RAG evaluation",
        f"RAG evaluation **{run.id}**: {run.manifest.summary.get('n_failed', 0)} failed "
        "judgement(s); shown below.",
    )


def pick_result() -> str | None:
    runs = [r for r in list_runs("ragas_eval") if r.manifest.status == "done"]
    if not runs:
        st.caption("No RAGAS evaluation yet.")
        return None
    ids = [r.id for r in runs]
    names = {r.id: f"{r.manifest.name} · {r.manifest.created_at[:16]}" for r in runs}
    wanted = st.session_state.get(RESULT_KEY)
    index = ids.index(wanted) if wanted in ids else 0
    return st.selectbox(
        "Evaluation", ids, index=index, format_func=lambda rid: names[rid], key=RESULT_PICKER
    )


def summary_ui(result: RagasEvalResult, table: pd.DataFrame) -> None:
    summary = result.summary
    if summary.get("low_confidence_judge") and any(
        METRICS[m].needs_llm for m in summary.get("metrics") or [] if m in METRICS
    ):
        st.warning(LOW_CONFIDENCE, icon=":material/warning:")
    judge = (summary.get("judge") or {}).get("label", "none (judge-free metrics only)")
    st.caption(
        f"Judge: **{judge}** · embeddings: {summary.get('embeddings') or '—'} · "
        f"string match: {summary.get('string_similarity', '')}"
    )
    order = summary.get("retrievers_order") or list(dict.fromkeys(table["retriever"]))
    st.plotly_chart(ragas_bars_figure(table, order), key="rag_bars")
    judged = bool(summary.get("judge")) and any(
        METRICS[m].needs_llm for m in summary.get("metrics") or [] if m in METRICS
    )
    level, text = scoring_status(table, result.scores, judged)
    {"error": st.error, "warning": st.warning, "success": st.success}[level](text)
    st.dataframe(summary_display(table), hide_index=True, key="rag_summary_table")
    deltas = ragas_deltas_table(result)
    if not deltas.empty:
        st.caption(
            "Each retriever minus base, paired over questions both scored: bootstrap CI, "
            "sign-flip p, Holm-adjusted across the metrics of one retriever (core.evaluation.verdict)."
        )
        st.dataframe(deltas, hide_index=True, key="rag_cmp_table")
    usage = result.usage.get("scoring", {})
    judge_usage = usage.get("judge", {})
    gen = result.usage.get("generation", {})
    gen_text = " · ".join(
        f"{label}: {u.get('calls', 0)} calls, {u.get('prompt_tokens', 0):,}+{u.get('completion_tokens', 0):,} tokens"
        for label, u in gen.items()
    )
    st.caption(
        f"Tokens — answering: {gen_text or '—'} · judging: {judge_usage.get('calls', 0)} calls, "
        f"{judge_usage.get('cached', 0)} cached, {judge_usage.get('prompt_tokens', 0):,} prompt + "
        f"{judge_usage.get('completion_tokens', 0):,} completion tokens."
    )


def retry_ui(result: RagasEvalResult) -> None:
    n_failed = int((result.scores["status"] == "failed").sum())
    if not n_failed or not st.button(
        f"Retry the {n_failed} failed judgement(s)", key="rag_retry", disabled=locked("run")
    ):
        return
    with error_boundary("Retry"):
        run = start_retry(result.run_id, llm_settings())
        st.toast(f"Re-scoring the failed judgements in the background ({run.id}).")
        st.rerun()  # the panel at the top follows it


def questions_ui(result: RagasEvalResult) -> pd.DataFrame:
    st.subheader("Per question")
    labels = result.summary.get("retrievers_order") or list(result.samples)
    metrics = result.summary.get("metrics") or []
    flips = rag_retrieval_flips(result)
    c1, c2 = st.columns(2)
    worse_metric = c1.selectbox(
        "Compare on",
        [None, *metrics],
        format_func=lambda m: m or "any metric",
        key="rag_worse_metric",
    )
    table = per_question_table(
        result, worse_metric=worse_metric, flips=flips.by_question if flips else None
    )
    only_worse = c2.checkbox(
        "Only questions where tuned is worse", key="rag_only_worse", disabled="tuned" not in labels
    )
    if flips is not None:
        at = f" at {flips.dim}d" if flips.dim else ""
        st.caption(
            f"Retrieval flips (hit@{flips.k}, {flips.model}{at} against the base) from retrieval "
            f"eval run `{flips.run_id}`: gained = base miss → tuned hit, lost = the reverse. Did "
            "better ranks give better answers?"
        )
    elif "tuned" in labels:
        st.caption(
            "No retrieval eval of this question set compares the tuned retriever's model with "
            "the base yet: run one to see which questions flipped."
        )
    shown = table[table["tuned_worse"]] if only_worse and "tuned_worse" in table else table
    cols = ["sample_id", "question"] + [f"{label}_answer" for label in labels]
    cols += [f"{label}_{m}" for m in metrics for label in labels]
    cols += [c for c in ("tuned_worse", "retrieval_flip") if c in shown]
    st.dataframe(shown[[c for c in cols if c in shown]], hide_index=True, key="rag_questions")
    if shown.empty:
        return table
    sid = st.selectbox(
        "Question details",
        list(shown["sample_id"]),
        format_func=lambda s: f"{s}: {shown.set_index('sample_id').loc[s, 'question'][:90]}",
        key="rag_detail",
    )
    details_ui(result, sid, labels, metrics)
    return table


def details_ui(result: RagasEvalResult, sid: str, labels: list[str], metrics: list[str]) -> None:
    reasons = sample_reasons(result.scores, sid)
    means = sample_means(result.scores, sid)
    columns = st.columns(len(labels))
    for col, label in zip(columns, labels, strict=True):
        sample = next((s for s in result.samples.get(label, []) if s.id == sid), None)
        with col:
            st.markdown(f"#### {label}")
            if sample is None:
                st.caption("No answer for this question.")
                continue
            st.markdown(
                f"**Answer:** {sample.response or '_(none: ' + (sample.error_kind or 'empty') + ')_'}"
            )
            if sample.reference:
                st.caption(f"Reference: {sample.reference}")
            for rank, (cid, text) in enumerate(
                zip(sample.retrieved_ids, sample.retrieved_contexts, strict=True), 1
            ):
                mark = "★ " if cid in sample.gold_ids else ""
                st.caption(f"[{rank}] {mark}{text[:400]}")
            mine = means.get(label, {})
            for metric in metrics:
                value = fmt(mine[metric]) if metric in mine else "—"
                why = reasons.get(label, {}).get(metric, "")
                st.markdown(f"- **{metric}**: {value}" + (f" — _{why[:300]}_" if why else ""))


def downloads_ui(result: RagasEvalResult, table: pd.DataFrame, questions: pd.DataFrame) -> None:
    """The scores, summary and answers as CSV (safe to open in a spreadsheet) and JSON, each
    download recorded in the audit log."""
    rid = result.run_id
    buttons = (
        ("Scores (CSV)", partial(csv_bytes, result.scores), f"{rid}-scores.csv", "scores"),
        ("Summary (CSV)", partial(csv_bytes, table), f"{rid}-summary.csv", "summary"),
        ("Per question (CSV)", partial(csv_bytes, questions), f"{rid}-questions.csv", "questions"),
        ("Everything (JSON)", partial(export_json, result), f"{rid}.json", "json"),
    )
    for col, (label, data, file_name, key) in zip(st.columns(4), buttons, strict=True):
        col.download_button(
            label,
            audited(data, [rid], label),
            file_name,
            on_click="ignore",
            key=f"rag_dl_{key}",
        )


st.title("RAG eval")
st.caption(
    "Answers from the base and the tuned retriever, side by side, scored with RAGAS. Failed "
    "judgements are counted and shown, never dropped from a mean in silence."
)
choice = setup_ui()
if choice is not None:
    start_ui(choice)
running_panel("ragas_eval", JOBS_KEY, "RAG evaluation")
st.divider()
st.subheader("Results")
show_ended()
result_id = pick_result()
if result_id is not None:
    with error_boundary("Loading the evaluation"):
        run = load_run(result_id)
        result = cached_result(result_id, run.manifest.updated_at)
        table = summary_table(result.summary)
        summary_ui(result, table)
        retry_ui(result)
        questions = questions_ui(result)
        downloads_ui(result, table, questions)
