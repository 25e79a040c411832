"""Retrieval eval page: base vs tuned per Matryoshka dimension, with intervals, tests and flips."""

from __future__ import annotations

from functools import partial

import streamlit as st

from core.charts.frontier import frontier_figure
from core.charts.retrieval import (
    delta_bars_figure,
    metric_vs_dim_figure,
    similarity_figure,
    tradeoff_figure,
)
from core.charts.style import context_caption
from core.embeddings import DEFAULT_MODEL_LABEL, ModelSpec, base_model_of
from core.errors import RunError
from core.evaluation.config import BM25_LABEL, SAMPLE_STS_CSV, RetrievalEvalConfig
from core.evaluation.flips import compute_flips
from core.evaluation.frontier import frontier_display, ship_caption
from core.evaluation.job import start_retrieval_eval
from core.evaluation.lexical import tuned_first
from core.evaluation.metrics import metric_names
from core.evaluation.readiness import split_size
from core.evaluation.reranking import retriever_arms
from core.evaluation.results import (
    DELTAS_FILE,
    METRICS_FILE,
    PER_QUERY_FILE,
    TRADEOFF_FILE,
    RetrievalEvalResult,
    load_retrieval_eval,
)
from core.evaluation.seen import seen_display
from core.evaluation.similarity import compare_similarity, load_similarity_pairs
from core.evaluation.verdict import PRIMARY_METRIC, deltas_display, method_text
from core.formatting import questions_text
from core.report.tables import delta_sentences
from core.runs.folders import load_run, status_phrase
from core.runs.jobs import running_jobs
from core.runs.lineage import model_run_label, model_runs_for_qa, preferred_model
from core.spreadsheet import export_bytes
from core.text import cut_at_word
from pages._crossfit_ui import crossfit_ui, fold_spread_ui
from pages._jobs_ui import ended_job, running_panel
from pages._rerank_ui import rerank_choice_ui
from pages._ui import (
    audited,
    cached_model,
    chroma_settings,
    current_run,
    error_boundary,
    guard_page,
    locked,
    plain_markdown,
    remember_run,
    run_picker,
)
from pages._verdict_ui import verdict_ui

guard_page()  # team mode: nothing of this page before sign-in

RESULT_KEY = "reval_result_run"
JOBS_KEY = "reval"
DIM_CHOICES = [1024, 768, 512, 384, 256, 128, 64, 32]
SPLIT_LABELS = {"test": "test", "validation": "validation", "train": "train", None: "all accepted"}
MAX_FLIPS_SHOWN = 25


def load_spec(spec: ModelSpec):  # noqa: ANN201 - SentenceTransformer
    """Models come from the server-wide cache."""
    return cached_model(spec.source, spec.ref)


@st.cache_data(show_spinner=False)
def cached_result(run_id: str, updated_at: str) -> RetrievalEvalResult:
    """A saved evaluation, read once per run version."""
    return load_retrieval_eval(run_id)


