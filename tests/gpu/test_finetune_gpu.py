"""Fine-tuning on CUDA: bf16/tf32 chosen automatically, GPU memory reported, a real out-of-memory
failure marked failed with its hint. Skipped without CUDA (tests/conftest.py); never faked.

Run on the GPU machine with: .venv/bin/python -m pytest tests/gpu -m gpu -q
(the machine needs `datasets` for sentence-transformers' trainer; see docs/multi_gpu.md).
"""

from __future__ import annotations

import time

import pytest

from core.embeddings import ModelSpec
from core.finetune.artifacts import read_metrics
from core.finetune.config import FinetuneConfig
from core.finetune.trainer import OOM_HINT, run_finetune
from core.runs.folders import create_run, load_run
from core.runs.jobs import job_status, read_progress, start_job, tail_log
from tests.support.finetune_data import make_qa_run

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def model_run(cfg: FinetuneConfig):
    return create_run("model", config=cfg.to_dict(), parents={"qa": cfg.qa_run_id})


def test_finetune_on_cuda_picks_mixed_precision_reports_memory_and_improves():
    import torch

    _, qa = make_qa_run(n_chunks=40, seed=7)
    cfg = FinetuneConfig(qa_run_id=qa.id, epochs=2, batch_size=16, max_seq_length=48, seed=1)
    run = model_run(cfg)

    assert run_finetune(run) == "done", load_run(run.id).manifest.error

    start = next(e for e in read_progress(run.id) if e["event"] == "start")
    assert start["device"] == "cuda"
    assert start["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert start["tf32"] == (torch.cuda.get_device_capability()[0] >= 8)
    status = job_status(run.id)
    logs = [e for e in read_progress(run.id) if e["event"] == "log"]
    assert logs and all(e["gpu_mem_gib"] > 0 for e in logs)
    assert status.steps_per_s and status.steps_per_s > 0
    metrics = read_metrics(run.id)
    for dim in ("384", "256", "128", "64"):
        assert metrics["final"][dim] > metrics["base"][dim], dim


def test_real_cuda_out_of_memory_is_failed_with_the_batch_size_hint():
    """A batch far beyond any GPU: 6,144 pairs of 512-token passages in one step (~3M tokens;
    MiniLM keeps ~13 KB of activations per token and layer: ~250 GB)."""
    _, qa = make_qa_run(n_chunks=9000, filler_words=480)
    cfg = FinetuneConfig(qa_run_id=qa.id, epochs=1, batch_size=6144, max_seq_length=512)
    run = model_run(cfg)
    start_job(run)
    deadline = time.monotonic() + 540
    while time.monotonic() < deadline and not job_status(run.id).finished:
        time.sleep(2)
    status = job_status(run.id)
    assert status.status == "failed", tail_log(run.id)
    assert status.error.startswith("Out of GPU memory"), status.error
    assert status.hint == OOM_HINT
    assert "ended: failed" in tail_log(run.id)
    assert not (run.path / "model").exists()


def test_cached_mnrl_trains_the_same_batch_in_mini_batches():
    """The fix the hint names: cached_mnrl (GradCache) with a small mini-batch trains on CUDA."""
    _, qa = make_qa_run(n_chunks=40, seed=7)
    cfg = FinetuneConfig(
        qa_run_id=qa.id,
        base_model=ModelSpec(),
        loss="cached_mnrl",
        mini_batch_size=4,
        epochs=1,
        batch_size=32,
        max_seq_length=48,
    )
    run = model_run(cfg)
    assert run_finetune(run) == "done", load_run(run.id).manifest.error
    metrics = read_metrics(run.id)
    assert metrics["final"]["384"] > metrics["base"]["384"]
