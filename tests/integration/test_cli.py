"""The headless CLI: exit codes a CI job can rely on, and the whole loop from one config file
giving the same figures the UI shows (the UI reads the very runs the CLI writes)."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, data: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAGBENCH_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "core", "--quiet", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_usage_errors_exit_2(tmp_path):
    assert run_cli("bogus", data=tmp_path).returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[documents\n")
    result = run_cli("loop", str(bad), data=tmp_path)
    assert result.returncode == 2
    assert "Cannot read the loop config" in result.stderr


def test_failed_stage_exits_1_with_message(tmp_path):
    result = run_cli("questions", "corpus-does-not-exist", "--sample", data=tmp_path)
    assert result.returncode == 1
    assert "error: Run corpus-does-not-exist does not exist" in result.stderr


def test_ingest_reports_skipped_files_and_keeps_going(tmp_path):
    good = tmp_path / "notes.txt"
    good.write_text("Coolant pumps are flushed every 400 hours. " * 20)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    result = run_cli("ingest", str(good), str(empty), "--no-index", data=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["files_ok"] == 1 and out["files_skipped"] == 1 and out["chunks"] >= 1
    assert "skipped empty.pdf" in result.stderr


@pytest.mark.slow
def test_loop_from_config_matches_what_the_ui_reads(tmp_path):
    from core.evaluation.results import load_retrieval_eval
    from core.report.export import build_report

    config = tmp_path / "loop.toml"
    config.write_text(
        (ROOT / "data/sample/loop.toml")
        .read_text()
        .replace("epochs = 3", "epochs = 1")
        .replace("max_seq_length = 256", "max_seq_length = 128")
    )
    data = tmp_path / "data"
    result = run_cli("loop", str(config), data=data)
    assert result.returncode == 0, result.stderr[-3000:]
    # stdout carries results only, one JSON object a line (progress and logs go to stderr).
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    runs = lines[-1]["runs"]
    assert set(runs) == {"corpus", "qa", "model", "retrieval_eval"}
    printed = next(line for line in lines if line["stage"] == "eval-retrieval")
    assert printed["corpus_size"] == 203 and printed["n_queries"] == 23

    # The Retrieval eval page shows load_retrieval_eval(run).metrics: the same numbers, every one.
    os.environ["RAGBENCH_DATA_DIR"] = str(data)
    result_ui = load_retrieval_eval(runs["retrieval_eval"])

    def key(model, dim, metric):
        return (model, None if dim is None or pd.isna(dim) else int(dim), metric)

    shown = {
        key(r["model"], r["dim"], r["metric"]): r["value"]
        for r in result_ui.metrics.to_dict("records")
        if r["metric"] in ("ndcg@10", "hit_rate@5")
    }
    printed_figures = {
        key(f["model"], f["dim"], f["metric"]): f["value"] for f in printed["figures"]
    }
    assert set(printed_figures) == set(shown)
    for k, value in printed_figures.items():
        assert value == pytest.approx(shown[k], abs=1e-12), k
    assert len(printed["figures"]) == 2 * 4 * 2 + 2  # 2 models x 4 dims x 2 metrics + BM25
    assert result_ui.corpus_size == 203

    # One verdict everywhere: the CLI's JSON, the Retrieval eval page and the HTML report.
    headlines = [h.text for h in result_ui.headlines()]
    assert (
        len(headlines) == 1 and "ndcg@10, primary metric, Holm-adjusted over 4 dims" in headlines[0]
    )
    assert [v["text"] for v in printed["verdicts"]] == headlines
    assert printed["gold_counts"] == result_ui.gold_counts
    page = open_retrieval_eval_page(tmp_path)
    shown = [m.value for m in [*page.info, *page.success, *page.error]]
    assert [s for s in shown if s in headlines] == headlines
    report = build_report([runs["retrieval_eval"]])
    assert html.escape(headlines[0]) in report.html
    deltas = {(d["model"], d["dim"]): d["verdict"] for d in printed["deltas"]}
    primary = result_ui.deltas[result_ui.deltas["metric"] == "ndcg@10"]
    assert deltas == {(r["model"], int(r["dim"])): r["verdict"] for _, r in primary.iterrows()}
    page_text = " ".join(m.value for m in page.markdown)
    for verdict in deltas.values():
        assert verdict in page_text and html.escape(verdict) in report.html


def open_retrieval_eval_page(tmp_path: Path):
    """The real app on the Retrieval eval page, showing the newest evaluation run."""
    from tests.app.conftest import app_test, page_path

    app = app_test(tmp_path, timeout=300)
    app.run()
    app.switch_page(page_path("retrieval_eval.py")).run()
    assert not app.exception, app.exception
    return app
