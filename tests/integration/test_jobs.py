"""Background jobs: a real subprocess that writes to its run folder, stops on request, and whose
death is noticed. Also the job module under torchrun (the multi-GPU path) on CPU."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.embeddings import ModelSpec, load_model
from core.errors import RunError
from core.finetune.artifacts import read_metrics
from core.finetune.config import FinetuneConfig
from core.finetune.control import create_finetune_run
from core.runs.folders import create_run, load_run
from core.runs.jobs import (
    DIED_HINT,
    DIED_MESSAGE,
    STOP_FILE,
    append_event,
    is_process_alive,
    job_status,
    process_start_time,
    read_progress,
    request_stop,
    start_job,
    tail_log,
)
from tests.support.finetune_data import make_qa_run, make_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-jobs") / "bert")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_dead_process_is_detected_and_the_run_marked_failed():
    run = create_run("model")
    proc = sleeper()
    run.set_status("running", pid=proc.pid, pid_started=process_start_time(proc.pid))
    assert job_status(run.id).status == "running"
    assert job_status(run.id).alive

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = job_status(run.id)

    assert status.status == "failed"
    assert not status.alive
    assert status.error == DIED_MESSAGE
    assert status.error.lower().startswith("the job process died")
    assert status.hint == DIED_HINT
    assert load_run(run.id).manifest.status == "failed"  # written to disk, not just reported
    assert read_progress(run.id)[-1]["event"] == "end"


def test_a_recycled_pid_is_not_taken_for_the_job():
    me = os.getpid()
    assert is_process_alive(me, process_start_time(me))
    assert not is_process_alive(me, process_start_time(me) - 3600)  # same pid, other process
    assert not is_process_alive(None)


def test_progress_reader_skips_a_half_written_line():
    run = create_run("model")
    append_event(run.path, {"event": "log", "step": 1, "loss": 2.5, "total_steps": 10})
    with (run.path / "progress.jsonl").open("a") as handle:
        handle.write('{"event": "log", "step": 2, "lo')  # a writer caught mid-line
    events = read_progress(run.id)
    assert [e["step"] for e in events] == [1]
    status = job_status(run.id)
    assert (status.step, status.total_steps, status.losses) == (1, 10, [(1, 2.5)])


def test_stop_request_writes_the_stop_file_and_a_live_job_cannot_start_twice():
    run = create_run("model")
    request_stop(run.id)
    assert (run.path / STOP_FILE).exists()
    run.set_status("running", pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    with pytest.raises(RunError, match="already has a running job"):
        start_job(run)


def start_tiny_job(tiny_model: Path, epochs: int) -> tuple:
    _, qa = make_qa_run(n_chunks=60)  # 126 pairs: 16 steps an epoch
    cfg = FinetuneConfig(
        qa_run_id=qa.id, base_model=ModelSpec("local", str(tiny_model)), epochs=epochs, batch_size=8
    )
    run = create_run("model", config=cfg.to_dict(), parents={"qa": qa.id})
    pid = start_job(run)
    return run, pid


def first_log_event(run_id: str):
    return any(e["event"] == "log" for e in read_progress(run_id))


@pytest.mark.slow
def test_background_job_stops_on_request_and_leaves_a_loadable_model(tiny_model):
    run, pid = start_tiny_job(tiny_model, epochs=100)  # far longer than the test waits
    assert load_run(run.id).manifest.summary["pid"] == pid
    wait_for(lambda: first_log_event(run.id), 120, "the first training step")

    request_stop(run.id)
    wait_for(lambda: job_status(run.id).finished, 120, "the job to stop")

    status = job_status(run.id)
    assert status.status == "stopped", tail_log(run.id)
    wait_for(lambda: not is_process_alive(pid), 30, "the process to exit")
    model = load_model(ModelSpec("run", run.id), device="cpu")
    assert model.encode(["How often does part QX-1234 need an inspection?"]).shape == (1, 32)
    metrics = read_metrics(run.id)
    assert metrics["stopped_early"] and 0 < metrics["steps"] < status.total_steps
    assert "ended: stopped" in tail_log(run.id)
    assert not (run.path / STOP_FILE).exists()


@pytest.mark.slow
def test_a_sigkilled_job_is_marked_failed(tiny_model):
    run, pid = start_tiny_job(tiny_model, epochs=100)
    wait_for(lambda: first_log_event(run.id), 120, "the first training step")

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_process_alive(pid), 30, "the killed process to go")

    status = job_status(run.id)
    assert status.status == "failed"
    assert status.error == DIED_MESSAGE
    assert status.step >= 1  # the progress written before the kill is still there


@pytest.mark.slow
def test_job_module_runs_under_torchrun_with_two_cpu_processes(tiny_model):
    """The multi-GPU path (torchrun launching core.finetune.job) as DDP over two CPU processes
    (gloo): both ranks train, only rank 0 writes the run folder."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    _, qa = make_qa_run(n_chunks=20)
    cfg = FinetuneConfig(
        qa_run_id=qa.id,
        base_model=ModelSpec("local", str(tiny_model)),
        epochs=2,
        batch_size=8,
        device="cpu",
    )
    run = create_finetune_run(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "core.finetune.job", run.id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert load_run(run.id).manifest.status == "done"
    assert (run.path / "model" / "config.json").exists()
    events = read_progress(run.id)
    assert [e["event"] for e in events].count("start") == 1  # rank 1 wrote nothing
    # 42 pairs in batches of 8 are 6 steps an epoch on one process; two ranks share them.
    assert 0 < read_metrics(run.id)["steps"] <= 2 * 3
