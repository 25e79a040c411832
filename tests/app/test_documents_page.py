"""The Documents page renders, builds the sample corpus, and shows its runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.documents.stage import UploadedFile, build_corpus
from core.runs.folders import list_runs

PAGE = Path(__file__).resolve().parents[2] / "pages" / "documents.py"


@pytest.fixture(autouse=True)
def clear_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


def test_page_renders_with_no_runs():
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Documents"
    assert at.button(key="docs_build").disabled  # nothing uploaded yet
    assert "No finished corpus runs yet." in [c.value for c in at.caption]


def test_sample_button_builds_a_corpus_run():
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.button(key="docs_sample").click().run()
    assert not at.exception
    assert not at.error
    (run,) = list_runs("corpus")
    assert run.manifest.status == "done" and run.manifest.summary["n_chunks"] > 100
    assert f"Corpus run **{run.id}**" in at.success[0].value
    # Browser tour: '1 document(s)'; the number agrees with its noun.
    n_chunks = run.manifest.summary["n_chunks"]
    assert f": 1 document, {n_chunks:,} chunks" in at.success[0].value
    assert at.selectbox(key="docs_corpus_pick").value == run.id
    assert at.button(key="docs_index") is not None


def test_indexing_runs_in_the_background_and_the_page_says_how_it_ended():
    from core.runs.jobs import tail_log
    from tests.support.jobs import only_job

    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.button(key="docs_sample").click().run()
    assert "docs_query" not in [t.key for t in at.text_input]  # nothing indexed: no query box
    at.button(key="docs_index").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = list_runs("index")
    assert any(job.id in m.value for m in at.markdown)  # the running panel, with its Stop
    assert at.button(key=f"docs_index_stop_{job.id}") is not None
    assert only_job("index", timeout=600).manifest.status in ("running", "done")
    at.run()
    fresh = list_runs("index")[0]
    assert fresh.manifest.status == "done", tail_log(fresh)
    n_chunks = list_runs("corpus")[0].manifest.summary["n_chunks"]
    assert any(
        f"{n_chunks:,} chunks added (embedded), 0 already there" in s.value for s in at.success
    ), [s.value for s in at.success]
    at.text_input(key="docs_query").set_value("How do I upgrade Debian?").run()
    assert not at.exception and not at.error
    assert any("faq" in m.value.lower() for m in at.markdown)  # hits with their source
    # Issue 26: the fifth hit was cut mid-word. Each hit is its chunk's text, or its start up to
    # a whole word and ' …'.
    from core.documents.corpus import load_chunks

    texts = [c.text for c in load_chunks(list_runs("corpus")[0].id)]
    hits = [t.value for t in at.text]
    assert len(hits) == 5
    for hit in hits:
        stem = hit.removesuffix(" …")
        assert hit in texts or any(
            t.startswith(stem) and t[len(stem)].isspace() for t in texts if len(t) > len(stem)
        ), hit


def test_invalid_chunking_settings_disable_building():
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.number_input(key="docs_overlap_recursive").set_value(2000).run()
    assert (
        "Chunk overlap 2000 must be at least 0 and below the chunk size 1000" in at.error[0].value
    )
    assert at.button(key="docs_sample").disabled


def test_existing_run_shows_documents_and_deletes_one():
    original = build_corpus(
        [UploadedFile("a.txt", b"Alpha text about owls."), UploadedFile("b.txt", b"Beta on bees.")]
    )
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value  # the corpus run's per-file table
    assert list(table["file"]) == ["a.txt", "b.txt"]
    at.selectbox(key="docs_delete_pick").set_value("a.txt")
    at.button(key="docs_delete").click().run()
    assert not at.exception and not at.error
    (newest,) = [r for r in list_runs("corpus") if r.id != original.run.id]
    assert [f["name"] for f in newest.read_json("documents.json")] == ["b.txt"]
    assert at.selectbox(key="docs_corpus_pick").value == newest.id
    assert list(at.dataframe[0].value["file"]) == ["b.txt"]
    assert f"Built corpus run **{newest.id}**" in at.success[0].value


def test_building_the_same_files_again_offers_the_existing_run():
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not any("already built" in i.value for i in at.info)
    at.button(key="docs_sample").click().run()
    (first,) = list_runs("corpus")
    at.run()  # the next visit, or any click
    offer = [i.value for i in at.info if "already built" in i.value]
    assert offer and "The sample corpus, with these settings, already built" in offer[0]
    at.number_input(key="docs_size_recursive").set_value(800).run()  # other chunks: no offer
    assert not any("already built" in i.value for i in at.info)
    at.number_input(key="docs_size_recursive").set_value(1000).run()
    at.button(key="docs_reuse_sample").click().run()
    assert not at.exception
    assert len(list_runs("corpus")) == 1  # nothing new was built
    assert at.selectbox(key="docs_corpus_pick").value == first.id
    assert any("the same files and settings" in s.value for s in at.success)


def test_a_skipped_files_reason_is_shown_whole():
    reason_file = UploadedFile("report.docx", b"PK\x03\x04" + b"\x00" * 64)
    build_corpus([UploadedFile("a.txt", b"Alpha text about owls. " * 20), reason_file])
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception
    (report,) = [r for r in at.dataframe[0].value.itertuples() if r.status == "skipped"]
    full = [c.value for c in at.caption if c.value.startswith("**report.docx** (skipped): ")]
    assert full and full[0].endswith(report.problem)  # the whole reason, not the cell's first words
    assert len(report.problem) > 60


def test_pressing_build_again_selects_the_existing_run_and_makes_no_copy():
    """Issue 26, item 4: the offer was advice only; building again made a second corpus."""
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.button(key="docs_sample").click().run()
    (first,) = list_runs("corpus")
    at.button(key="docs_sample").click().run()
    assert not at.exception and not at.error
    assert len(list_runs("corpus")) == 1
    assert any(
        f"Corpus run **{first.id}**" in i.value and "no new run was made" in i.value
        for i in at.info
    ), [i.value for i in at.info]
    assert at.selectbox(key="docs_corpus_pick").value == first.id


def test_with_no_new_upload_the_page_says_so_instead_of_an_add_0_files_button():
    """Issue 26: a disabled 'Add the 0 new uploaded file(s)' button. Nothing uploaded, or only
    files the run holds: a sentence and no button; a new file: the button, counted in words."""
    owls = UploadedFile("a.txt", b"Alpha text about owls. " * 20)
    build_corpus([owls])
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "docs_add"]
    captions = [c.value for c in at.caption]
    assert "To add documents to this corpus, upload them under 1. Build a corpus." in captions

    at.file_uploader(key="docs_upload").upload(owls.name, owls.data, "text/plain").run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "docs_add"]
    assert "The uploaded file is already in this corpus run." in [c.value for c in at.caption]

    at.file_uploader(key="docs_upload").upload("b.txt", b"Beta text on bees. " * 20, "text/plain")
    at.run()
    assert not at.exception
    add = at.button(key="docs_add")
    assert add.label == "Add the 1 new uploaded file to this corpus (new run)"
    assert not add.disabled
