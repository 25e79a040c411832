"""The Questions page's "From the documents" source: heading and cloze pairs made without an LLM
(core.questions.from_documents), previewed before anything is saved."""

from __future__ import annotations

import streamlit as st

from core.questions.from_documents import (
    DocumentPairsConfig,
    DocumentPairsPreview,
    default_name,
    preview_document_pairs,
    save_document_pairs,
)
from core.runs.folders import list_runs
from pages._ui import (
    StreamlitProgress,
    cached_model,
    dealing_ui,
    error_boundary,
    locked,
    near_duplicates_caption,
    near_duplicates_ui,
    split_config_ui,
)

PREVIEW_KEY = "qa_docs_preview"


def _aligned_ui(corpus_id: str) -> tuple[str | None, bool]:
    """The question set to align with (the one you will evaluate on) and whether to copy it in."""
    sets = {
        r.id: f"{r.manifest.name} · {r.manifest.summary.get('n_accepted', '?')} accepted"
        for r in list_runs("qa")
        if r.manifest.status == "done" and r.manifest.parents.get("corpus") == corpus_id
    }
    human = [rid for rid, _ in sets.items() if "documents" not in sets[rid].lower()]
    options = [None, *sets]
    align = st.selectbox(
        "Align with the question set you will evaluate on",
        options,
        index=options.index(human[0]) if human else 0,
        format_func=lambda rid: "none: deal this set's own splits" if rid is None else sets[rid],
        key="qa_docs_align",
        help="Its validation and test chunks keep their split here, so a model trained on these "
        "pairs never trains on a chunk that set scores it on.",
    )
    include = st.checkbox(
        "Copy its questions into this set (then weigh the sources on the Fine-tune page)",
        False,
        key="qa_docs_include",
        disabled=align is None,
    )
    return align, include and align is not None


def config_ui(corpus_id: str) -> DocumentPairsConfig | None:
    """The pair settings; None when they are invalid (the error is shown)."""
    cols = st.columns(2)
    headings = cols[0].checkbox(
        "Section headings → the start of their section",
        True,
        key="qa_docs_headings",
        help="From a PDF's outline (or its large and bold lines), and Markdown and HTML headings. "
        "Headings that name no topic are rejected with a reason.",
    )
    cloze = cols[1].checkbox(
        "Cloze sentences → the rest of their chunk",
        True,
        key="qa_docs_cloze",
        help="The inverse cloze task: a sentence is the query, its chunk without it the positive.",
    )
    cols = st.columns(2)
    per_chunk = cols[0].number_input(
        "Cloze sentences per chunk", 1, 10, 1, key="qa_docs_per_chunk", disabled=not cloze
    )
    max_chunks = cols[1].number_input(
        "Chunks for cloze (0 = all)", 0, 1_000_000, 0, key="qa_docs_max_chunks", disabled=not cloze
    )
    align, include = _aligned_ui(corpus_id)
    split = split_config_ui("qa_docs", fixed=align is not None)
    if split is None:
        return None
    with error_boundary("Checking the settings"):
        return DocumentPairsConfig(
            headings=headings,
            cloze=cloze,
            cloze_per_chunk=int(per_chunk),
            max_chunks=int(max_chunks),
            seed=split.seed,
            align_with=align,
            include_aligned=include,
            split=split,
        )
    return None


def preview_ui(preview: DocumentPairsPreview) -> None:
    """What would be saved: per source, rejections by reason with examples, splits, notes."""
    st.markdown(f"**Before saving:** {len(preview.items)} pair(s), {preview.n_accepted} accepted.")
    st.dataframe(preview.sources(), hide_index=True, key="qa_docs_sources")
    rejected = preview.rejection_rows()
    if rejected:
        st.dataframe(rejected, hide_index=True, key="qa_docs_rejections")
        examples = [i for i in preview.items if i.status == "rejected"][:5]
        st.caption(
            "For example: "
            + "; ".join(
                f"{i.question[:60]!r} ({i.reason}: {i.meta.get('reason_text', '')})"
                for i in examples
            )
        )
    dealing_ui(preview.dealing(), "qa_docs_dealing")
    near_duplicates_caption(preview.gate_report.get("near_duplicates_tied"))
    for note in preview.notes:
        st.warning(note)
    accepted = [i for i in preview.items if i.status == "accepted"]
    with st.expander("A few pairs"):
        st.dataframe(
            [
                {
                    "source": i.source,
                    "query": i.question[:120],
                    "positive": (i.positive or "")[:200],
                    "split": i.split,
                }
                for i in accepted[:: max(1, len(accepted) // 12)][:12]
            ],
            hide_index=True,
            key="qa_docs_examples",
        )


def documents_ui(corpus_id: str) -> str | None:
    """Settings, a preview and the save button; the saved qa run's id, or None."""
    st.caption(
        "Training pairs from the documents' own structure, with no LLM: each section heading "
        "paired with the start of its section, and sentences paired with the rest of their "
        "chunk (the inverse cloze task). They go through the same gate and the same split by "
        "chunk. Evaluate the model they train on questions people wrote."
    )
    config = config_ui(corpus_id)
    if config is None:
        return None
    tie = near_duplicates_ui("qa_docs_near_dup")
    key = (corpus_id, repr(config), tie)
    if st.button("Preview", key="qa_docs_preview_go"):
        with error_boundary("Making pairs from the documents"):
            preview = preview_document_pairs(
                corpus_id,
                config,
                model=cached_model("default", "") if tie else None,
                on_progress=StreamlitProgress("Reading the documents"),
            )
            st.session_state[PREVIEW_KEY] = (key, preview)
    stored = st.session_state.get(PREVIEW_KEY)
    if not stored or stored[0] != key:
        st.caption("Preview to see the pairs and what the gate rejects before saving.")
        return None
    preview = stored[1]
    preview_ui(preview)
    name = st.text_input("Name", default_name(config), key="qa_docs_name")
    if st.button("Save question set", type="primary", key="qa_docs_save", disabled=locked("run")):
        with error_boundary("Saving the question set"):
            run = save_document_pairs(preview, name)
            st.session_state.pop(PREVIEW_KEY, None)
            st.success(f"QA run **{run.id}**: {preview.n_accepted} pair(s) from the documents.")
            return run.id
    return None
