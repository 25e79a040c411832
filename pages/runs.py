"""Runs page: every run with its lineage, status, config and headline figures; evaluation runs
compared side by side with a self-contained report to download; delete with confirmation."""

from __future__ import annotations

import streamlit as st

from core.charts.comparison import comparison_figure, ragas_comparison_figure
from core.deletion import delete_with_dependants
from core.embedding_cache import clear_data_dir_cache, data_dir_cache, usage_text
from core.formatting import count_text
from core.report.comparison import EVAL_KINDS, HEADLINE_METRICS, Comparison, compare_runs
from core.report.export import build_report, report_zip
from core.report.redaction import redact
from core.report.tables import deltas_table, headline_table, ragas_deltas_table, ragas_display_table
from core.runs.audit import audit_path, read_audit
from core.runs.folders import KIND_LABELS, RUN_KINDS, Run, list_runs, load_run, run_rows
from core.runs.labels import run_choice, run_title
from core.runs.lineage import descendants_of, lineage_chain
from pages._ui import audited, chroma_settings, error_boundary, guard_page, llm_settings, locked
from pages._verdict_ui import verdict_ui

guard_page()  # team mode: nothing of this page before sign-in

FLASH_KEY = "runs_flash"


@st.cache_data(show_spinner=False, max_entries=8)
def cached_comparison(versions: tuple[tuple[str, str], ...]) -> Comparison:
    """A comparison, read once per set of run versions (run id, updated_at)."""
    return compare_runs([run_id for run_id, _ in versions])


def report_downloads(run_ids: list[str]) -> None:
    """HTML and zip download buttons; the report is built only when one is clicked."""
    secrets = [llm_settings().api_key, chroma_settings().token]
    stem = "ragbench-report-" + "-".join(r.rsplit("-", 1)[-1] for r in run_ids[:4])

    def html_bytes() -> bytes:
        return build_report(run_ids, secrets=secrets).html.encode("utf-8")

    def zip_bytes() -> bytes:
        return report_zip(build_report(run_ids, secrets=secrets))

    left, right = st.columns(2)
    left.download_button(
        "Download report (HTML)",
        audited(html_bytes, run_ids, "HTML report"),
        file_name=f"{stem}.html",
        mime="text/html",
        on_click="ignore",
        icon=":material/description:",
        key="runs_report_html",
    )
    right.download_button(
        "Download report + CSV/JSON (zip)",
        audited(zip_bytes, run_ids, "report zip"),
        file_name=f"{stem}.zip",
        mime="application/zip",
        on_click="ignore",
        icon=":material/folder_zip:",
        key="runs_report_zip",
    )
    st.caption(
        "The HTML opens offline (plotly is embedded). The zip adds every CSV/JSON artifact and "
        "a manifest of each run in the lineage; API keys and tokens are never exported."
    )


def retrieval_comparison_ui(comparison: Comparison) -> None:
    st.markdown("**Retrieval: headline metrics, mean [95% CI]**")
    metric = st.selectbox("Chart metric", HEADLINE_METRICS, key="runs_compare_metric")
    st.dataframe(headline_table(comparison.retrieval), hide_index=True, key="runs_compare_table")
    context = comparison.retrieval.drop_duplicates("run_id")
    for _, row in context.iterrows():
        result = comparison.retrieval_results[row["run_id"]]
        baseline = ", ".join(
            f"{m} {result.random_baseline.get(m, 0):.3f}" for m in HEADLINE_METRICS
        )
        st.caption(
            f"{row['run_label']}: corpus {int(row['corpus_size']):,} chunks · "
            f"{result.questions_text()} ({result.split or 'all accepted'}) · "
            f"random ranker {baseline}"
        )
    st.plotly_chart(comparison_figure(comparison.retrieval, metric), key="runs_compare_fig")
    for run_id, result in comparison.retrieval_results.items():
        if result.deltas.empty and not result.bm25_line():
            continue
        title = run_title(load_run(run_id))
        st.markdown(f"**Verdict of {title}**")
        verdict_ui(result)  # the same lines as the Retrieval eval page
        if result.deltas.empty:
            continue
        st.markdown(f"**Tuned vs base in {title}**")
        st.dataframe(deltas_table(result), hide_index=True, key=f"runs_compare_deltas_{run_id}")


def ragas_comparison_ui(comparison: Comparison) -> None:
    st.markdown("**RAG answers (RAGAS): mean [95% CI] over scored samples, with failures**")
    st.dataframe(ragas_display_table(comparison.ragas), hide_index=True, key="runs_compare_ragas")
    for run_id, ctx in comparison.ragas_context.items():
        random = ", ".join(f"{m} {v:.3f}" for m, v in ctx["random"].items())
        size = ctx["corpus_size"] if ctx["corpus_size"] is not None else "—"
        st.caption(
            f"{run_title(load_run(run_id))}: corpus {size} chunks · {ctx['n_samples']} questions"
            f" · top-k {ctx['k'] or '—'} · judge {ctx['judge']}"
            + (f" · random retriever {random}" if random else "")
        )
    st.plotly_chart(ragas_comparison_figure(comparison.ragas), key="runs_compare_ragas_fig")
    for run_id, result in comparison.ragas_results.items():
        table = ragas_deltas_table(result)
        if not table.empty:
            st.markdown(f"**Each retriever minus base in {run_title(load_run(run_id))}**")
            st.dataframe(table, hide_index=True, key=f"runs_compare_ragas_deltas_{run_id}")


def default_eval(evals: list[Run]) -> str:
    """The newest base-vs-tuned retrieval evaluation, else the newest evaluation run."""
    retrieval = [r for r in evals if r.kind == "retrieval_eval"]
    tuned = [r for r in retrieval if len(r.manifest.config.get("models", [])) > 1]
    return (tuned or retrieval or evals)[0].id


