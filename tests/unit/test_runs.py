"""The run store: create, load, list, delete, atomic writes, lineage."""

from __future__ import annotations

import json

import pytest

from core.errors import LineageError, RunError
from core.runs.folders import create_run, delete_run, list_runs, load_run
from core.runs.lineage import check_same_lineage


def test_create_load_roundtrip(data_root):
    run = create_run("corpus", name="docs", config={"chunk_size": 800})
    loaded = load_run(run.id)
    assert loaded.manifest.config == {"chunk_size": 800}
    assert loaded.manifest.status == "pending"
    assert "python" in loaded.manifest.versions
    assert (data_root / "runs" / run.id / "manifest.json").exists()


def test_status_and_artifacts(data_root):
    run = create_run("qa")
    run.write_json("items.json", [{"a": 1}])
    run.set_status("done", n_items=1)
    loaded = load_run(run.id)
    assert loaded.manifest.status == "done"
    assert loaded.manifest.summary == {"n_items": 1}
    assert loaded.read_json("items.json") == [{"a": 1}]
    with pytest.raises(RunError, match="outside"):
        run.artifact("../escape.json")
    assert not list((data_root / "runs" / run.id).glob(".*.tmp"))


def test_list_filters_and_skips_broken(data_root):
    a = create_run("corpus")
    b = create_run("qa", parents={"corpus": a.id})
    broken = data_root / "runs" / "qa-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert {r.id for r in list_runs()} == {a.id, b.id}
    assert [r.id for r in list_runs("qa")] == [b.id]
    with pytest.raises(RunError, match="unreadable manifest"):
        load_run("qa-broken")


def test_missing_parent_refused():
    with pytest.raises(RunError, match="does not exist"):
        create_run("qa", parents={"corpus": "corpus-nope"})


def test_delete_refuses_with_children_then_works(data_root):
    a = create_run("corpus")
    b = create_run("qa", parents={"corpus": a.id})
    with pytest.raises(RunError, match=f"Run {a.id} is a parent of {b.id}"):
        delete_run(a.id)
    delete_run(b.id)
    delete_run(a.id)
    assert list_runs() == []


def test_lineage_refuses_runs_of_different_corpora():
    c1, c2 = create_run("corpus"), create_run("corpus")
    q1 = create_run("qa", parents={"corpus": c1.id})
    m1 = create_run("model", parents={"qa": q1.id})
    q2 = create_run("qa", parents={"corpus": c2.id})
    check_same_lineage(m1, q1)  # same corpus: fine
    with pytest.raises(LineageError) as info:
        check_same_lineage(m1, q2)
    message = str(info.value)
    assert m1.id in message and q2.id in message and c1.id in message and c2.id in message


def test_manifest_is_valid_json_after_many_updates(data_root):
    run = create_run("model")
    for i in range(20):
        run.set_status("running", step=i)
    data = json.loads((run.path / "manifest.json").read_text())
    assert data["summary"]["step"] == 19


def test_descendants_deepest_first():
    c = create_run("corpus")
    q = create_run("qa", parents={"corpus": c.id})
    m = create_run("model", parents={"qa": q.id})
    e = create_run("retrieval_eval", parents={"qa": q.id, "model": m.id})
    from core.runs.lineage import descendants_of

    ids = [r.id for r in descendants_of(c.id)]
    assert set(ids) == {q.id, m.id, e.id}
    assert ids.index(e.id) < ids.index(m.id) < ids.index(q.id)


def test_model_runs_for_qa_lists_the_corpus_models_and_hides_other_corpora():
    from core.runs.lineage import model_run_label, model_runs_for_qa

    c = create_run("corpus")
    q1 = create_run("qa", name="hand-written", parents={"corpus": c.id})
    q2 = create_run("qa", name="From the documents", parents={"corpus": c.id})
    mine = create_run("model", name="mine", parents={"qa": q1.id})
    mine.set_status("done")
    sibling = create_run("model", name="docs", parents={"qa": q2.id})
    sibling.set_status("done")
    elsewhere = create_run(
        "model", parents={"qa": create_run("qa", parents={"corpus": create_run("corpus").id}).id}
    )
    elsewhere.set_status("done")
    create_run("model", parents={"qa": q1.id}).set_status("failed")  # unfinished: neither list
    runs, hidden = model_runs_for_qa(q1.id)
    assert {r.id for r in runs} == {mine.id, sibling.id} and hidden == 1
    # A model trained on another question set of the corpus says so in a picker.
    assert model_run_label(sibling, q1.id).endswith(" · trained on From the documents")
    assert "trained on" not in model_run_label(mine, q1.id)


