"""Documents page: upload or pick the sample, build a corpus run, inspect it, index it into Chroma."""

from __future__ import annotations

import contextlib

import streamlit as st

from core.documents.chunking import DEFAULT_SIZES, STRATEGIES, ChunkingConfig
from core.documents.index_job import index_text, start_indexing
from core.documents.reuse import add_or_reuse, build_or_reuse, sample_or_reuse
from core.documents.stage import (
    CorpusBuildResult,
    FileReport,
    UploadedFile,
    identical_corpus,
    load_documents,
    new_files,
    remove_documents,
    sample_files,
)
from core.errors import ConfigError, RagbenchError
from core.formatting import count_text
from core.runs.folders import Run, list_runs, load_run
from core.text import cut_at_word
from pages._jobs_ui import ended_job, ended_notice, running_panel
from pages._ui import (
    StreamlitProgress,
    cached_model,
    chroma_settings,
    error_boundary,
    guard_page,
    locked,
    remember_run,
    run_picker,
)

guard_page()  # team mode: nothing of this page before sign-in

PICK_KEY = "docs_corpus_pick"
PENDING_KEY = "docs_pending_pick"
JOBS_KEY = "docs_index"
HIT_CHARS = 600  # of a search hit's text shown
STRATEGY_LABELS = {
    "recursive": "Recursive characters (paragraphs, then lines, then words)",
    "token": "Tokens of the embedding model (never longer than it reads)",
    "markdown": "Markdown headers, then recursive characters",
}


def file_rows(files: list[FileReport]) -> list[dict[str, object]]:
    """Rows of the per-file table."""
    return [
        {
            "file": f.name,
            "status": f.status,
            "pages": f.pages,
            "chars": f.chars,
            "chunks": f.chunks,
            "problem": f.reason or "; ".join(f.warnings),
        }
        for f in files
    ]


def files_table(files: list[FileReport], key: str) -> None:
    """The per-file table, then each problem in full: a table cell cuts a long reason off."""
    st.dataframe(file_rows(files), hide_index=True, key=key)
    for f in files:
        problem = f.reason or "; ".join(f.warnings)
        if problem:
            st.caption(f"**{f.name}** ({f.status}): {problem}")


def chunking_ui() -> tuple[ChunkingConfig | None, int]:
    """Chunking settings; returns the config (None when invalid) and the size limit in bytes."""
    with st.expander("Chunking settings", expanded=False):
        strategy = st.selectbox(
            "Strategy",
            STRATEGIES,
            format_func=lambda s: STRATEGY_LABELS[s],
            key="docs_strategy",
        )
        size, overlap = DEFAULT_SIZES[strategy]
        unit = "tokens" if strategy == "token" else "characters"
        left, right, limit = st.columns(3)
        chunk_size = left.number_input(
            f"Chunk size ({unit})", 20, 20000, size, step=50, key=f"docs_size_{strategy}"
        )
        chunk_overlap = right.number_input(
            f"Overlap ({unit})", 0, 10000, overlap, step=10, key=f"docs_overlap_{strategy}"
        )
        # The server refuses bigger files before the app sees them: the app allows no more.
        server_mb = max(1, int(st.get_option("server.maxUploadSize")))
        max_mb = limit.number_input(
            "Size limit per file (MB)",
            1,
            server_mb,
            min(50, server_mb),
            key="docs_max_mb",
            help=f"At most the server's limit, {server_mb} MB (server.maxUploadSize).",
        )
        if strategy == "token":
            st.caption("Token sizes use the default embedding model's tokenizer.")
    try:
        config = ChunkingConfig(
            strategy=strategy, chunk_size=int(chunk_size), chunk_overlap=int(chunk_overlap)
        )
    except ConfigError as exc:
        st.error(str(exc))
        return None, int(max_mb * 1024 * 1024)
    return config, int(max_mb * 1024 * 1024)


