"""Jobs that fail or die, and a run store under abuse: CUDA out of memory mid-training (simulated
on CPU), a fine-tune job killed with SIGKILL mid-epoch, two processes writing the same data
directory at once, and broken or hostile run folders and ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.errors import RunError
from core.finetune.artifacts import METRICS_FILE
from core.finetune.config import FinetuneConfig
from core.finetune.trainer import OOM_HINT, run_finetune
from core.runs.folders import create_run, delete_run, list_runs, load_run
from core.runs.jobs import (
    DIED_HINT,
    DIED_MESSAGE,
    PROGRESS_FILE,
    is_process_alive,
    job_status,
    process_start_time,
    read_progress,
    start_job,
)
from tests.support.finetune_data import make_qa_run, make_tiny_model
from tests.support.store_guard import StoreGuard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")


def model_run(qa_id: str, tiny: Path, **overrides):  # noqa: ANN003, ANN201
    from core.embeddings import ModelSpec

    cfg = FinetuneConfig(qa_run_id=qa_id, base_model=ModelSpec("local", str(tiny)), **overrides)
    return create_run("model", config=cfg.to_dict(), parents={"qa": qa_id})


# --------------------------------------------------------------------------- training failures


def test_cuda_out_of_memory_in_a_training_step_fails_the_run_with_the_hint(tiny_model, monkeypatch):
    import torch
    from transformers import Trainer

    _, qa = make_qa_run(n_chunks=20)
    guard = StoreGuard.capture()
    steps = []

    def out_of_memory(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps.append(self.state.global_step)
        raise torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
        )

    monkeypatch.setattr(Trainer, "training_step", out_of_memory)
    run = model_run(qa.id, tiny_model, epochs=1, batch_size=8)

    assert run_finetune(run) == "failed"

    assert steps == [0]  # it failed inside the first training step, after the base evaluation
    status = job_status(run.id)
    assert status.status == "failed"
    assert status.error == (
        "Out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB "
        "(GPU 0; 7.79 GiB total capacity)"
    )
    assert status.hint == OOM_HINT == "lower the batch size or use cached_mnrl"
    assert [e["phase"] for e in status.evals] == ["base"]
    events = read_progress(run.id)
    assert events[-1] == {**events[-1], "event": "end", "status": "failed", "hint": OOM_HINT}
    assert "base" in run.read_json(METRICS_FILE)  # the work done before the failure is kept
    guard.check()


@pytest.mark.slow
def test_a_job_killed_with_sigkill_mid_epoch_is_marked_failed_and_the_store_is_intact(tiny_model):
    _, qa = make_qa_run(n_chunks=20)
    guard = StoreGuard.capture()
    run = model_run(qa.id, tiny_model, epochs=2, batch_size=4, eval_each_epoch=False)
    pid = start_job(
        run, module="tests.support.slow_finetune_job", env={"RAGBENCH_TEST_STEP_DELAY": "0.4"}
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # wait until it is training, a few steps into the first epoch
            logs = [e for e in read_progress(run.id) if e.get("event") == "log"]
            if logs and logs[-1]["step"] >= 2:
                break
            assert is_process_alive(pid), (
                f"the job ended early:\n{run.artifact('job.log').read_text()}"
            )
            assert time.monotonic() < deadline, "the job never reached step 2"
            time.sleep(0.2)
        assert 0 < logs[-1]["epoch"] < 1  # mid-epoch
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while is_process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if is_process_alive(pid):
            os.kill(pid, signal.SIGKILL)

    assert load_run(run.id).manifest.status == "running"  # the job had no chance to say anything
    status = job_status(run.id)  # the status check notices the dead process
    assert (status.status, status.alive) == ("failed", False)
    assert status.error == DIED_MESSAGE and status.hint == DIED_HINT
    assert load_run(run.id).manifest.status == "failed"
    assert read_progress(run.id)[-1]["event"] == "end"
    assert status.step >= 2 and status.losses  # the progress written before the kill is kept
    assert "base" in run.read_json(METRICS_FILE)
    guard.check()


# --------------------------------------------------------------------------- two writers at once

_WRITER = """
import sys
from pathlib import Path
from core.documents.corpus import Chunk, save_chunks
from core.runs.jobs import append_event
from core.llm.client import DiskCache
from core.runs.folders import create_run, load_run
tag, n, shared = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    run = create_run("corpus", name=f"{tag}-{i}", config={"writer": tag, "i": i})
    save_chunks(run, [Chunk(id=f"c_{tag}_{i}", text=f"text from {tag} number {i}", source="x.txt")])
    run.set_status("running")
    run.set_status("done", n_chunks=1)
    other = load_run(shared)
    other.set_status("running", **{f"last_{tag}": i, "pad": "p" * 2000})
    append_event(other.path, {"event": "log", "writer": tag, "i": i, "pad": "x" * 300})
    DiskCache(Path(sys.argv[4])).put("the-same-key", {"writer": tag, "i": i, "pad": "y" * 4000})
