"""The Fine-tune page renders from disk: with no runs, with a question set (form and guard-rails),
while a job runs (live view, Stop), and with finished, failed and stopped model runs."""

from __future__ import annotations

import os
import types

from core.finetune.artifacts import METRICS_FILE
from core.finetune.config import FinetuneConfig
from core.finetune.model_card import START, write_model_card
from core.runs.folders import create_run, load_run
from core.runs.jobs import STOP_FILE, append_event, process_start_time
from tests.app.conftest import page_path
from tests.support.finetune_data import make_qa_run

PAGE = page_path("finetune.py")


def open_page(app):
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    return app


def finished_model_run(qa_id: str, status: str = "done", error: str = "", hint: str = ""):
    """A model run as a finished job leaves it on disk: manifest, progress, metrics, model card."""
    cfg = FinetuneConfig(qa_run_id=qa_id, matryoshka_dims=(384, 64))
    run = create_run("model", name="tuned", config=cfg.to_dict(), parents={"qa": qa_id})
    append_event(
        run.path,
        {
            "event": "eval",
            "phase": "base",
            "epoch": 0,
            "step": 0,
            "ndcg@10": {"384": 0.70, "64": 0.55},
        },
    )
    append_event(
        run.path, {"event": "start", "total_steps": 6, "warnings": ["Only 84 training questions."]}
    )
    for step, loss in enumerate([3.0, 2.4, 1.9, 1.5, 1.2, 1.0], start=1):
        append_event(
            run.path,
            {
                "event": "log",
                "step": step,
                "total_steps": 6,
                "epoch": step / 3,
                "loss": loss,
                "steps_per_s": 1.5,
                "eta_s": 0,
            },
        )
    for epoch, values in ((1.0, {"384": 0.85, "64": 0.72}), (2.0, {"384": 0.91, "64": 0.80})):
        append_event(
            run.path,
            {
                "event": "eval",
                "phase": "epoch",
                "epoch": epoch,
                "step": int(epoch * 3),
                "ndcg@10": values,
            },
        )
    append_event(run.path, {"event": "phase", "message": "saving the model"})  # its last phase
    metrics = {
        "metric": "ndcg@10",
        "dims": [384, 64],
        "weights": [1.0, 1.0],
        "query_prompt": None,
        "data": {
            "corpus_size": 40,
            "n_train": 84,
            "n_validation": 18,
            "n_test": 18,
            "split_method": "by chunk",
        },
        "base": {"384": 0.70, "64": 0.55},
        "final": {"384": 0.91, "64": 0.80},
        "epochs": [],
        "steps": 6,
        "stopped_early": status == "stopped",
    }
    run.write_json(METRICS_FILE, metrics)
    (run.path / "model").mkdir()
    (run.path / "model" / "README.md").write_text(
        "---\ntags: [x]\n---\n# Card from sentence-transformers\n"
    )
    (run.path / "model" / "config.json").write_text("{}")
    write_model_card(run, metrics=metrics, warnings=["Only 84 training questions."])
    run.set_status(status, error=error, hint=hint, pid=None)
    return run


def test_renders_with_no_runs(app):
    open_page(app)
    assert app.title[0].value == "Fine-tune"
    assert any("Create a question set" in i.value for i in app.info)
    assert any("No fine-tune runs yet" in c.value for c in app.caption)


def test_form_shows_defaults_and_guard_rails(app):
    _, qa = make_qa_run(n_chunks=40)
    open_page(app)
    assert app.text_input(key="ft_dims_384").value == "384, 256, 128, 64"
    assert app.number_input(key="ft_epochs").value == 3
    assert app.number_input(key="ft_lr").value == 2e-5
    warnings = [w.value for w in app.warning]
    assert any("Only 84 training questions" in w for w in warnings)
    assert not any("Batch size" in w for w in warnings)

    app.number_input(key="ft_batch_size").set_value(8).run()
    app.text_input(key="ft_dims_384").set_value("256, 128").run()
    warnings = [w.value for w in app.warning]
    assert any(
        w.startswith("Batch size 8 gives each question only 7 in-batch negatives") for w in warnings
    )
    assert any(
        "native dimension 384 is not in the Matryoshka dims [256, 128]" in w for w in warnings
    )

    app.text_input(key="ft_dims_384").set_value("384, abc").run()
    assert any("'abc' is not a number" in e.value for e in app.error)


