"""Fine-tuning for real on CPU: it improves held-out retrieval, stops, resumes and fails cleanly."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

import core.finetune.trainer
from core.embeddings import ModelSpec, load_model, truncate_normalize
from core.errors import RunError
from core.finetune.artifacts import CHECKPOINT_DIR, last_checkpoint, read_metrics
from core.finetune.config import FinetuneConfig
from core.finetune.control import resume_finetune
from core.finetune.model_card import END, START, read_model_card
from core.finetune.trainer import OOM_HINT, run_finetune
from core.questions.dataset import load_qa
from core.runs.folders import create_run, load_run
from core.runs.jobs import job_status, read_progress
from tests.support.finetune_data import make_qa_run, make_tiny_model, make_tiny_st_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")


def model_run(cfg: FinetuneConfig):
    return create_run("model", config=cfg.to_dict(), parents={"qa": cfg.qa_run_id})


@pytest.mark.slow
def test_finetune_improves_validation_ndcg_over_the_base_model():
    """The offline MiniLM on a catalogue it handles poorly: held-out validation ndcg@10 rises."""
    _, qa = make_qa_run(n_chunks=40, seed=7)
    cfg = FinetuneConfig(qa_run_id=qa.id, epochs=2, batch_size=16, max_seq_length=48, seed=1)
    run = model_run(cfg)

    assert run_finetune(run) == "done"

    metrics = read_metrics(run.id)
    assert metrics["dims"] == [384, 256, 128, 64]
    assert metrics["data"]["corpus_size"] == 40  # validation ranks against every chunk
    assert metrics["data"]["n_validation"] == 18
    for dim in ("384", "256", "128", "64"):
        assert metrics["final"][dim] > metrics["base"][dim], dim
    assert metrics["final"]["384"] - metrics["base"]["384"] > 0.1
    assert [e["epoch"] for e in metrics["epochs"]] == [1.0, 2.0]

    manifest = load_run(run.id).manifest
    assert manifest.status == "done"
    assert manifest.summary["ndcg@10_final"] == metrics["final"]["384"]
    assert not (run.path / CHECKPOINT_DIR).exists()  # a finished run keeps only the model

    status = job_status(run.id)
    assert status.step == status.total_steps == 12
    assert status.steps_per_s and status.steps_per_s > 0
    assert [e["phase"] for e in status.evals] == ["base", "epoch", "epoch"]
    assert len(status.losses) == 12

    tuned = load_model(ModelSpec("run", run.id), device="cpu")
    emb = truncate_normalize(tuned.encode(["How often does part QX-1234 need an inspection?"]), 64)
    assert emb.shape == (1, 64)
    card = read_model_card(run.id)
    assert START in card and END in card
    assert "| 384 | " in card and "A random ranking of 40 chunks" in card


@pytest.mark.slow
def test_query_prompt_is_used_in_training_and_recorded(tmp_path):
    model_dir = make_tiny_st_model(tmp_path / "prompted", prompts={"query": "query: "})
    _, qa = make_qa_run(n_chunks=20)
    cfg = FinetuneConfig(
        qa_run_id=qa.id, base_model=ModelSpec("local", str(model_dir)), epochs=1, batch_size=16
    )
    run = model_run(cfg)
    assert run_finetune(run) == "done"
    metrics = read_metrics(run.id)
    assert metrics["query_prompt"] == "query: "
    assert metrics["dims"] == [32]  # a 32-dim model: nothing of the ladder fits below it
    card = read_model_card(run.id, front_matter=True)
    # sentence-transformers' card lists the non-default training arguments: our anchor prompt.
    assert "'anchor': 'query: '" in card
    assert any("query prompt 'query: '" in w for w in load_run(run.id).manifest.summary["warnings"])


@pytest.mark.slow
def test_stop_leaves_a_usable_model_and_resume_finishes_from_the_checkpoint(
    tiny_model, monkeypatch
):
    _, qa = make_qa_run(n_chunks=40)
    cfg = FinetuneConfig(
        qa_run_id=qa.id, base_model=ModelSpec("local", str(tiny_model)), epochs=2, batch_size=8
    )
    run = model_run(cfg)
    calls, started = {"n": 0}, {"yes": False}

    def stop_after_three_steps(run_path):
        if not started["yes"]:  # the base model's validation asks before every batch
            return False
        calls["n"] += 1  # call 1 is the check before training; then one per step
        return calls["n"] >= 4

    def watch(event):
        started["yes"] = started["yes"] or event["event"] == "start"

    real_stop_requested = core.finetune.trainer.stop_requested
    monkeypatch.setattr("core.finetune.trainer.stop_requested", stop_after_three_steps)
    assert run_finetune(run, on_event=watch) == "stopped"

    stopped = load_run(run.id)
    assert stopped.manifest.status == "stopped"
    assert stopped.manifest.summary["steps"] == 3
    assert last_checkpoint(stopped).endswith("checkpoint-3")
    model = load_model(ModelSpec("run", run.id), device="cpu")  # usable after a stop
    assert model.encode(["a question"]).shape == (1, 32)
    base_before = read_metrics(run.id)["base"]
    weights = run.path / "model" / "model.safetensors"
    stopped_weights = hashlib.sha256(weights.read_bytes()).hexdigest()

    monkeypatch.setattr("core.finetune.trainer.stop_requested", real_stop_requested)
    resumed = resume_finetune(run.id)
    assert resumed.id != run.id and resumed.manifest.status == "done"
    assert resumed.manifest.parents == {"qa": qa.id, "resumed_from": run.id}

    # The stopped run never changes under its id: same weights, still stopped, no checkpoint.
    after = load_run(run.id)
    assert after.manifest.status == "stopped"
    assert after.manifest.summary["resumed_as"] == resumed.id
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == stopped_weights
    assert last_checkpoint(after) is None
    with pytest.raises(RunError, match=f"resumed as {resumed.id}"):
        resume_finetune(run.id)

    events = read_progress(resumed.id)
    resume_at = next(i for i, e in enumerate(events) if e["event"] == "resume")
    assert events[resume_at]["checkpoint"] == "checkpoint-3"
    steps_after = [e["step"] for e in events[resume_at:] if e["event"] == "log"]
    assert steps_after and min(steps_after) > 3  # continued, not restarted
    metrics = read_metrics(resumed.id)
    assert metrics["steps"] == 2 * 11  # 84 pairs / batch 8 = 11 steps per epoch
    assert metrics["base"] == base_before  # the base model is not re-evaluated on resume


@pytest.mark.slow
def test_a_stop_while_the_base_model_is_validated_ends_the_run_at_the_next_batch(
    tiny_model, monkeypatch
):
    """Issue 26: a Stop while the base model was validated waited for the whole validation
    (147 s on a real corpus) before the run ended. Now it ends at the next encoded batch:
    stopped, no model, training never set up."""
    import functools

    import core.embeddings
    from core.finetune.evaluator import build_evaluator
    from core.runs.jobs import STOP_FILE

    _, qa = make_qa_run(n_chunks=40)
    cfg = FinetuneConfig(
        qa_run_id=qa.id, base_model=ModelSpec("local", str(tiny_model)), epochs=1, batch_size=8
    )
    run = model_run(cfg)
    batches = {"n": 0}

    def count_and_stop_at_the_second_batch(_module, _args):
        batches["n"] += 1
        if batches["n"] == 2:  # the Stop button, pressed mid-validation
            (run.path / STOP_FILE).write_text("stop", encoding="utf-8")

    real_load_model = core.embeddings.load_model

    def load_counting(*args, **kwargs):
        model = real_load_model(*args, **kwargs)
        model.register_forward_pre_hook(count_and_stop_at_the_second_batch)
        return model

    monkeypatch.setattr("core.embeddings.load_model", load_counting)
    # Batches of 4: the 40-chunk corpus alone is 10 batches, so the validation has many.
    monkeypatch.setattr(
        "core.finetune.trainer.build_evaluator", functools.partial(build_evaluator, batch_size=4)
    )

    assert run_finetune(run) == "stopped"

    assert batches["n"] == 2  # the batch after the stop never ran
    manifest = load_run(run.id).manifest
    assert manifest.status == "stopped"
    assert manifest.error == "Stopped before training started; no model was saved."
    events = read_progress(run.id)
    assert not [e for e in events if e["event"] in ("eval", "start", "train_begin")]
    assert (events[-1]["event"], events[-1]["status"]) == ("end", "stopped")
    assert read_metrics(run.id) is None and not (run.path / "model").exists()


def test_a_qa_run_without_training_questions_fails_with_message_and_hint():
    _, qa = make_qa_run(n_chunks=20, drop_splits=("train",))
    run = model_run(FinetuneConfig(qa_run_id=qa.id))

    assert run_finetune(run) == "failed"

    manifest = load_run(run.id).manifest
    assert manifest.status == "failed"
    assert manifest.error == (
        f"QA run {qa.id} has no accepted training questions. "
        "Found: 18 accepted questions, 0 in the train split. "
        "Fix: split the question set into train/validation/test on the Questions page, or add questions."
    )
    assert manifest.summary["hint"].startswith("split the question set")
    last = read_progress(run.id)[-1]
    assert (last["event"], last["status"]) == ("end", "failed")


def test_a_qa_run_without_validation_questions_fails_before_training():
    _, qa = make_qa_run(n_chunks=20, drop_splits=("validation",))
    run = model_run(FinetuneConfig(qa_run_id=qa.id))
    assert run_finetune(run) == "failed"
    status = job_status(run.id)
    assert status.status == "failed"
    assert status.error.startswith(f"QA run {qa.id} has no validation questions")
    assert "validation share" in status.hint


@pytest.mark.slow
def test_cuda_out_of_memory_is_failed_with_the_batch_size_hint(tiny_model, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")

    monkeypatch.setattr("core.embeddings.load_model", out_of_memory)
    _, qa = make_qa_run(n_chunks=20)
    run = model_run(FinetuneConfig(qa_run_id=qa.id, base_model=ModelSpec("local", str(tiny_model))))

    assert run_finetune(run) == "failed"

    status = job_status(run.id)
    assert (
        status.error
        == "Out of GPU memory: CUDA out of memory. Tried to allocate 20.00 GiB (simulated)"
    )
    assert status.hint == OOM_HINT
    events = read_progress(run.id)
    assert events[-1]["event"] == "end" and events[-1]["hint"] == OOM_HINT
    assert json.loads((run.path / "manifest.json").read_text())["summary"]["hint"] == OOM_HINT


def test_model_zip_holds_the_model_folder():
    import io
    import zipfile

    from core.finetune.artifacts import model_zip_bytes

    run = create_run("model")
    (run.path / "model" / "1_Pooling").mkdir(parents=True)
    (run.path / "model" / "config.json").write_text("{}")
    (run.path / "model" / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 8}')
    names = zipfile.ZipFile(io.BytesIO(model_zip_bytes(run.id))).namelist()
    assert sorted(names) == [f"{run.id}/1_Pooling/config.json", f"{run.id}/config.json"]


def test_model_card_section_is_replaced_not_stacked():
    from core.finetune.model_card import extend_card, random_baseline

    card = extend_card("# ST card\n", f"{START}\nold\n{END}\n")
    card = extend_card(card, f"{START}\nnew\n{END}\n")
    assert card.count(START) == 1 and "new" in card and "old" not in card
    assert card.startswith("# ST card")
    baseline = random_baseline(40)
    assert baseline["hit_rate@10"] == pytest.approx(10 / 40)
    assert baseline["ndcg@10"] == pytest.approx(
        sum(1 / math.log2(i + 1) for i in range(1, 11)) / 40
    )


def test_push_to_hub_refuses_offline_before_touching_the_network(monkeypatch):
    from core.errors import ConfigError
    from core.finetune.model_card import push_to_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = create_run("model")
    with pytest.raises(ConfigError) as err:
        push_to_hub(run.id, "me/model", token="hf_x")
    assert str(err.value) == (
        "Pushing to the Hub needs a network, but HF_HUB_OFFLINE=1. "
        "Fix: restart the app with RAGBENCH_ONLINE=1."
    )


@pytest.mark.slow
def test_hard_negative_mining_never_picks_a_validation_or_test_chunk(minilm):
    """On a small catalogue, mined negatives come only from chunks outside validation and test
    (gold or linked), and never from another gold chunk of the pair's own question."""
    from datasets import Dataset

    from core.finetune.data import mine_negatives, prepare_data

    _, qa = make_qa_run(n_chunks=30, seed=3)
    data = prepare_data(qa.id)
    held_out_texts = {data.corpus[c] for c in data.held_out_chunk_ids}
    assert data.held_out_chunk_ids and data.n_test > 0
    test_chunks = {i.chunk_id for i in load_qa(qa.id, split="test")}
    assert test_chunks <= data.held_out_chunk_ids  # test gold chunks are held out, not only val
    cfg = FinetuneConfig(
        qa_run_id=qa.id,
        hard_negatives=True,
        num_negatives=3,
        negatives_range_min=0,
        negatives_range_max=15,
    )
    train = Dataset.from_dict({"anchor": data.anchors, "positive": data.positives})
    mined, _ = mine_negatives(minilm, train, data, cfg, None, None)
    negatives = [c for c in mined.column_names if c.startswith("negative")]
    assert len(negatives) == 3 and len(mined) > 0
    picked = {text for c in negatives for text in mined[c]}
    assert not picked & held_out_texts
