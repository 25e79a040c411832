"""Questions page: a question set for a corpus run (hand-written sample, generated with the LLM
behind a quality gate, pairs from the documents' own structure, or imported), its gate
statistics, a review grid, and exports."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from core.documents.corpus import load_chunks
from core.errors import RagbenchError
from core.formatting import count_text, duration_text
from core.llm.embedded import (
    EMBEDDED_LABEL,
    EMBEDDED_PROMPT_TOKENS_PER_S,
    EMBEDDED_REPLY_TOKENS_PER_S,
    EMBEDDED_START_S,
)
from core.questions.dataset import load_qa
from core.questions.gate import REASONS, GateConfig
from core.questions.generation import GenerationConfig, estimate_generation, select_chunks
from core.questions.job import start_question_generation
from core.questions.qa_runs import read_dealing, read_gate_report, read_usage, shortfall_text
from core.questions.review import REVIEW_COLUMNS, review_rows, save_review
from core.questions.splits import SplitConfig
from core.runs.folders import Run, list_runs, load_run
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._pairs_ui import documents_ui
from pages._ui import (
    audited,
    cached_model,
    dealing_ui,
    error_boundary,
    guard_page,
    llm_settings,
    locked,
    near_duplicates_caption,
    near_duplicates_ui,
    preselect,
    remember_run,
    run_picker,
    split_config_ui,
)

guard_page()  # team mode: nothing of this page before sign-in

CORPUS_KEY = "qa_corpus_pick"
RUN_KEY = "qa_run_pick"
JOBS_KEY = "qa_gen"
SOURCES = {
    "sample": "Sample question set (hand-written)",
    "generate": "Generate with the LLM",
    "documents": "From the documents (no LLM)",
    "import": "Import a file",
}
NONE = "(none)"


def apply_pending_picks() -> None:
    """Select runs made in the previous script run (a widget's value can only be set before
    the widget exists)."""
    for key, kind in ((CORPUS_KEY, "corpus"), (RUN_KEY, "qa")):
        pending = st.session_state.pop(f"{key}_pending", None)
        if pending:
            st.session_state[key] = pending
            remember_run(kind, pending)


def pick_later(corpus_id: str | None, run_id: str | None) -> None:
    """Select runs made below their pickers, on the next script run."""
    if corpus_id:
        st.session_state[f"{CORPUS_KEY}_pending"] = corpus_id
    if run_id:
        st.session_state[f"{RUN_KEY}_pending"] = run_id


def pick_now(run_id: str) -> None:
    """Select a question set made above its picker (generation, the sample, pairs from the
    documents) in this very script run, so the figures below show it, not the previous one."""
    st.session_state[RUN_KEY] = run_id
    remember_run("qa", run_id)


def llm_label() -> tuple[str, bool]:
    """The configured LLM as people read it, and whether it is the embedded demo model."""
    settings = llm_settings()
    if settings.backend == "embedded":
        return EMBEDDED_LABEL, True
    return f"{settings.model or '(no model)'} at {settings.base_url or '(no URL)'}", False


# --------------------------------------------------------------------------- sources


def sample_ui(corpus_id: str) -> None:
    from core.questions.sample import SAMPLE_QA_PATH

    lines = (
        SAMPLE_QA_PATH.read_text(encoding="utf-8").splitlines() if SAMPLE_QA_PATH.exists() else []
    )
    st.caption(
        f"{sum(1 for line in lines if line.strip())} questions written by hand for the sample corpus (the Debian FAQ), each with the "
        "quote that answers it and a reference answer. Each question's gold chunk is the chunk "
        "holding its quote. Use it with a corpus built from the sample PDF."
    )
    if st.button(
        "Load the sample question set", type="primary", key="qa_sample_load", disabled=locked("run")
    ):
        with error_boundary("Loading the sample questions"):
            from core.questions.sample import load_sample_qa

            run = load_sample_qa(corpus_id)
            summary = run.manifest.summary
            st.success(
                f"QA run **{run.id}**: {summary['n_accepted']} question(s) matched to chunks"
                + (f", {summary['n_rejected']} not found" if summary["n_rejected"] else "")
                + "."
            )
            pick_now(run.id)


def generation_config_ui(embedded: bool) -> GenerationConfig | None:
    """The generation, gate and split settings; None when they are invalid."""
    cols = st.columns(3)
    n = cols[0].number_input("Questions per chunk", 1, 10, 2, key="qa_n")
    max_chunks = cols[1].number_input(
        "Max chunks (0 = all)",
        0,
        1_000_000,
        4 if embedded else 0,
        key="qa_max_chunks",
        help="A seeded sample of chunks, for a quick try.",
    )
    with_answers = cols[2].checkbox("Reference answers too", not embedded, key="qa_answers")
    cols = st.columns(2)
    near_dup = cols[0].checkbox(
        "Reject near-duplicates (loads the embedding model)", True, key="qa_near_dup"
    )
    answerable = cols[1].checkbox(
        "Ask the LLM whether each question is answerable from its chunk", False, key="qa_answerable"
    )
    with st.expander("Gate and split settings"):
        cols = st.columns(4)
        min_words = cols[0].number_input("Min words", 1, 50, 4, key="qa_min_words")
        max_words = cols[1].number_input("Max words", 5, 500, 60, key="qa_max_words")
        threshold = cols[2].number_input(
            "Near-duplicate cosine", 0.5, 1.0, 0.95, step=0.01, key="qa_dup_threshold"
        )
        seed = cols[3].number_input("Seed", 0, 2**31 - 1, 42, key="qa_seed")
        cols = st.columns(3)
        train = cols[0].number_input("Train share", 0.0, 1.0, 0.7, step=0.05, key="qa_train")
        val = cols[1].number_input("Validation share", 0.0, 1.0, 0.15, step=0.05, key="qa_val")
        test = cols[2].number_input("Test share", 0.0, 1.0, 0.15, step=0.05, key="qa_test")
        st.caption("Splits are by chunk: every question of a chunk goes to that chunk's split.")
    try:
        return GenerationConfig(
            n_per_chunk=int(n),
            max_chunks=int(max_chunks),
            with_answers=bool(with_answers),
            seed=int(seed),
            gate=GateConfig(
                min_words=int(min_words),
                max_words=int(max_words),
                near_duplicate_threshold=float(threshold),
                check_near_duplicates=bool(near_dup),
                check_answerability=bool(answerable),
            ),
            split=SplitConfig(train=train, validation=val, test=test, seed=int(seed)),
        )
    except RagbenchError as exc:  # an invalid setting: say so, keep the page
        st.error(str(exc))
    return None


def generate_ui(corpus_id: str) -> None:
    label, embedded = llm_label()
    st.markdown(f"LLM: **{label}** (change it in the sidebar)")
    if embedded:
        st.warning(
            "The embedded 135M model is demo quality: expect most of its questions to be "
            "rejected by the gate, and about 10 tokens/s. For a meaningful question set use an "
            "OpenAI-compatible server, or the hand-written sample set."
        )
    config = generation_config_ui(embedded)
    if config is None:
        return
    with error_boundary("Estimating the cost"):
        from core.llm.client import make_llm

        chunks = select_chunks(load_chunks(corpus_id), config.max_chunks, config.seed)
        try:
            llm = make_llm(llm_settings())
        except Exception:  # noqa: BLE001 - the estimate works without the cache check
            llm = None
        estimate = estimate_generation(chunks, config, llm)
        text = f"Estimate: {estimate.describe()}."
        if embedded and estimate.calls:
            seconds = estimate.seconds(
                EMBEDDED_PROMPT_TOKENS_PER_S, EMBEDDED_REPLY_TOKENS_PER_S, EMBEDDED_START_S
            )
            text += (
                f" {duration_text(seconds).capitalize()} on a 2-core CPU, longer when it is busy."
            )
        st.info(text)
    if st.button("Generate questions", type="primary", key="qa_generate", disabled=locked("run")):
        with error_boundary("Starting the generation"):
            run = start_question_generation(corpus_id, config, llm_settings())
            st.toast(f"Question generation {run.id} started in the background.")


def generation_ended(run: Run) -> None:
    """How a generation this page watched ended: its gate counts and usage when it is done."""
    summary = run.manifest.summary
    usage = read_usage(run) if run.manifest.status == "done" else {}
    short = shortfall_text(summary)
    ended_notice(
        run,
        "question generation",
        f"QA run **{run.id}**: {summary.get('n_accepted', 0)} accepted, "
        f"{summary.get('n_rejected', 0)} rejected, {summary.get('n_failed_chunks', 0)} chunk(s) "
        f"failed · {usage.get('calls', 0)} call(s), {usage.get('cached', 0)} cached, "
        f"{usage.get('total_tokens', 0):,} tokens." + (f" Note: {short}." if short else ""),
    )


def mapping_ui(columns: list[str]):  # noqa: ANN201 - core.questions.columns.ColumnMapping
    """Which column holds what, the guesses preselected."""
    from core.questions.columns import ColumnMapping, guess_mapping

    guess = guess_mapping(columns)
    optional = [NONE, *columns]

    def pick(label: str, options: list[str], guessed: str | None, key: str, **kw) -> str | None:  # noqa: ANN003
        index = options.index(guessed) if guessed in options else 0
        value = st.selectbox(label, options, index, key=key, **kw)
        return None if value == NONE else value

    cols = st.columns(2)
    with cols[0]:
        question = pick("Question column", columns, guess and guess.question, "qa_map_question")
    with cols[1]:
        chunk = pick("Chunk column", columns, guess and guess.chunk, "qa_map_chunk")
    cols = st.columns(3)
    with cols[0]:
        answer = pick("Reference answer column", optional, guess and guess.answer, "qa_map_answer")
    with cols[1]:
        split = pick("Split column", optional, guess and guess.split, "qa_map_split")
    kind = cols[2].radio(
        "The chunk column holds",
        ["text", "id"],
        index=1 if guess and guess.chunk_kind == "id" else 0,
        format_func=lambda k: {"text": "chunk texts", "id": "chunk ids"}[k],
        key="qa_map_kind",
    )
    evidence = pick(
        "Evidence column (a verbatim quote of the answer)",
        optional,
        guess and guess.evidence,
        "qa_map_evidence",
        help="Every chunk holding the quote counts as relevant, and chunks sharing it stay "
        "in one split.",
    )
    return ColumnMapping(question, chunk, kind, answer, split, evidence)  # type: ignore[arg-type]


def import_ui(corpus_id: str | None) -> None:
    st.caption(
        "Pairs you already have (e.g. anchor/positive or question/context columns), with "
        "optional reference answers and split. Chunk texts can match the picked corpus or "
        "become a new corpus of their own."
    )
    upload = st.file_uploader(
        "Question file (CSV, TSV, JSONL, JSON, Parquet)",
        type=["csv", "tsv", "jsonl", "ndjson", "json", "parquet"],
        key="qa_import_file",
    )
    if upload is None:
        return
    from core.questions.columns import read_table
    from core.questions.importing import import_gate_config, preview_import, save_import

    with error_boundary("Reading the file"):
        frame = read_table(upload.name, upload.getvalue())
        st.dataframe(frame.head(5), hide_index=True, key="qa_import_preview")
        mapping = mapping_ui(list(frame.columns))
        targets = ["new", "match"] if corpus_id else ["new"]
        target = st.radio(
            "Chunks",
            targets,
            format_func=lambda t: {
                "new": "Make a new corpus run from the chunk texts",
                "match": f"Match them to the picked corpus run {corpus_id}",
            }[t],
            index=1 if mapping.chunk_kind == "id" and corpus_id else 0,
            key="qa_import_target",
        )
        gate_on = st.checkbox(
            "Run the gate's text and duplicate rules on the imported questions "
            "(human-written questions are not held to the length rule)",
            True,
            key="qa_import_gate",
        )
        split_config = split_config_ui("qa_import", fixed=mapping.split is not None)
        if split_config is None:
            return
        tie = near_duplicates_ui("qa_import_near_dup")
        preview = preview_import(
            upload.name,
            frame,
            mapping,
            corpus_run_id=corpus_id if target == "match" else None,
            split_config=split_config,
            gate_config=import_gate_config() if gate_on else None,
            model=cached_model("default", "") if tie else None,
        )
        import_preview_ui(preview)
        if st.button("Import", type="primary", key="qa_import_go", disabled=locked("run")):
            result = save_import(preview)
            skipped = len(result.skipped_rows)
            st.success(
                f"QA run **{result.run.id}**: {result.n_accepted} of {result.n_items} "
                "question(s) accepted"
                + (f", {skipped} blank row(s) skipped" if skipped else "")
                + (f"; new corpus run {result.corpus_run_id}" if result.new_corpus else "")
                + "."
            )
            pick_later(result.corpus_run_id, result.run.id)


def import_preview_ui(preview) -> None:  # noqa: ANN001 - core.questions.importing.ImportPreview
    """What the import would save, before anything is written: accepted, rejected by reason,
    the splits and the gold chunks."""
    st.markdown(
        f"**Before saving:** {len(preview.items)} question(s): {preview.n_accepted} accepted, "
        f"{preview.n_rejected} rejected"
        + (f", {len(preview.skipped_rows)} blank row(s) skipped" if preview.skipped_rows else "")
        + "."
    )
    rejections = preview.rejections()
    if rejections:
        st.dataframe(
            preview.rejection_rows(),
            hide_index=True,
            key="qa_import_rejections",
        )
        examples = [i for i in preview.items if i.status == "rejected"][:5]
        st.caption(
            "For example: "
            + "; ".join(
                f"{i.question[:60]!r} ({i.reason}"
                + (f": {i.meta['reason_text']}" if i.meta.get("reason_text") else "")
                + ")"
                for i in examples
            )
        )
    dealing_ui(preview.dealing(), "qa_import_dealing")
    near_duplicates_caption(preview.near_duplicates)
    multi = sum(len(i.gold_ids) > 1 for i in preview.items if i.status == "accepted")
    if multi:
        st.caption(
            f"{count_text(multi, 'question')} {'has its' if multi == 1 else 'have their'} "
            "evidence in more than one chunk: all count."
        )
    for note in preview.evidence_notes():
        st.warning(note)


# --------------------------------------------------------------------------- a qa run


def qa_run_ui(corpus_id: str) -> str | None:
    runs = [
        r
        for r in list_runs("qa")
        if r.manifest.status == "done" and r.manifest.parents.get("corpus") == corpus_id
    ]
    if not runs:
        st.caption("No question sets for this corpus run yet.")
        return None
    names = {
        r.id: f"{r.manifest.name} · {r.manifest.summary.get('n_accepted', '?')} accepted · "
        f"{r.manifest.created_at[:16]}"
        for r in runs
    }
    preselect("qa", RUN_KEY, runs)
    return st.selectbox(
        "Question set (qa run)",
        list(names),
        format_func=names.get,
        key=RUN_KEY,
        on_change=lambda: remember_run("qa", st.session_state.get(RUN_KEY), corpus=corpus_id),
    )


def gate_ui(qa_id: str) -> None:
    report = read_gate_report(qa_id)
    usage = read_usage(qa_id)
    cols = st.columns(5)
    cols[0].metric("Accepted", report.get("accepted", 0))
    cols[1].metric("Rejected", report.get("rejected", 0))
    cols[2].metric("Failed chunks", report.get("failed_chunks", 0))
    cols[3].metric("LLM calls (cached)", f"{usage.get('calls', 0)} ({usage.get('cached', 0)})")
    cols[4].metric("Tokens", f"{usage.get('total_tokens', 0):,}")
    short = shortfall_text(load_run(qa_id).manifest.summary)
    if short:
        st.warning(f"The LLM under-delivered: {short}.")
    for note in report.get("notes", []):
        st.caption(note)
    by_reason = report.get("by_reason", {})
    if by_reason:
        st.markdown("**Rejected, by reason**")
        st.dataframe(
            [
                {"reason": code, "what it means": REASONS.get(code, code), "count": n}
                for code, n in by_reason.items()
            ],
            hide_index=True,
            key="qa_reasons_table",
        )
    dealing = read_dealing(qa_id)
    splits = report.get("splits")
    if dealing is not None:
        dealing_ui(dealing, "qa_splits_table")
    elif splits:
        st.dataframe(
            [{"split": s, **v} for s, v in splits.items()], hide_index=True, key="qa_splits_table"
        )
    if "near_duplicates_tied" in report:
        near_duplicates_caption(report["near_duplicates_tied"])
    multi = load_run(qa_id).manifest.summary.get("n_multi_gold")
    if multi:
        st.caption(
            f"{count_text(multi, 'question')} {'has its' if multi == 1 else 'have their'} "
            "evidence in more than one chunk (chunks overlap): "
            "every such chunk counts as relevant, and they sit in one split."
        )
    failures = report.get("failures", [])
    if failures:
        with st.expander(f"{len(failures)} chunk(s) whose LLM call failed"):
            st.dataframe(
                [
                    {
                        "chunk_id": f["chunk_id"],
                        "kind": f["kind"],
                        "message": f["message"][:300],
                        "raw reply": (f.get("raw") or "")[:300],
                    }
                    for f in failures
                ],
                hide_index=True,
                key="qa_failures_table",
            )
    rejected = [i for i in load_qa(qa_id, accepted_only=False) if i.status == "rejected"]
    if rejected:
        with st.expander(f"{count_text(len(rejected), 'rejected question')} and why"):
            st.dataframe(
                [
                    {
                        "question": i.question,
                        "reason": i.reason,
                        "detail": str(i.meta.get("reason_text", "")),
                        "chunk_id": i.chunk_id,
                    }
                    for i in rejected
                ],
                hide_index=True,
                key="qa_rejected_table",
            )


def review_ui(qa_id: str) -> None:
    st.subheader("Review")
    st.caption(
        "Edit questions, set status to accepted or rejected (your decision overrules the gate), "
        "or add rows with a question and a chunk id. Saving makes a new qa run; this one stays."
    )
    items = load_qa(qa_id, accepted_only=False)
    corpus_id = load_run(qa_id).manifest.parents.get("corpus", "")
    texts = {c.id: c.text for c in load_chunks(corpus_id)} if corpus_id else {}
    frame = pd.DataFrame(review_rows(items, texts), columns=list(REVIEW_COLUMNS))
    edited = st.data_editor(
        frame,
        key=f"qa_editor_{qa_id}",
        num_rows="dynamic",
        hide_index=True,
        column_config={
            "id": st.column_config.TextColumn("id", disabled=True),
            "question": st.column_config.TextColumn("question", width="large"),
            "status": st.column_config.SelectboxColumn(
                "status", options=["accepted", "rejected"], required=True, default="accepted"
            ),
            "reason": st.column_config.TextColumn("reason", disabled=True),
            "why": st.column_config.TextColumn(
                "why", disabled=True, help="the gate's detail, e.g. in how many chunks a quote is"
            ),
            "gold chunks": st.column_config.NumberColumn("gold chunks", disabled=True),
            "chunk_id": st.column_config.TextColumn("chunk_id", help="a chunk id of this corpus"),
            "passage": st.column_config.TextColumn(
                "passage",
                disabled=True,
                width="large",
                help="what the question is paired with: its chunk (a heading or cloze pair's "
                "chunk without its heading or sentence)",
            ),
            "split": st.column_config.TextColumn("split", disabled=True),
            "origin": st.column_config.TextColumn("origin", disabled=True),
            "source": st.column_config.TextColumn(
                "source", disabled=True, help="human, llm, heading or cloze"
            ),
        },
    )
    # Open while it holds a search, so a search does not fold the answer away.
    with st.expander("Find a chunk id", expanded=bool(st.session_state.get("qa_chunk_search"))):
        needle = st.text_input("Text in the chunk", key="qa_chunk_search")
        if needle:
            hits = [c for c in load_chunks(corpus_id) if needle.lower() in c.text.lower()][:20]
            st.dataframe(
                [{"chunk_id": c.id, "page": c.page, "text": c.text[:300]} for c in hits],
                hide_index=True,
                key="qa_chunk_hits",
            )
    if st.button("Save as new qa run", key="qa_review_save", disabled=locked("run")):
        with error_boundary("Saving the review"):
            run = save_review(qa_id, edited.to_dict(orient="records"))
            summary = run.manifest.summary
            st.success(
                f"QA run **{run.id}**: {summary['n_accepted']} accepted, "
                f"{summary['n_rejected']} rejected."
            )
            pick_later(None, run.id)


def export_ui(qa_id: str) -> None:
    from core.questions.exporting import export_hf_zip, export_qa

    st.subheader("Export")
    accepted_only = st.checkbox("Accepted questions only", True, key="qa_export_accepted")
    with error_boundary("Exporting"):
        items = load_qa(qa_id, accepted_only=accepted_only)
        corpus_id = load_run(qa_id).manifest.parents.get("corpus", "")
        texts = {c.id: c.text for c in load_chunks(corpus_id)}
        cols = st.columns(4)
        mimes = {
            "csv": "text/csv",
            "jsonl": "application/jsonl",
            "parquet": "application/octet-stream",
        }
        for col, fmt in zip(cols, ("csv", "jsonl", "parquet"), strict=False):
            col.download_button(
                fmt.upper(),
                audited(partial(export_qa, items, texts, fmt), [qa_id], f"questions as {fmt}"),
                file_name=f"{qa_id}.{fmt}",
                mime=mimes[fmt],
                on_click="ignore",
                key=f"qa_export_{fmt}",
            )
        zip_key = f"qa_hf_zip_{qa_id}_{accepted_only}"
        if cols[3].button("Prepare HF datasets folder", key="qa_export_hf_prepare"):
            st.session_state[zip_key] = export_hf_zip(items, texts, qa_id)
        if zip_key in st.session_state:
            cols[3].download_button(
                "HF datasets (.zip)",
                audited(partial(bytes, st.session_state[zip_key]), [qa_id], "questions as hf"),
                file_name=f"{qa_id}-hf.zip",
                mime="application/zip",
                key="qa_export_hf",
            )


# --------------------------------------------------------------------------- page

st.title("Questions")
st.caption(
    "A question set pairs each question with its gold chunk. Generated questions pass a quality "
    "gate; every rejection is kept with its reason. Splits are by chunk, so no test chunk is "
    "seen in training."
)
ended = ended_job("qa", JOBS_KEY)
if ended is not None and ended.manifest.status == "done":  # a generation that just ended
    pick_later(ended.manifest.parents.get("corpus"), ended.id)
apply_pending_picks()
picked_corpus = run_picker("corpus", "Corpus run", key=CORPUS_KEY)
source = st.radio(
    "Questions from", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="qa_source"
)
if source == "import":
    import_ui(picked_corpus)
elif picked_corpus is None:
    st.info("Build a corpus run on the Documents page first (or import a file with contexts).")
elif source == "sample":
    sample_ui(picked_corpus)
elif source == "documents":
    saved = documents_ui(picked_corpus)
    if saved:
        pick_now(saved)
else:
    generate_ui(picked_corpus)
running_panel("qa", JOBS_KEY, "question generation")
if ended is not None:
    generation_ended(ended)

if picked_corpus:
    st.divider()
    picked_run = qa_run_ui(picked_corpus)
    if picked_run:
        with error_boundary("Showing the question set"):
            gate_ui(picked_run)
            review_ui(picked_run)
            export_ui(picked_run)