def compare_ui() -> None:
    """Pick evaluation runs, see them side by side, download the report."""
    st.subheader("Compare evaluation runs")
    evals = [r for r in list_runs(EVAL_KINDS) if r.manifest.status == "done"]
    if not evals:
        st.caption(
            "No finished evaluation runs yet: evaluate on the Retrieval eval or RAG eval page."
        )
        return
    labels = {r.id: f"{run_title(r)} · {r.manifest.created_at[:16]}" for r in evals}
    chosen = st.multiselect(
        "Evaluation runs",
        list(labels),
        default=[default_eval(evals)],
        format_func=lambda rid: labels.get(rid, rid),
        key="runs_compare",
        help="A base-vs-tuned retrieval evaluation, its RAGAS run, or several runs to compare.",
    )
    chosen = [rid for rid in chosen if rid in labels]
    if not chosen:
        st.caption("Pick one or more evaluation runs.")
        return
    with error_boundary("Comparing the runs"):
        versions = tuple((rid, load_run(rid).manifest.updated_at) for rid in chosen)
        comparison = cached_comparison(versions)
        for warning in comparison.warnings:
            st.warning(warning)
        if not comparison.retrieval.empty:
            retrieval_comparison_ui(comparison)
        if not comparison.ragas.empty:
            ragas_comparison_ui(comparison)
        report_downloads(chosen)


st.title("Runs")
st.caption(
    "Every stage writes a run folder with a manifest (config, parents, status, library versions, "
    "error). Disk is the truth: a browser refresh loses nothing."
)


def cache_ui() -> None:
    """The embedding cache's size, and a button to clear it."""
    store = data_dir_cache()
    usage = store.usage()
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(
        usage_text(usage) + ". Texts a model already encoded are read from it, never encoded again."
    )
    if right.button(
        "Clear the cache", key="runs_cache_clear", disabled=locked("delete") or not usage.files
    ):
        with error_boundary("Clearing the cache"):
            clear_data_dir_cache()
            st.rerun()


AUDIT_SHOWN = 500  # events in the table
AUDIT_SCAN = 5000  # recent events whose kinds the filter offers


def audit_ui() -> None:
    """The audit log: who made, started, stopped, exported or deleted which run, and sign-ins
    (for owners: it names everyone and where they signed in from), filtered by kind."""
    if locked("delete"):
        return
    recent = read_audit(limit=AUDIT_SCAN)
    shown = count_text(min(len(recent), AUDIT_SHOWN), "latest event")
    with st.expander(f"Audit log ({shown})"):
        chosen = st.multiselect(
            "Kinds of event",
            sorted({e["action"] for e in recent}),
            key="runs_audit_kinds",
            placeholder="Every kind",
        )
        events = read_audit(AUDIT_SHOWN, actions=chosen) if chosen else recent[:AUDIT_SHOWN]
        if not events:
            st.caption("Nothing recorded yet.")
            return
        st.caption(
            f"The {count_text(len(events), 'latest event')}, newest first, from "
            f"`{audit_path()}` and the rotated files beside it (append-only, one JSON line per event)."
        )
        st.dataframe(
            [
                {k: e.get(k, "") for k in ("time", "user", "role", "action", "run", "detail")}
                for e in events
            ],
            hide_index=True,
            width="stretch",
            key="runs_audit_table",
        )


if FLASH_KEY in st.session_state:  # what the last action did, shown once after its rerun
    st.success(st.session_state.pop(FLASH_KEY))
cache_ui()
audit_ui()
kinds = st.multiselect(
    "Kinds", list(RUN_KINDS), default=list(RUN_KINDS), format_func=KIND_LABELS.get, key="runs_kinds"
)
runs = list_runs(kinds or None)
if not runs:
    st.info("No runs yet. Start on the Documents page (or use the sample corpus there).")
    st.stop()

st.dataframe(run_rows(runs), hide_index=True, width="stretch", key="runs_table")

with st.container(border=True):
    compare_ui()

run_names = {r.id: run_choice(r) for r in runs}
selected = st.selectbox(
    "Inspect a run", list(run_names), format_func=run_names.get, key="runs_selected"
)
if selected:
    with error_boundary("Loading the run"):
        run = load_run(selected)
        st.markdown("**Lineage:** " + lineage_chain(run.id))
        st.caption("Ids: " + lineage_chain(run.id, label=lambda r: r.id))
        if run.manifest.error:
            st.error(run.manifest.error)
        left, right = st.columns(2)
        left.markdown("**Config**")
        left.json(redact(run.manifest.config), expanded=False)
        right.markdown("**Summary**")
        right.json(run.manifest.summary, expanded=False)
        st.markdown("**Library versions**")
        st.json(run.manifest.versions, expanded=False)
        st.markdown("**Artifacts:** " + ", ".join(sorted(p.name for p in run.path.iterdir())))
        dependants = descendants_of(run.id)
        with st.expander("Delete this run"):
            if dependants:
                st.warning(
                    "These runs depend on it and are deleted too: "
                    + ", ".join(d.id for d in dependants)
                )
            confirm = st.text_input(f"Type {run.id} to confirm", key="runs_delete_confirm")
            if st.button(
                "Delete", key="runs_delete", disabled=locked("delete") or confirm != run.id
            ):
                with error_boundary("Deleting the run"):
                    report = delete_with_dependants(run.id, chroma_settings())
                    for warning in report.warnings:
                        st.warning(warning)
                    done = (
                        f"Deleted {len(report.runs)} run(s) and "
                        f"{len(report.collections)} Chroma collection(s)."
                    )
                    st.success(done)
                    if not report.warnings:  # the list without them, saying what went
                        st.session_state[FLASH_KEY] = done
                        st.rerun()
