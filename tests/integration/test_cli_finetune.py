"""`ragbench finetune` prints one readable line per validation and never the trainer's raw log
dictionaries (issue 26: every metric of every dim, each epoch, as a Python dict)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.integration.test_cli import ROOT
from tests.support.finetune_data import make_qa_run, make_tiny_model


def test_finetune_prints_a_line_per_epoch_and_no_log_dictionaries(tmp_path, data_root):
    model = make_tiny_model(tmp_path / "bert")
    _, qa = make_qa_run(n_chunks=24, seed=3)
    result = subprocess.run(
        [sys.executable, "-m", "core", "finetune", qa.id, "--base", f"local:{model}"]
        + ["--epochs", "2", "--batch-size", "8", "--dims", "32", "16"],
        cwd=ROOT,
        env={**os.environ, "RAGBENCH_DATA_DIR": str(data_root)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("[finetune]")]
    assert any(
        line.startswith("[finetune] base model (step 0): validation ndcg@10 32d ") for line in lines
    ), lines
    assert any(line.startswith("[finetune] epoch 1 (step ") for line in lines), lines
    assert any(line.startswith("[finetune] epoch 2 (step ") for line in lines), lines
    assert "{'loss'" not in result.stderr and "'train_runtime'" not in result.stderr
    assert "eval_dim_" not in result.stderr