def show_build_result(result: CorpusBuildResult) -> None:
    """Summary of a finished build and its per-file table (or the earlier run it reused)."""
    if result.reused:
        st.info(
            f"Corpus run **{result.run.id}** ({result.run.manifest.name or 'unnamed'}, "
            f"{result.n_chunks} chunks) already holds these files with these settings: it is "
            "selected below, and no new run was made."
        )
        return
    ok, skipped = result.ok_files, result.skipped_files
    st.success(
        f"Corpus run **{result.run.id}**: {count_text(len(ok), 'document')}, "
        f"{count_text(result.n_chunks, 'chunk')}"
        + (
            f", {count_text(result.duplicates_removed, 'duplicate chunk')} removed"
            if result.duplicates_removed
            else ""
        )
        + (f"; {count_text(len(skipped), 'file')} skipped" if skipped else "")
        + "."
    )
    for warning in result.warnings:
        st.warning(warning)
    files_table(result.files, "docs_build_table")


def offer_reuse(run: Run | None, what: str, key: str) -> None:
    """Say that a finished corpus run holds exactly these files and settings; offer to use it."""
    if run is None:
        return
    label = f"{run.manifest.name or run.id} · {run.manifest.created_at[:16].replace('T', ' ')}"
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.info(
        f"{what}, with these settings, already built corpus run **{label}** "
        f"({run.manifest.summary.get('n_chunks', '?')} chunks). Building again selects it "
        "rather than making a copy: its question sets, models and indexes stay with it."
    )
    if right.button("Use that run", key=f"docs_reuse_{key}", help=run.id):
        st.session_state[PENDING_KEY] = (
            run.id,
            f"Using corpus run **{run.id}**: the same files and settings.",
        )
        st.rerun()


def held_names(run: Run, files: list[UploadedFile]) -> set[str]:
    """The names of the uploaded files whose bytes the corpus run already holds."""
    if not files:
        return set()
    try:
        fresh = {f.name for f in new_files(run, files)}
    except RagbenchError:  # it holds them all (or has no original files)
        return {f.name for f in files}
    return {f.name for f in files} - fresh


def read_uploads(uploads: list, max_bytes: int) -> list[UploadedFile]:
    """The uploads within the per-file limit and the user's quota (team mode), checked from the
    sizes the browser reported before any file is read; the refused ones are said."""
    from core.documents.quota import check_uploads
    from core.runs.actor import acting
    from core.team import team_config
    from pages._ui import team_secrets

    try:
        check = check_uploads(
            [(f.name, f.size) for f in uploads],
            max_bytes=max_bytes,
            quota_bytes=team_config(team_secrets()).upload_quota_bytes,
            user=acting().name,
        )
    except RagbenchError as exc:
        st.error(str(exc))
        return []
    for name, reason in check.refused.items():
        st.warning(f"**{name}** was skipped: {reason}.")
    return [UploadedFile(f.name, f.getvalue()) for f in uploads if f.name in check.accepted]