def setup_ui() -> RetrievalEvalConfig | None:
    """The evaluation form; returns a config when the user pressed Run."""
    qa_id = run_picker("qa", "Question set (qa run)", key="reval_qa")
    if qa_id is None:
        st.info(
            "Generate questions on the **Questions** page first; evaluation uses their test split."
        )
        return None
    qa_run = load_run(qa_id)
    model_runs, hidden = model_runs_for_qa(qa_run.id)
    base = base_model_of(model_runs)
    left, right = st.columns(2)
    with left:
        split = st.selectbox(
            "Split",
            ["test", "validation", "train", None],
            format_func=lambda s: SPLIT_LABELS[s],
            key="reval_split",
        )
        if split != "test":
            st.caption(
                "Only the test split is unseen by fine-tuning; other splits flatter tuned models."
            )
        st.caption(
            f"Base model: **{DEFAULT_MODEL_LABEL if base.source == 'default' else base.label}**"
        )
        names = {r.id: model_run_label(r, qa_run.id) for r in model_runs}
        current = current_run("model")
        tuned = st.multiselect(
            "Fine-tuned models",
            list(names),
            default=[first] if (first := preferred_model(model_runs, current)) else [],
            format_func=lambda rid: names.get(rid, rid),
            # One selection per question set: the labels say "trained on …" relative to the set,
            # and a selection kept across sets would be dropped when its labels change.
            key=f"reval_models_{qa_run.id}",
        )
        if hidden:
            st.caption(
                f"{hidden} model run(s) trained on another corpus are hidden: their chunks are "
                "not this corpus's."
            )
        if not model_runs:
            st.caption(
                "No finished fine-tune on this corpus yet: the base model is evaluated alone."
            )
    with right:
        dims = st.multiselect(
            "Dimensions",
            DIM_CHOICES,
            default=[],
            key="reval_dims",
            help="Empty: the model's native dimension and 512/256/128/64 below it.",
        )
        bm25 = st.checkbox("Add BM25 as a lexical baseline", value=True, key="reval_bm25")
        hybrid = st.checkbox(
            "Add hybrids: BM25 fused with each model (RRF, and a weighted sum tuned on validation)",
            value=True,
            key="reval_hybrid",
        )
        chroma = st.checkbox(
            "Check against the Chroma collections where they exist", value=True, key="reval_chroma"
        )
        n_retrievers = retriever_arms(1 + len(tuned), bm25, hybrid)
        n_questions = split_size(qa_id, split).n_questions
        rerankers, rerank_top = rerank_choice_ui(qa_run.id, n_questions, n_retrievers)
        with st.expander("Statistics", expanded=False):
            latency_size = st.number_input(
                "Latency measured on (synthetic vectors)",
                1_000,
                2_000_000,
                100_000,
                step=50_000,
                key="reval_latency_size",
                help="What-to-ship latency: exact search over this many random vectors per cell.",
            )
            resamples = st.number_input(
                "Bootstrap resamples", 200, 20000, 2000, step=500, key="reval_boot"
            )
            seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="reval_seed")
            flip_k = st.slider("Flip k (hit@k)", 1, 10, 5, key="reval_flip_k_cfg")
            primary = st.selectbox(
                "Primary metric",
                metric_names(),
                index=metric_names().index(PRIMARY_METRIC),
                key="reval_primary",
                help="Its tests over every model and dim of the evaluation, one max-T adjusted "
                "family, decide the headline verdict; every other metric is exploratory.",
            )
    enough = split_size_ui(qa_id, split)
    if not st.button(
        "Run evaluation", type="primary", key="reval_run", disabled=locked("run") or not enough
    ):
        return None
    return RetrievalEvalConfig(
        qa_run_id=qa_id,
        models=(base, *(ModelSpec("run", rid) for rid in tuned)),
        dims=tuple(int(d) for d in dims),
        split=split,
        include_bm25=bm25,
        hybrid=hybrid,
        latency_size=int(latency_size),
        flip_k=int(flip_k),
        n_resamples=int(resamples),
        seed=int(seed),
        primary_metric=str(primary),
        chroma_check=None if chroma else False,
        rerankers=rerankers,
        rerank_top=rerank_top,
    )


def split_size_ui(qa_id: str, split: str | None) -> bool:
    """How many questions the chosen split holds; False (the Run button stays disabled) when
    no statistic can be computed from them, or when they are few and the user has not agreed."""
    size = split_size(qa_id, split)
    refusal = size.refusal()
    if refusal is not None:
        st.error(str(refusal))
        return False
    if not size.caution():
        st.caption(f"{size.where}: {questions_text(size.n_questions, size.n_clusters)}.")
        return True
    st.warning(size.caution())
    return st.checkbox(
        f"Evaluate on these {size.n_questions} questions anyway",
        False,
        key=f"reval_few_{qa_id}_{split}",
    )