def test_a_stopped_run_without_a_model_is_not_offered_and_a_finished_one_comes_first():
    from core.embeddings import RUN_MODEL_DIR
    from core.runs.lineage import model_runs_for_qa, preferred_model

    c = create_run("corpus")
    q = create_run("qa", parents={"corpus": c.id})
    done = create_run("model", name="tuned", parents={"qa": q.id})
    done.set_status("done")
    cut = create_run("model", name="stopped in training", parents={"qa": q.id})
    (cut.path / RUN_MODEL_DIR).mkdir()  # the model at the stop
    cut.set_status("stopped")
    empty = create_run("model", name="stopped before training", parents={"qa": q.id})
    empty.set_status("stopped")  # no model folder: nothing to evaluate
    runs, _ = model_runs_for_qa(q.id)
    assert [r.id for r in runs] == [cut.id, done.id]  # newest first, the empty one left out
    # the session's current model, when it finished; else the newest finished one
    assert preferred_model(runs, done.id) == done.id
    assert preferred_model(runs, cut.id) == done.id
    assert preferred_model(runs, empty.id) == done.id
    assert preferred_model([cut], cut.id) == cut.id  # only a stopped one: offered
    assert preferred_model([], None) is None


def test_damaged_qa_file_names_run_and_line():
    from core.questions.dataset import QA_FILE, QAItem, load_qa, save_qa

    c = create_run("corpus")
    q = create_run("qa", parents={"corpus": c.id})
    save_qa(q, [QAItem(id="a", question="What is dpkg?", chunk_id="c_1", split="train")])
    with q.artifact(QA_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"id": "b", "question": \n')
    with pytest.raises(RunError, match=rf"QA run {q.id} has a damaged qa.jsonl \(line 2\)"):
        load_qa(q.id)
    with pytest.raises(RunError, match="is a corpus run, not a qa run"):
        load_qa(c.id)


def test_a_job_that_cannot_start_leaves_its_run_failed_not_running(monkeypatch):
    import subprocess

    from core.errors import RunError
    from core.runs.folders import create_run, load_run
    from core.runs.jobs import start_job

    def no_process(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    run = create_run("retrieval_eval", name="never started")
    with pytest.raises(RunError, match="Could not start the job"):
        start_job(run, module="core.evaluation.job")
    fresh = load_run(run.id)
    assert fresh.manifest.status == "failed"
    assert "Cannot allocate memory" in fresh.manifest.error


def test_a_run_whose_job_is_running_is_not_deleted_nor_its_parents(data_root):
    import os

    from core.deletion import delete_with_dependants
    from core.errors import RunError
    from core.runs.folders import create_run, list_runs
    from core.runs.jobs import process_start_time

    qa = create_run("qa", name="set")
    qa.set_status("done")
    job = create_run("retrieval_eval", name="eval", parents={"qa": qa.id})
    me = os.getpid()  # an alive process stands in for the job's
    job.set_status(
        "running", job_module="core.evaluation.job", pid=me, pid_started=process_start_time(me)
    )
    with pytest.raises(RunError, match="still has a background job running"):
        delete_with_dependants(qa.id)
    assert {r.id for r in list_runs()} == {qa.id, job.id}
    job.set_status("done")
    assert delete_with_dependants(qa.id).runs == [job.id, qa.id]


class _PageLeft(BaseException):
    """What Streamlit raises in a script whose page was left mid-run (a BaseException)."""


def test_an_interrupted_stage_is_stopped_with_a_readable_reason_not_an_exception_name(data_root):
    from core.runs.guard import INTERRUPTED, stage_run

    run = create_run("corpus", name="interrupted")
    run.set_status("running")
    with pytest.raises(_PageLeft), stage_run(run):
        raise _PageLeft()
    fresh = load_run(run.id)
    assert fresh.manifest.status == "stopped"
    assert fresh.manifest.error == INTERRUPTED
    assert "_PageLeft" not in fresh.manifest.error

    failed = create_run("corpus", name="failed")
    with pytest.raises(ValueError), stage_run(failed):
        raise ValueError("bad value")
    assert load_run(failed.id).manifest.status == "failed"
    assert load_run(failed.id).manifest.error == "ValueError: bad value"


def test_a_failed_or_stopped_run_is_named_in_a_sentence_that_reads_right(data_root):
    """Issue 26: 'Model run X is failed'. Each status reads as a verb: failed, was stopped,
    is still running, has not started."""
    from core.embeddings import ModelSpec, resolve_model_path
    from core.errors import ConfigError, InputError
    from core.finetune.control import resume_finetune
    from core.report.comparison import compare_runs
    from core.runs.folders import status_phrase

    model = create_run("model")
    model.set_status("failed", error="boom")
    with pytest.raises(ConfigError) as caught:
        resolve_model_path(ModelSpec("run", model.id))
    assert str(caught.value).startswith(f"Model run {model.id} failed; it has no finished model.")
    evaluation = create_run("retrieval_eval")
    evaluation.set_status("stopped")
    with pytest.raises(InputError) as caught:
        compare_runs([evaluation.id])
    assert str(caught.value).startswith(
        f"Run {evaluation.id} was stopped; only finished (done) runs can be reported."
    )
    model.set_status("running")
    with pytest.raises(RunError, match=f"Run {model.id} is still running; only a stopped"):
        resume_finetune(model.id)
    assert [status_phrase(s) for s in ("pending", "done")] == ["has not started", "is done"]


def test_a_lineage_names_each_run_by_its_kind_and_name_not_its_id(data_root):
    """Browser tour: 'corpus:corpus-2026… → qa:qa-… → retrieval_eval:retrieval_eval-…'."""
    from core.runs.lineage import lineage_chain

    corpus = create_run("corpus", name="R manuals")
    qa = create_run("qa", name="From the documents", parents={"corpus": corpus.id})
    ev = create_run("retrieval_eval", parents={"qa": qa.id})  # no name: its id stands in
    assert lineage_chain(ev.id) == (
        f"corpus R manuals → question set From the documents → retrieval evaluation {ev.id}"
    )
    assert lineage_chain(ev.id, label=lambda r: r.id) == f"{corpus.id} → {qa.id} → {ev.id}"


def test_a_long_run_name_is_cut_at_a_word_in_its_title(data_root):
    from core.runs.labels import run_title

    run = create_run("qa", name="From the documents " + "and more words " * 5)
    title = run_title(run)
    assert title.startswith("question set From the documents and") and title.endswith(" …")
    assert len(title) <= len("question set ") + 50


def test_a_picker_names_a_run_once_and_says_when_it_is_not_done(data_root):
    """Browser tour: 'corpus-X · corpus · corpus-X' for a nameless run, and no status."""
    from core.runs.labels import run_choice

    named = create_run("retrieval_eval", name="base vs tuned")
    named.set_status("done")
    nameless = create_run("corpus")
    nameless.set_status("failed")
    running = create_run("model", name="minilm")
    running.set_status("running")
    assert run_choice(named) == f"base vs tuned · retrieval evaluation · {named.id}"
    assert run_choice(nameless) == f"{nameless.id} · corpus · failed"
    assert run_choice(running).endswith(" · running")


def test_an_evaluation_is_named_without_a_plural_in_brackets():
    """Browser tour: 'all-MiniLM-L6-v2 vs 1 model(s) on …' and 'vs 0 model(s)'."""
    from core.runs.labels import eval_run_name

    assert eval_run_name("MiniLM", 1, "FAQ pairs") == "MiniLM vs 1 tuned model on FAQ pairs"
    assert eval_run_name("MiniLM", 2, "FAQ pairs") == "MiniLM vs 2 tuned models on FAQ pairs"
    assert eval_run_name("MiniLM", 0, "FAQ pairs") == "MiniLM alone on FAQ pairs"