def build_ui(config: ChunkingConfig | None, max_bytes: int) -> list[UploadedFile]:
    """Upload and build; returns the uploaded files (for adding to an existing corpus)."""
    st.subheader("1. Build a corpus")
    uploads = st.file_uploader(
        "Upload documents (PDF, TXT, MD, HTML)",
        accept_multiple_files=True,
        key="docs_upload",
        # The limit it states (and the browser enforces) is the one chosen above, not 200 MB.
        max_upload_size=max(1, max_bytes // (1024 * 1024)),
        help="Each file is checked on its own: a bad file is skipped with the reason, "
        "the others still go in. DOCX is not supported yet: export it as PDF.",
    )
    files = read_uploads(uploads or [], max_bytes)
    name = st.text_input("Corpus name (optional)", key="docs_name")
    left, right = st.columns(2)
    build = left.button(
        "Build corpus run",
        disabled=locked("run") or not files or config is None,
        type="primary",
        key="docs_build",
    )
    sample = right.button(
        "Use the sample corpus (Debian FAQ, 73 pages)",
        disabled=locked("run") or config is None,
        key="docs_sample",
    )
    if config is not None and not (build or sample):
        with contextlib.suppress(RagbenchError):  # a missing sample is said on its button
            offer_reuse(identical_corpus(files, config, max_bytes), "These files", "upload")
            offer_reuse(identical_corpus(sample_files(), config), "The sample corpus", "sample")
    if (build or sample) and config is not None:
        progress = StreamlitProgress("Parsing and chunking")
        with error_boundary("Building the corpus"):
            if sample:
                result = sample_or_reuse(config, on_progress=progress)
            else:
                result = build_or_reuse(
                    files, config, name=name, max_bytes=max_bytes, on_progress=progress
                )
            progress.done(f"{'Reused' if result.reused else 'Built'} {result.run.id}")
            st.session_state[PICK_KEY] = result.run.id
            remember_run("corpus", result.run.id)
            show_build_result(result)
    return files


def switch_to(result: CorpusBuildResult) -> None:
    """Select a run built from the picked one (a new run) on the next rerun."""
    kept = ", ".join(f.name for f in result.ok_files)
    done = (
        f"Corpus run **{result.run.id}** already holds {kept} with these settings: selected it, "
        "no new run made."
        if result.reused
        else f"Built corpus run **{result.run.id}** ({result.n_chunks} chunks from {kept}); "
        "the run it came from is unchanged."
    )
    st.session_state[PENDING_KEY] = (result.run.id, done)
    st.rerun()


def corpus_ui(files: list[UploadedFile]) -> str | None:
    """Pick a corpus run, see its documents and chunks, add or delete documents."""
    st.subheader("2. Corpus runs")
    if PENDING_KEY in st.session_state:  # a run built on the last click: select it, say so
        new_id, message = st.session_state.pop(PENDING_KEY)
        st.session_state[PICK_KEY] = new_id
        remember_run("corpus", new_id)
        st.success(message)
    corpus_id = run_picker("corpus", "Corpus run", key=PICK_KEY)
    if not corpus_id:
        return None
    with error_boundary("Reading the corpus run"):
        run = load_run(corpus_id)
        summary = run.manifest.summary
        cols = st.columns(4)
        cols[0].metric("Documents", summary.get("n_documents", 0))
        cols[1].metric("Pages", summary.get("n_pages", 0))
        cols[2].metric("Chunks", summary.get("n_chunks", 0))
        cols[3].metric("Duplicates removed", summary.get("duplicates_removed", 0))
        chunking = run.manifest.config.get("chunking", {})
        derived = run.manifest.config.get("derived_from")
        st.caption(
            f"Chunking: {chunking.get('strategy')} · size {chunking.get('chunk_size')} · "
            f"overlap {chunking.get('chunk_overlap')}"
            + (f" · derived from {derived}" if derived else "")
        )
        reports = load_documents(run)
        files_table(reports, "docs_corpus_table")
        with st.expander("Preview chunks"):
            from core.documents.corpus import load_chunks

            chunks = load_chunks(run)
            st.dataframe(
                [
                    {
                        "id": c.id,
                        "source": c.source,
                        "page": c.page,
                        "chars": len(c.text),
                        "text": c.text[:300],
                    }
                    for c in chunks[:200]
                ],
                hide_index=True,
                key="docs_chunk_table",
            )
        ok_names = [r.name for r in reports if r.status == "ok"]
        left, right = st.columns(2)
        with left:
            add_files_ui(run, files)
        with right:
            doomed = st.selectbox("Document", ok_names, key="docs_delete_pick")
            if st.button(
                "Delete document (new run without it)",
                disabled=locked("run") or len(ok_names) < 2,
                key="docs_delete",
                help="Runs are immutable: this builds a new corpus run without the document.",
            ):
                progress = StreamlitProgress("Rebuilding without the document")
                with error_boundary("Deleting the document"):
                    result = remove_documents(corpus_id, [doomed], on_progress=progress)
                    switch_to(result)
    return corpus_id


def add_files_ui(run: Run, files: list[UploadedFile]) -> None:
    """Add the uploaded files the corpus run lacks (a new run); with none to add, say why
    instead of offering a button that adds nothing."""
    if not files:
        st.caption("To add documents to this corpus, upload them under 1. Build a corpus.")
        return
    fresh = [f for f in files if f.name not in held_names(run, files)]
    if not fresh:
        st.caption(
            f"All {count_text(len(files), 'uploaded file')} are already in this corpus run."
            if len(files) > 1
            else "The uploaded file is already in this corpus run."
        )
        return
    if st.button(
        f"Add the {count_text(len(fresh), 'new uploaded file')} to this corpus (new run)",
        disabled=locked("run"),
        key="docs_add",
    ):
        progress = StreamlitProgress("Adding documents")
        with error_boundary("Adding documents"):
            result = add_or_reuse(run.id, files, on_progress=progress)
            switch_to(result)


def search_hits_ui(hits: list, chunks: dict) -> None:  # noqa: ANN001 - (id, score), Chunk
    """Each hit in a box of its own, its text cut at a word (not mid-word) with an ellipsis."""
    for rank, (chunk_id, score) in enumerate(hits, start=1):
        chunk = chunks.get(chunk_id)
        if chunk is None:
            continue
        text = cut_at_word(chunk.text, HIT_CHARS)
        with st.container(border=True):
            st.markdown(
                f"**{rank}.** cosine **{score:.3f}** · {chunk.source} · page {chunk.page or '-'}"
            )
            st.text(text)


def index_ui(corpus_id: str) -> None:
    """Index the picked corpus run into Chroma with the default model, then try a query."""
    from core.embeddings import DEFAULT_MODEL_LABEL, ModelSpec

    st.subheader("3. Index into Chroma")
    settings = chroma_settings()
    where = f"server {settings.host}:{settings.port}" if settings.is_server else "embedded store"
    st.caption(
        f"Model: {DEFAULT_MODEL_LABEL}, native dimension · Chroma: {where}. "
        "Chunks already indexed are skipped, so indexing again costs nothing."
    )
    spec = ModelSpec()
    if st.button("Index into Chroma", type="primary", key="docs_index", disabled=locked("run")):
        with error_boundary("Starting the indexing"):
            run = start_indexing(corpus_id, spec, None, settings)
            st.toast(f"Indexing {run.id} started in the background.")
    running_panel("index", JOBS_KEY, "indexing")
    ended = ended_job("index", JOBS_KEY)
    if ended is not None:
        summary = ended.manifest.summary
        ended_notice(ended, "indexing", index_text(summary))
    indexed = [
        r
        for r in list_runs("index")
        if r.manifest.status == "done"
        and r.manifest.parents.get("corpus") == corpus_id
        and r.manifest.config.get("model") == spec.to_dict()
        and r.manifest.config.get("dim") is None  # the query below is embedded at native dim
        and r.manifest.config.get("store") == where
    ]
    if not indexed:
        return
    collection = str(indexed[0].manifest.summary.get("collection"))
    query = st.text_input("Try a query", key="docs_query")
    if query:
        with error_boundary("Searching"):
            from core.documents.corpus import load_chunks
            from core.documents.vector_store import search
            from core.embeddings import encode_texts, query_prompt

            model = cached_model(spec.source, spec.ref)
            embedding = encode_texts(model, [query], prompt=query_prompt(model), cache=None)
            chunks = {c.id: c for c in load_chunks(corpus_id)}
            search_hits_ui(search(settings, collection, embedding, k=5)[0], chunks)


st.title("Documents")
st.caption(
    "Every build makes a corpus run: the original files, a per-file report and the chunks. "
    "Runs never change; adding or deleting a document makes a new one."
)
chunk_config, size_limit = chunking_ui()
uploaded = build_ui(chunk_config, size_limit)
st.divider()
picked = corpus_ui(uploaded)
if picked:
    st.divider()
    index_ui(picked)