def header_ui(result: RetrievalEvalResult, metric: str) -> None:
    base_row = result.metrics[result.metrics["metric"] == metric]
    random_score = float(base_row["random_baseline"].iloc[0]) if not base_row.empty else 0.0
    a, b, c, d = st.columns(4)
    a.metric("Corpus (chunks)", f"{result.corpus_size:,}")
    b.metric(
        "Queries",
        f"{result.n_queries:,}"
        + (
            f" in {result.n_clusters:,} clusters"
            if result.n_clusters not in (0, result.n_queries)
            else ""
        ),
        help=f"split: {SPLIT_LABELS.get(result.split, result.split)}; questions that share a "
        "gold or linked chunk are one cluster, and the statistics count clusters",
    )
    c.metric(f"Random ranker {metric}", f"{random_score:.3f}")
    d.metric("Models", len(result.models))
    st.caption(
        f"Gold chunks: {result.gold_summary()} (chunks overlap, so a quote can sit in two; every "
        "chunk holding it counts as relevant)."
    )
    for warning in result.warnings:
        st.warning(warning)
    training = result.training_rows()
    if training:
        st.markdown("**What the tuned models trained on**")
        st.dataframe(training, hide_index=True, key="reval_training")
    seen = seen_display(result.seen_rows())
    if not seen.empty:
        st.markdown(
            f"**{result.primary_metric} on the passages each model trained on, and on the rest** "
            "(exploratory: Holm-adjusted within each model, clusters resampled, not part of the "
            "verdict)"
        )
        st.dataframe(seen, hide_index=True, key="reval_seen")
    for report in result.chroma:
        if report.get("checked"):
            st.caption(
                f"Chroma check, {report['model']} at {report['dim']}d: top-{report['k']} overlap "
                f"{report['overlap']:.3f}, identical top-{report['k']} in {report['identical_rate']:.0%} of queries."
            )


def ship_ui(result: RetrievalEvalResult) -> None:
    """What to ship: the recommendation, the frontier chart and every cell, for the number of
    chunks the team will run (core.evaluation.frontier)."""
    if result.frontier is None or result.frontier.empty:
        return
    st.subheader("What to ship: model, dimension and precision")
    n_vectors = st.number_input(
        "Chunks in production",
        1_000,
        10_000_000_000,
        result.deploy_size,
        step=1_000_000,
        key="reval_deploy_size",
        help="The memory column and the recommendation are for this many vectors.",
    )
    recommendation = result.recommendation(int(n_vectors))
    if recommendation is not None:
        (st.success if recommendation.qualified else st.info)(recommendation.advice)
        if recommendation.caution:
            st.warning(recommendation.caution)
        picked = (recommendation.model, recommendation.dim, recommendation.cell)
        figure = frontier_figure(result.frontier, result.primary_metric, picked)
        st.plotly_chart(figure, key="reval_fig_frontier")
    st.dataframe(
        frontier_display(result.frontier, int(n_vectors), result.primary_metric),
        hide_index=True,
        key="reval_frontier_table",
    )
    st.caption(ship_caption(result.frontier, result.primary_metric, result.frontier_tolerance))


def flips_ui(result: RetrievalEvalResult) -> None:
    st.subheader("Flipped questions")
    others = [m["label"] for m in result.models if m["kind"] == "tuned"]
    if not others:
        st.caption("Flips need a tuned model evaluated together with the base.")
        return
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Model", others, key="reval_flip_model")
    dims = sorted(
        {int(d) for d in result.per_query.loc[result.per_query["model"] == model, "dim"].dropna()},
        reverse=True,
    )
    dim = c2.selectbox("Dimension", dims, key="reval_flip_dim")
    k = c3.slider("k (hit@k)", 1, 10, int(result.flips.get("k", 5)), key="reval_flip_k")
    flips = compute_flips(result.per_query, result.base_label, model, dim, k)
    texts = result.flips.get("texts", {})
    missing = {
        cid
        for side in ("gained", "lost")
        for row in flips[side]
        for cid in row["base_top"] + row["model_top"]
    } - set(texts)
    if missing:
        texts = {**texts, **chunk_texts(result.corpus_run_id, frozenset(missing))}
    st.caption(
        f"{len(flips['gained'])} questions the base missed and {model} found in its top {k}; "
        f"{len(flips['lost'])} the other way round. ★ marks the gold chunk."
    )
    gained_tab, lost_tab = st.tabs(
        [
            f"Base miss → tuned hit ({len(flips['gained'])})",
            f"Base hit → tuned miss ({len(flips['lost'])})",
        ]
    )
    for tab, side in ((gained_tab, "gained"), (lost_tab, "lost")):
        with tab:
            rows = flips[side]
            if not rows:
                st.caption("None.")
            for row in rows[:MAX_FLIPS_SHOWN]:
                with st.expander(
                    f"{row['question']}  (gold rank {row['base_rank'] or '>100'} → {row['model_rank'] or '>100'})"
                ):
                    left, right = st.columns(2)
                    for col, title, ids in (
                        (left, f"{result.base_label} (base)", row["base_top"]),
                        (right, model, row["model_top"]),
                    ):
                        with col:
                            st.markdown(f"**{title}**")
                            for rank, cid in enumerate(ids, start=1):
                                text = plain_markdown(cut_at_word(texts.get(cid, ""), 400))
                                if cid in row["gold_ids"]:
                                    st.success(f"{rank}. ★ gold `{cid}`\n\n{text}")
                                else:
                                    st.markdown(f"{rank}. `{cid}` {text}")
            if len(rows) > MAX_FLIPS_SHOWN:
                st.caption(f"{len(rows) - MAX_FLIPS_SHOWN} more in flips.json / per_query.jsonl.")