print("ok", tag)
"""


def test_two_processes_writing_the_same_data_directory_lose_nothing(baseline, data_root):
    n = 25
    shared = create_run("qa", name="shared", parents={"corpus": baseline.corpus.id})
    cache = data_root / "cache" / "llm"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, tag, str(n), shared.id, str(cache)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for tag in ("A", "B")
    ]
    # Read while they write: a manifest must never be seen half-written.
    bad_reads: list[str] = []
    reads = 0
    while any(w.poll() is None for w in writers):
        try:
            load_run(shared.id)
            for run in list_runs("corpus"):
                json.loads((run.path / "manifest.json").read_text(encoding="utf-8"))
            reads += 1
        except (RunError, ValueError) as exc:
            bad_reads.append(str(exc))
        time.sleep(0.01)
    outputs = [w.communicate() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], outputs
    assert bad_reads == [] and reads > 0

    corpus_runs = [r for r in list_runs("corpus") if r.id != baseline.corpus.id]
    assert len(corpus_runs) == 2 * n, "runs were lost"
    assert sorted(r.manifest.name for r in corpus_runs) == sorted(
        f"{t}-{i}" for t in "AB" for i in range(n)
    )
    from core.documents.corpus import load_chunks

    for run in corpus_runs:
        assert run.manifest.status == "done"
        (chunk,) = load_chunks(run)
        assert (
            chunk.text
            == f"text from {run.manifest.config['writer']} number {run.manifest.config['i']}"
        )
    every_file = [p for p in data_root.rglob("*") if p.is_file()]
    assert not [p for p in every_file if p.name.endswith(".tmp")], "temporary files left behind"
    for manifest in data_root.glob("runs/*/manifest.json"):
        json.loads(manifest.read_text(encoding="utf-8"))  # all valid JSON
    lines = (shared.path / PROGRESS_FILE).read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]  # no line torn or interleaved
    assert sorted((e["writer"], e["i"]) for e in events) == sorted(
        (t, i) for t in "AB" for i in range(n)
    )
    cached = next(cache.rglob("*.json"))
    assert json.loads(cached.read_text(encoding="utf-8"))["writer"] in {"A", "B"}
    assert load_run(shared.id).manifest.status == "running"
    baseline.intact()


# --------------------------------------------------------------------------- broken or hostile runs


def test_a_corrupt_manifest_is_a_clear_error_and_hides_no_other_run(baseline):
    broken = create_run("corpus", name="to be broken")
    (broken.path / "manifest.json").write_text('{"id": "corpus-x", "kind": "cor', encoding="utf-8")
    with pytest.raises(RunError, match=rf"Run {broken.id} has an unreadable manifest\. Found: "):
        load_run(broken.id)
    assert broken.id not in {r.id for r in list_runs()}
    assert {baseline.corpus.id, baseline.qa.id} <= {r.id for r in list_runs()}
    baseline.intact()


def test_a_damaged_chunks_file_is_a_clear_run_error(baseline):
    from core.documents.corpus import load_chunks

    path = baseline.corpus.artifact("chunks.jsonl")
    path.write_text(path.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    with pytest.raises(RunError, match=baseline.corpus.id):
        load_chunks(baseline.corpus.id)


@pytest.mark.parametrize("bad_id", ["../../etc", "/etc/passwd", ".hidden", "", "a\\b", "runs/../x"])
def test_hostile_run_ids_are_refused(baseline, bad_id):
    with pytest.raises(RunError, match="is not a run id"):
        load_run(bad_id)
    baseline.intact()


@pytest.mark.parametrize("name", ["../manifest.json", "../../secret", "/etc/passwd", "a/../../b"])
def test_artifact_names_cannot_leave_the_run_folder(baseline, name):
    with pytest.raises(RunError, match="points outside run"):
        baseline.qa.write_json(name, {"x": 1})
    baseline.intact()


def test_deleting_a_run_others_depend_on_is_refused(baseline):
    with pytest.raises(
        RunError, match=rf"Run {baseline.corpus.id} is a parent of {baseline.qa.id}\."
    ):
        delete_run(baseline.corpus.id)
    baseline.intact()


def test_a_running_run_whose_process_is_gone_is_marked_failed(baseline):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = create_run("model", name="orphan", parents={"qa": baseline.qa.id})
    run.set_status("running", pid=gone.pid, pid_started=time.time() - 5)
    status = job_status(run.id)
    assert (status.status, status.error, status.hint) == ("failed", DIED_MESSAGE, DIED_HINT)
    baseline.intact()


def test_a_recycled_pid_is_not_mistaken_for_the_job(baseline):
    # This very process is alive, but it started at another time than the recorded job.
    run = create_run("model", name="recycled", parents={"qa": baseline.qa.id})
    run.set_status("running", pid=os.getpid(), pid_started=12345.0)
    assert job_status(run.id).status == "failed"
    baseline.intact()


def test_a_second_job_on_a_running_run_is_refused(baseline):
    run = create_run("model", name="busy", parents={"qa": baseline.qa.id})
    run.set_status("running", pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    with pytest.raises(
        RunError, match=rf"Run {run.id} already has a running job \(pid {os.getpid()}\)"
    ):
        start_job(run)
    assert load_run(run.id).manifest.summary["pid"] == os.getpid()
    baseline.intact()


def test_a_stop_request_reaches_a_job_through_the_disk(baseline):
    from core.runs.jobs import request_stop, stop_requested

    run = create_run("model", name="to stop", parents={"qa": baseline.qa.id})
    seen = threading.Event()

    def job() -> (
        None
    ):  # a job loop that honours the STOP file, as core.finetune.trainer's callback does
        for _ in range(200):
            if stop_requested(run.path):
                seen.set()
                return
            time.sleep(0.01)

    worker = threading.Thread(target=job)
    worker.start()
    request_stop(run.id)
    worker.join(timeout=10)
    assert seen.is_set()
    baseline.intact()


def test_the_store_guard_notices_a_changed_a_lost_and_an_unlisted_run(baseline):
    """The check every case relies on can fail: prove it on purpose."""
    import shutil

    baseline.intact()
    path = baseline.qa.artifact("qa.jsonl")
    original = path.read_bytes()
    path.write_bytes(original + b"\n")
    with pytest.raises(AssertionError, match="changed: .*qa.jsonl"):
        baseline.intact()
    path.write_bytes(original)
    baseline.intact()
    moved = baseline.qa.path.with_name(baseline.qa.path.name + "-moved")
    shutil.move(baseline.qa.path, moved)
    with pytest.raises(AssertionError, match="lost: .*manifest.json"):
        baseline.intact()
    shutil.move(moved, baseline.qa.path)
    baseline.qa.set_status("failed", error="tampered")
    with pytest.raises(AssertionError):
        baseline.intact()