def test_start_launches_a_job_and_the_live_view_can_stop_it(app, monkeypatch):
    _, qa = make_qa_run(n_chunks=40)
    launched = []

    def fake_start_job(run, module="core.finetune.job", args=(), env=None):
        # Stand-in for the subprocess: this test process plays the live job.
        launched.append(run.id)
        run.set_status("running", pid=os.getpid(), pid_started=process_start_time(os.getpid()))
        append_event(
            run.path,
            {
                "event": "log",
                "step": 2,
                "total_steps": 10,
                "epoch": 0.2,
                "loss": 2.0,
                "steps_per_s": 0.5,
                "eta_s": 16,
                "gpu_mem_gib": 3.25,
            },
        )
        return os.getpid()

    monkeypatch.setattr("core.finetune.control.start_job", fake_start_job)
    open_page(app)
    app.button(key="ft_start").click().run()
    assert not app.exception, app.exception
    assert len(launched) == 1
    run = load_run(launched[0])
    assert run.manifest.config["qa_run_id"] == qa.id
    assert run.manifest.config["matryoshka_dims"] == [384, 256, 128, 64]
    assert app.session_state["ft_run_id"] == run.id
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Steps/s"] == "0.50"
    assert metrics["GPU memory"] == "3.2 GiB"

    app.button(key="ft_stop").click().run()
    assert (run.path / STOP_FILE).exists()
    # Issue 26: the page says Stopping (at its next run), with no ETA and no second Stop.
    app.run()
    assert any("**Stopping**" in m.value for m in app.markdown)
    assert not any("**Training**" in m.value for m in app.markdown)
    assert {m.label: m.value for m in app.metric}["ETA"] == "–"
    assert not [b for b in app.button if b.key == "ft_stop"]


def test_a_stop_before_the_first_step_says_no_model_will_be_saved(app, monkeypatch):
    """Seen in a browser tour: stopped while the base model was validated, the page promised a
    saved model; the run ended "Stopped before training started; no model was saved"."""
    make_qa_run(n_chunks=40)
    launched = []

    def fake_start_job(run, module="core.finetune.job", args=(), env=None):
        launched.append(run.id)
        run.set_status("running", pid=os.getpid(), pid_started=process_start_time(os.getpid()))
        append_event(run.path, {"event": "phase", "message": "evaluating the base model"})
        return os.getpid()

    monkeypatch.setattr("core.finetune.control.start_job", fake_start_job)
    open_page(app)
    app.button(key="ft_start").click().run()
    app.button(key="ft_stop").click().run()
    app.run()
    stopping = [m.value for m in app.markdown if "**Stopping**" in m.value]
    assert stopping and "saves no model" in stopping[0], stopping
    assert "saves the model" not in stopping[0]


def test_finished_run_shows_metrics_download_and_card(app):
    _, qa = make_qa_run(n_chunks=40)
    run = finished_model_run(qa.id)
    open_page(app)
    assert app.session_state["ft_run_id"] == run.id
    assert any("Done" in s.value for s in app.success)
    # Issue 26: "step 15/15 · saving the model" showed under "Done.": a finished job names how
    # it ended, not the phase it was last in.
    assert [p.proto.text for p in app.get("progress")] == ["step 6/6 · done"]
    table = app.dataframe[0].value
    assert list(table["dim"]) == [384, 64]
    assert round(float(table["Δ"].iloc[0]), 2) == 0.21
    assert any(w.value == "Only 84 training questions." for w in app.warning)
    assert any("Validation ndcg@10 per dimension" in m.value for m in app.markdown)
    assert START not in "".join(m.value for m in app.markdown)  # the marker is not shown
    # The card's headings sit below the page's own "Model card" heading (issue 26).
    card = next(m.value for m in app.markdown if "Evaluation protocol (ragbench)" in m.value)
    assert "##### Evaluation protocol (ragbench)" in card and "\n## " not in card
    assert app.get("download_button")  # the model zip


def test_failed_run_shows_message_and_hint(app):
    _, qa = make_qa_run(n_chunks=40)
    finished_model_run(
        qa.id,
        status="failed",
        error="Out of GPU memory: CUDA out of memory.",
        hint="lower the batch size or use cached_mnrl",
    )
    open_page(app)
    assert any(
        "Fine-tune failed." in e.value and "CUDA out of memory" in e.value for e in app.error
    )
    assert any(i.value == "Hint: lower the batch size or use cached_mnrl" for i in app.info)