@st.cache_data(show_spinner=False)
def chunk_texts(corpus_run_id: str, ids: frozenset[str]) -> dict[str, str]:
    from core.documents.corpus import load_chunks

    try:
        return {c.id: c.text for c in load_chunks(corpus_run_id) if c.id in ids}
    except RunError:
        return {}


def downloads_ui(run_id: str) -> None:
    run = load_run(run_id)
    cols = st.columns(4)
    for col, name, mime in (
        (cols[0], METRICS_FILE, "text/csv"),
        (cols[1], DELTAS_FILE, "text/csv"),
        (cols[2], TRADEOFF_FILE, "text/csv"),
        (cols[3], PER_QUERY_FILE, "application/jsonl"),
    ):
        path = run.artifact(name)
        if path.exists():
            col.download_button(
                name,
                audited(partial(export_bytes, path), [run_id], name),
                file_name=f"{run_id}_{name}",
                mime=mime,
                on_click="ignore",
                key=f"reval_dl_{name}",
            )


def results_ui(run_id: str) -> None:
    run = load_run(run_id)
    if run.manifest.status != "done":
        st.warning(f"Run {run_id} {status_phrase(run.manifest.status)}. {run.manifest.error or ''}")
        return
    result = cached_result(run_id, run.manifest.updated_at)
    metric = st.selectbox(
        "Metric", metric_names(), index=metric_names().index("ndcg@10"), key="reval_metric"
    )
    verdict_ui(result)
    header_ui(result, metric)
    fold_spread_ui(result)
    for note in result.hybrid_notes():
        st.caption(f"Hybrid {note}.")
    st.plotly_chart(metric_vs_dim_figure(result.metrics, metric), key="reval_fig_dims")
    if not result.deltas.empty:
        st.subheader(f"Tuned vs base: {metric}")
        st.plotly_chart(delta_bars_figure(result.deltas, metric), key="reval_fig_deltas")
        rows = result.deltas[result.deltas["metric"] == metric]
        table = tuned_first(deltas_display(rows, confidence=result.confidence), result.models)
        st.dataframe(table, hide_index=True, key="reval_deltas_table")
        for sentence in delta_sentences(result, metric):
            st.markdown(f"- {sentence}")
        family = (
            ""  # method_text starts by saying the primary metric decides the verdict
            if metric == result.primary_metric
            else f"{metric} is exploratory (the primary metric is {result.primary_metric}). "
        )
        st.caption(f"{family}{method_text(result.primary_metric, result.confidence)}")
    ship_ui(result)
    st.subheader("Matryoshka trade-off")
    st.plotly_chart(
        tradeoff_figure(result.metrics, result.tradeoff, metric), key="reval_fig_tradeoff"
    )
    flips_ui(result)
    st.subheader("All metrics")
    caption = context_caption(result.corpus_size, result.n_queries, n_clusters=result.n_clusters)
    st.caption(caption + " · random_baseline = expected score of a random ranking")
    st.dataframe(result.metrics, hide_index=True, key="reval_metrics_table")
    downloads_ui(run_id)
    if result.similarity is not None and not result.similarity.empty:
        st.subheader("General similarity (saved with this run)")
        st.plotly_chart(similarity_figure(result.similarity), key="reval_fig_sim_saved")
        st.dataframe(result.similarity, hide_index=True, key="reval_sim_saved")


