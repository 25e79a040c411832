"""The Questions page: sample set, generation through a loopback OpenAI-compatible server,
gate statistics, review saved as a new run, import and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.questions.dataset import load_qa
from core.questions.gate import REASONS
from core.runs.folders import create_run, list_runs
from core.runs.jobs import tail_log
from tests.support.jobs import only_job
from tests.support.openai_server import ChatServer, Reply

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "questions.py"
SAMPLE = ROOT / "data" / "sample" / "qa_sample.jsonl"


@pytest.fixture(autouse=True)
def clear_caches(monkeypatch):
    for name in ("RAGBENCH_LLM_BACKEND", "RAGBENCH_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


def make_corpus(texts: list[str]) -> str:
    run = create_run("corpus", name="page corpus")
    save_chunks(
        run,
        [
            Chunk(id=chunk_id_for(t), text=t, source="doc.txt", chunk_index=i)
            for i, t in enumerate(texts)
        ],
    )
    run.set_status("done")
    return run.id


def sample_corpus(n: int = 6) -> str:
    """A small corpus whose chunks hold the quotes of the first n sample questions."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:n]]
    return make_corpus([f"Some lead-in text. {r['evidence']} Some trailing text." for r in rows])


def reasons_table(at: AppTest):
    """The rejected-by-reason table (read-only tables carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if "what it means" in d.value.columns)


def shares_table(at: AppTest):
    """The splits by chunk, asked against achieved shares."""
    return next(d.value for d in at.dataframe if "achieved" in d.value.columns)


def page() -> AppTest:
    return AppTest.from_file(str(PAGE), default_timeout=60)


def test_page_renders_without_a_corpus():
    at = page().run()
    assert not at.exception
    assert at.title[0].value == "Questions"
    assert any("Build a corpus run on the Documents page" in i.value for i in at.info)


def test_sample_set_loads_with_gate_stats_review_and_export():
    corpus_id = sample_corpus()
    at = page().run()
    at.button(key="qa_sample_load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run,) = list_runs("qa")
    assert run.manifest.parents == {"corpus": corpus_id}
    assert f"QA run **{run.id}**: 6 question(s) matched" in at.success[0].value
    assert at.selectbox(key="qa_run_pick").value == run.id
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accepted"] == "6"
    assert int(metrics["Rejected"]) >= 150  # quotes of the other sample questions are absent
    assert reasons_table(at)["reason"].tolist() == ["evidence_not_found"]
    shares = shares_table(at)
    assert list(shares.columns) == ["split", "questions", "chunks", "asked", "achieved"]
    assert shares["asked"].tolist() == ["70%", "15%", "15%"]
    editor = at.data_editor(key=f"qa_editor_{run.id}")
    assert editor.editing_mode == "dynamic"
    assert len(editor.value) == run.manifest.summary["n_items"]
    labels = [b.label for b in at.download_button]
    assert labels == ["CSV", "JSONL", "PARQUET"]
    # Browser tour: '23 rejected question(s) and why'
    assert f"{metrics['Rejected']} rejected questions and why" in [e.label for e in at.expander]


def test_a_question_whose_evidence_is_in_two_chunks_is_counted_in_words():
    """Browser tour: '46 question(s) have their evidence in more than one chunk'."""
    row = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    make_corpus([f"First copy. {row['evidence']} End.", f"Second copy. {row['evidence']} End."])
    at = page().run()
    at.button(key="qa_sample_load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert list_runs("qa")[0].manifest.summary.get("n_multi_gold") == 1
    captions = " ".join(c.value for c in at.caption)
    assert "1 question has its evidence in more than one chunk (chunks overlap)" in captions


def test_a_second_set_is_what_the_page_shows_right_after_it_is_made():
    """The success line and the picker below it name the same, new set (the picker showed the
    previous set until the next click)."""
    sample_corpus()
    at = page().run()
    at.button(key="qa_sample_load").click().run()
    at.button(key="qa_sample_load").click().run()
    newest = list_runs("qa")[0]
    assert f"QA run **{newest.id}**" in at.success[0].value
    assert at.selectbox(key="qa_run_pick").value == newest.id


def test_review_edits_save_a_new_run():
    corpus_id = sample_corpus()
    at = page().run()
    at.button(key="qa_sample_load").click().run()
    (source,) = list_runs("qa")
    items = load_qa(source, accepted_only=False)
    at.session_state[f"qa_editor_{source.id}"] = {
        "edited_rows": {
            0: {"question": "How often do the Debian archives get updated each day?"},
            1: {"status": "rejected"},
        },
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    at.button(key="qa_review_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    reviewed = next(r for r in list_runs("qa") if r.id != source.id)
    assert reviewed.manifest.parents == {"corpus": corpus_id, "source": source.id}
    new_items = load_qa(reviewed, accepted_only=False)
    assert new_items[0].question == "How often do the Debian archives get updated each day?"
    assert new_items[0].meta["before_edit"] == items[0].question
    assert (new_items[1].status, new_items[1].reason) == ("rejected", "reviewer")
    at.run()
    assert at.selectbox(key="qa_run_pick").value == reviewed.id


def test_generate_through_an_openai_compatible_server(monkeypatch):
    corpus_id = make_corpus(
        [
            "The apt-get tool downloads packages from the mirrors listed in sources.list.",
            "A stable release is supported with security updates for about three years.",
        ]
    )

    def handler(body):
        passage = body["messages"][-1]["content"]
        if "apt-get" in passage:
            questions = [
                {
                    "question": "Where does apt-get find the mirrors it downloads from?",
                    "answer": "sources.list",
                },
                {"question": "QUESTION #1\n"},
            ]
        else:
            questions = [
                {"question": "How long does a Debian stable release get security support?"},
                {"question": "...', additional_kwargs={}, response_metadata={})]"},
            ]
        return Reply(content=json.dumps({"questions": questions}))

    with ChatServer(handler) as server:
        monkeypatch.setenv("RAGBENCH_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("RAGBENCH_LLM_MODEL", "test-model")
        at = page().run()
        at.radio(key="qa_source").set_value("generate").run()
        assert any("test-model at http://127.0.0.1" in m.value for m in at.markdown)
        assert any("2 chunk(s): 2 LLM call(s)" in i.value for i in at.info)
        at.checkbox(key="qa_near_dup").uncheck().run()
        at.button(key="qa_generate").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        only_job("qa")  # a background job: the page does not wait, the test does
        at.run()
    run = list_runs("qa")[0]
    assert run.manifest.status == "done", tail_log(run)
    assert at.selectbox(key="qa_run_pick").value == run.id  # the set just made is the one shown
    assert run.manifest.parents == {"corpus": corpus_id}
    assert "2 accepted, 2 rejected, 0 chunk(s) failed" in at.success[0].value
    reasons = reasons_table(at)
    assert dict(zip(reasons["reason"], reasons["count"], strict=True)) == {
        "template_echo": 1,
        "message_repr": 1,
    }
    assert len(server.requests) == 2


def test_embedded_backend_is_labelled_demo_quality():
    make_corpus(["A chunk about something worth asking about in detail."])
    at = page().run()
    at.radio(key="qa_source").set_value("generate").run()
    assert not at.exception
    assert any("demo quality" in m.value for m in at.markdown)
    assert any("demo quality" in w.value for w in at.warning)


def test_import_a_csv_into_a_new_corpus():
    csv = (
        "question,context,answer\n"
        "How often are the archives updated?,The archives are updated twice every day.,Twice a day\n"
        "Which tool installs .deb files?,The dpkg tool installs .deb files.,dpkg\n"
    )
    at = page().run()
    at.radio(key="qa_source").set_value("import").run()
    at.file_uploader(key="qa_import_file").upload("pairs.csv", csv.encode(), "text/csv").run()
    assert not at.exception
    assert at.selectbox(key="qa_map_question").value == "question"
    assert at.selectbox(key="qa_map_chunk").value == "context"
    assert at.selectbox(key="qa_map_answer").value == "answer"
    at.button(key="qa_import_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (qa_run,) = list_runs("qa")
    (corpus,) = list_runs("corpus")
    assert qa_run.manifest.parents == {"corpus": corpus.id}
    assert [i.reference_answer for i in load_qa(qa_run)] == ["Twice a day", "dpkg"]
    at.run()
    assert at.selectbox(key="qa_corpus_pick").value == corpus.id
    assert at.selectbox(key="qa_run_pick").value == qa_run.id


def test_import_preview_says_what_the_gate_rejects_before_saving():
    csv = (
        "question,context\n"
        "What is APT?,APT fetches packages and resolves their dependencies.\n"
        "QUESTION #1,The dpkg tool installs .deb files.\n"
        "Is C++ supported?,The archive has compilers for C++ and other languages.\n"
        "Is C supported?,The archive has a compiler for C as well.\n"
    )
    at = page().run()
    at.radio(key="qa_source").set_value("import").run()
    at.file_uploader(key="qa_import_file").upload("human.csv", csv.encode(), "text/csv").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "**Before saving:** 4 question(s): 3 accepted, 1 rejected." in text
    (reasons,) = [df.value for df in at.dataframe if "reason" in df.value.columns]
    assert reasons.to_dict("records") == [
        {"reason": "template_echo", "questions": 1, "meaning": REASONS["template_echo"]}
    ]
    assert list_runs("qa") == [] and list_runs("corpus") == []  # nothing saved yet
    shares = shares_table(at)
    assert shares["asked"].tolist() == ["70%", "15%", "15%"]
    assert shares["chunks"].sum() == 3  # the accepted questions' chunks
    assert at.checkbox(key="qa_import_near_dup").value  # near-duplicates tied by default
    at.number_input(key="qa_import_seed").set_value(7).run()
    at.button(key="qa_import_go").click().run()
    (qa_run,) = list_runs("qa")
    assert qa_run.manifest.config["split"]["seed"] == 7
    assert [i.question for i in load_qa(qa_run)] == [
        "What is APT?",
        "Is C++ supported?",
        "Is C supported?",
    ]


def test_pairs_from_the_documents_are_previewed_then_saved_and_picked():
    from core.documents.stage import UploadedFile, build_corpus
    from tests.support.documents import MARKDOWN, pdf_bytes

    corpus = build_corpus(
        [UploadedFile("guide.pdf", pdf_bytes()), UploadedFile("guide.md", MARKDOWN.encode())],
        name="guides",
    ).run
    at = page().run()
    at.radio(key="qa_source").set_value("documents").run()
    assert not at.exception
    assert any("Preview to see the pairs" in c.value for c in at.caption)
    at.button(key="qa_docs_preview_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sources = next(
        d.value
        for d in at.dataframe
        if "source" in d.value.columns and "accepted" in d.value.columns
    )
    assert set(sources["source"]) == {"heading", "cloze"}
    rejected = next(d.value for d in at.dataframe if "meaning" in d.value.columns)
    assert {"generic_heading", "numbers_only"} <= set(rejected["reason"])
    assert any("For example:" in c.value and "names no topic" in c.value for c in at.caption)
    assert not list_runs("qa")  # nothing saved by a preview
    at.button(key="qa_docs_save").click().run()
    assert not at.exception and not at.error
    (run,) = list_runs("qa")
    assert run.manifest.parents == {"corpus": corpus.id}
    assert f"QA run **{run.id}**" in at.success[0].value
    at.run()
    assert at.selectbox(key="qa_run_pick").value == run.id
    assert {i.source for i in load_qa(run)} == {"heading", "cloze"}


def test_the_find_a_chunk_panel_stays_open_after_a_search():
    """Issue 26: the 'Find a chunk id' panel collapsed after each search."""
    sample_corpus()
    at = page().run()
    at.button(key="qa_sample_load").click().run()
    panel = next(e for e in at.expander if e.label == "Find a chunk id")
    assert not panel.proto.expanded  # nothing searched yet: closed
    at.text_input(key="qa_chunk_search").input("lead-in").run()
    assert not at.exception, at.exception
    panel = next(e for e in at.expander if e.label == "Find a chunk id")
    assert panel.proto.expanded