def test_stopped_run_with_a_checkpoint_offers_resume(app, monkeypatch):
    _, qa = make_qa_run(n_chunks=40)
    run = finished_model_run(qa.id, status="stopped", error="Stopped by the user.")
    (run.path / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    resumed = []
    new_run = types.SimpleNamespace(id="model-resumed")
    monkeypatch.setattr(
        "core.finetune.control.resume_job", lambda run_id: resumed.append(run_id) or new_run
    )
    open_page(app)
    assert any("Stopped." in w.value for w in app.warning)
    app.button(key="ft_resume").click().run()
    assert resumed == [run.id]
    assert not app.error, [e.value for e in app.error]


def test_a_set_that_mixes_sources_offers_a_weight_per_source(app):
    from core.questions.dataset import load_qa, save_qa

    _, qa = make_qa_run(n_chunks=40)
    items = load_qa(qa, accepted_only=False)
    # Half the training questions become heading pairs, as a set from the documents mixes them.
    mixed = [
        i.model_copy(update={"origin": "heading"}) if n % 2 and i.split == "train" else i
        for n, i in enumerate(items)
    ]
    save_qa(qa, mixed)
    train = [i for i in mixed if i.split == "train"]
    n_heading = sum(i.source == "heading" for i in train)
    (other,) = {i.source for i in train} - {"heading"}  # the generated ones: llm
    n_other = len(train) - n_heading
    open_page(app)
    assert not [i for i in app.info if "curves flatter" in i.value]  # people's questions are in it
    assert app.number_input(key="ft_weight_heading").value == 1.0
    caption = next(c.value for c in app.caption if "training pairs" in c.value)
    assert f"{other} {n_other} · heading {n_heading} training pairs" in caption
    app.number_input(key="ft_weight_heading").set_value(0.0).run()
    caption = next(c.value for c in app.caption if "training pairs" in c.value)
    assert f"{other} {n_other} · heading left out training pairs" in caption
    app.number_input(key=f"ft_weight_{other}").set_value(0.0).run()
    assert any("Every source weight is 0" in e.value for e in app.error)
    assert "ft_start" not in [b.key for b in app.button]  # nothing to start from


def test_a_set_only_from_the_documents_warns_that_its_validation_flatters(app):
    from core.questions.dataset import load_qa, save_qa

    _, qa = make_qa_run(n_chunks=40)
    items = load_qa(qa, accepted_only=False)
    origins = ("heading", "cloze")
    save_qa(qa, [i.model_copy(update={"origin": origins[n % 2]}) for n, i in enumerate(items)])
    open_page(app)
    assert [i for i in app.info if "the validation curves flatter the model" in i.value]


def test_the_reranker_section_says_the_offline_start_is_weak_and_starts_a_job(app, monkeypatch):
    _, qa = make_qa_run(n_chunks=40)
    launched = []

    def fake_start_job(run, module="core.finetune.job", args=(), env=None):
        # Stand-in for the subprocess: the reranker job module is named, the run is made.
        launched.append((run.id, module))
        return os.getpid()

    monkeypatch.setattr("core.rerank.control.start_job", fake_start_job)
    open_page(app)
    assert any("randomly initialised scoring head" in w.value for w in app.warning)
    app.number_input(key="ft_rr_epochs").set_value(2).run()
    app.button(key="ft_rr_start_job").click().run()
    assert not app.exception, app.exception
    assert [m for _, m in launched] == ["core.rerank.job"]
    run = load_run(launched[0][0])
    assert run.kind == "reranker" and run.manifest.parents == {"qa": qa.id}
    assert (
        run.manifest.config["epochs"] == 2 and run.manifest.config["start"]["source"] == "default"
    )
    app.text_input(key="ft_rr_start").set_value("run:nope").run()
    assert any("nope" in e.value for e in app.error)


def test_the_model_run_picker_shows_the_status_the_run_has_now(app):
    """Issue 26: the picker read '· running ·' while the box below it said 'Done.'. For a pick
    that did not change, Streamlit leaves the browser showing the label it sent last, unless
    the page sends the value (and so its label) again."""
    _, qa = make_qa_run(n_chunks=40)
    run = finished_model_run(qa.id, status="running")
    open_page(app)
    assert " · running · " in app.selectbox(key="ft_run_id").options[0]

    run.set_status("done")  # the job ends
    app.run()
    assert not app.exception
    assert any("Done" in s.value for s in app.success)
    picker = app.selectbox(key="ft_run_id")
    assert picker.value == run.id and picker.options[0].startswith("tuned · done · ")
    # What the browser shows: Streamlit sends the picked label only with set_value.
    assert picker.proto.set_value and picker.proto.raw_value == picker.options[0]