def similarity_ui(result_run_id: str | None) -> None:
    st.subheader("General-similarity regression check")
    st.caption(
        "Does a domain gain break general similarity? Upload scored pairs (sentence1, sentence2, score) "
        "for Spearman like sentence-transformers' EmbeddingSimilarityEvaluator, or labelled pairs "
        "(sentence1, sentence2, label 0/1) for average precision like its BinaryClassificationEvaluator. "
        "Without an upload, the 42 hand-written pairs shipped with the app are used."
    )
    upload = st.file_uploader("Pairs CSV", type=["csv"], key="reval_pairs")
    if not st.button("Check general similarity", key="reval_sim_run", disabled=locked("run")):
        return
    with error_boundary("General-similarity check"):
        pairs = (
            load_similarity_pairs(upload.getvalue(), name=upload.name)
            if upload
            else load_similarity_pairs(SAMPLE_STS_CSV, name="sample sts_pairs.csv")
        )
        specs = [ModelSpec()]
        if result_run_id:
            info = load_run(result_run_id).read_json("result.json")
            kinds = ("base", "tuned")  # embedding models only: no BM25, hybrid or reranked arm
            specs = [ModelSpec.from_dict(m) for m in info["models"] if m["kind"] in kinds]
        models = {spec.label: load_spec(spec) for spec in specs}
        table = compare_similarity(models, pairs, base_label=specs[0].label)
        st.plotly_chart(similarity_figure(table), key="reval_fig_sim")
        st.dataframe(table, hide_index=True, key="reval_sim_table")
        for _, row in table.iloc[1:].iterrows():
            if row["delta_ci_high"] < 0:
                st.warning(
                    f"{row['model']} is worse than the base on general similarity: Δ {row['delta']:+.3f}."
                )


st.title("Retrieval eval")
st.caption(
    "Every question is searched against the full corpus. Numbers come with the corpus size, the query "
    "count, the random ranker's score and 95% intervals; tuned-vs-base differences with a paired test."
)

with st.container(border=True):
    st.subheader("New evaluation")
    config = None
    with error_boundary("Preparing the evaluation"):
        config = setup_ui()
    if config is not None:
        with error_boundary("Starting the evaluation"):
            started = start_retrieval_eval(config, chroma_settings())
            remember_run("qa", config.qa_run_id)
            st.toast(f"Evaluation {started.id} started in the background.")
    running_panel("retrieval_eval", JOBS_KEY, "evaluation")

with st.container(border=True):
    st.subheader("Cross-fitted evaluation: every question held out once")
    with error_boundary("Preparing the cross-fit"):
        crossfit_ui()

st.subheader("Results")
ended = ended_job("retrieval_eval", JOBS_KEY)
if ended is not None:  # an evaluation that just ended: show it
    st.session_state["reval_pick"] = ended.id
picked = run_picker(
    "retrieval_eval", "Evaluation run", key="reval_pick", statuses=("done", "failed", "stopped")
)
if picked is None:
    st.caption(
        f"Run an evaluation above; results appear here. Base model default: {DEFAULT_MODEL_LABEL}. {BM25_LABEL} is optional."
    )
else:
    live = [r for r in running_jobs("retrieval_eval") if r.id != picked]
    if live:  # the previous result stays below: say whose it is while a new one runs
        st.info(
            f"Evaluation {live[0].id} is running: the results below are of the earlier run "
            f"{picked}; the new one shows here when it ends.",
            icon=":material/hourglass_top:",
        )
    with error_boundary("Showing the evaluation"):
        results_ui(picked)
similarity_ui(picked)
