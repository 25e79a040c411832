"""The headless CLI: exit codes a CI job can rely on, and the whole loop from one config file
giving the same figures the UI shows (the UI reads the very runs the CLI writes)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, data: Path, timeout: int = 1200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAGBENCH_DATA_DIR": str(data), **(env or {})}
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


def test_a_loop_that_reranks_rag_without_a_reranker_is_refused_before_any_stage(tmp_path):
    config = tmp_path / "loop.toml"
    config.write_text(
        (ROOT / "data/sample/loop.toml")
        .read_text()
        .replace("[rag_eval]\nenabled = false", "[rag_eval]\nenabled = true")
        .replace("rerank = false ", "rerank = true ")
    )
    result = run_cli("loop", str(config), data=tmp_path)
    assert result.returncode in (1, 2)
    assert "asks to rerank (rerank = true), but no reranker is trained" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


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
    assert printed["corpus_size"] == 203 and printed["n_queries"] == 20  # the test split

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
    assert len(headlines) == 1 and "ndcg@10, primary metric; one family of 4 tests" in headlines[0]
    assert [v["text"] for v in printed["verdicts"]] == headlines
    assert printed["gold_counts"] == result_ui.gold_counts
    page = open_retrieval_eval_page(tmp_path)
    shown = [m.value for m in [*page.info, *page.success, *page.error]]
    assert [s for s in shown if s in headlines] == headlines
    report = build_report([runs["retrieval_eval"]])
    assert html.escape(headlines[0]) in report.html
    # What to ship: the same recommendation in the CLI's JSON, on the page and in the report.
    advice = result_ui.recommendation().text
    assert printed["recommendation"]["text"] == advice and html.escape(advice) in report.html
    # The page shows the caution (BM25 or a hybrid above every cell) apart, as a warning.
    assert result_ui.recommendation().advice in shown
    caution = result_ui.recommendation().caution
    assert not caution or caution in [w.value for w in page.warning]
    deltas = {(d["model"], d["dim"]): d["verdict"] for d in printed["primary_deltas"]}
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


def write_catalogue_pairs(folder: Path) -> tuple[Path, int]:
    """A QA file a team might bring (question, context, answer per line): a made-up parts
    catalogue, not the sample set. Returns the path and the number of rows."""
    from tests.support.finetune_data import catalogue

    chunks, items = catalogue(n_chunks=40, seed=11)
    text = {c.id: c.text for c in chunks}
    rows = [
        {"question": i.question, "context": text[i.chunk_id], "answer": text[i.chunk_id][:80]}
        for i in items
    ]
    path = folder / "parts_qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, len(rows)


def first_passage(body: dict) -> str:
    """The loopback LLM answers with the first numbered passage of the RAG prompt."""
    match = re.search(r"\[1\] (.+)", body["messages"][-1]["content"])
    return match.group(1)[:200] if match else "The passages do not say."


@pytest.mark.slow
def test_cli_loop_from_an_imported_qa_file_through_rag_eval_matches_the_pages(tmp_path):
    from core.evaluation.results import load_retrieval_eval
    from core.rag.results import load_ragas_eval
    from core.rag.summary import summary_table
    from tests.support.openai_server import ChatServer, Reply

    qa_file, n_rows = write_catalogue_pairs(tmp_path)
    config = tmp_path / "loop.toml"
    config.write_text(
        """
[questions]
source = "import"
file = "parts_qa.jsonl"

[finetune]
[finetune.options]
epochs = 1
batch_size = 16
max_seq_length = 64

[retrieval_eval]
[retrieval_eval.options]
include_bm25 = true
dims = [384, 128]

[rag_eval]
enabled = true
metrics = ["id_based_context_recall", "id_based_context_precision", "non_llm_context_recall"]
[rag_eval.options]
k = 3
limit = 8
""",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    with ChatServer(lambda body: Reply(content=first_passage(body))) as server:
        env = {"RAGBENCH_LLM_BASE_URL": server.base_url, "RAGBENCH_LLM_MODEL": "loopback"}
        result = run_cli("--quiet", "loop", str(config), data=data, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    runs = lines[-1]["runs"]
    assert set(runs) == {"corpus", "qa", "model", "retrieval_eval", "ragas_eval"}
    imported = next(line for line in lines if line["stage"] == "import")
    assert imported["n_items"] == n_rows and imported["new_corpus"] is True
    os.environ["RAGBENCH_DATA_DIR"] = str(data)

    # Retrieval eval: every printed metric and delta equals what the page reads from the run.
    printed = next(line for line in lines if line["stage"] == "eval-retrieval")
    page = load_retrieval_eval(runs["retrieval_eval"])
    shown = {
        (r["model"], r["dim"], r["metric"]): r["value"] for r in page.metrics.to_dict("records")
    }
    for row in printed["metrics"]:
        key = (row["model"], row["dim"], row["metric"])
        key = (key[0], None if key[1] is None else int(key[1]), key[2])
        match = [
            v for (m, d, k), v in shown.items() if (m, None if pd.isna(d) else int(d), k) == key
        ]
        assert match and row["value"] == pytest.approx(match[0], abs=1e-12), key
    assert len(printed["metrics"]) == len(page.metrics)
    assert [v["text"] for v in printed["verdicts"]] == [h.text for h in page.headlines()]
    assert printed["recommendation"]["text"] == page.recommendation().text
    assert len(printed["frontier"]) == len(page.frontier) == 2 * 2 * 5  # models x dims x cells
    assert {d["verdict"] for d in printed["deltas"]} == set(page.deltas["verdict"])

    # RAG eval with judge-free metrics: the printed summary is the page's table.
    rag = next(line for line in lines if line["stage"] == "rag-eval")
    table = summary_table(load_ragas_eval(runs["ragas_eval"], with_samples=False).summary)
    printed_table = summary_table(rag["summary"])
    assert len(table) == 2 * 3  # base and tuned x three metrics
    pd.testing.assert_frame_equal(printed_table, table, check_dtype=False)
    assert (table["n_ok"] == 8).all() and (table["n_failed"] == 0).all()


def test_ingest_again_says_so_reuses_with_reuse_and_indexes_from_the_cache(tmp_path):
    """The same file again: a note, and with --reuse the same run; a new run of the same file
    embeds no chunk (the cache holds them); `cache` shows the size and --clear empties it."""
    doc = tmp_path / "notes.txt"
    doc.write_text("Coolant pumps are flushed every 400 hours. Filters are changed weekly. " * 40)
    data = tmp_path / "data"
    first = run_cli("ingest", str(doc), data=data)
    assert first.returncode == 0, first.stderr
    first_id = json.loads(first.stdout.strip().splitlines()[-1])["corpus_run"]
    again = run_cli("ingest", str(doc), data=data)
    assert again.returncode == 0, again.stderr
    assert f"note: corpus run {first_id} has exactly these files and settings" in again.stderr
    again_id = json.loads(again.stdout.strip().splitlines()[-1])["corpus_run"]
    reused = run_cli("ingest", str(doc), "--reuse", "--no-index", data=data)
    assert json.loads(reused.stdout.strip().splitlines()[-1]) == {
        "stage": "ingest",
        "corpus_run": again_id,  # the newest of the two
        "reused": True,
    }
    size = json.loads(run_cli("cache", data=data).stdout.strip().splitlines()[-1])
    assert size["models"] == 1 and size["bytes"] > 0
    cleared = json.loads(run_cli("cache", "--clear", data=data).stdout.strip().splitlines()[-1])
    assert cleared["cleared"] is True and cleared["files"] == 0
    assert not list((data / "cache" / "embeddings").rglob("*.npz"))


def test_every_command_is_listed_and_a_script_outside_the_repository_runs(tmp_path):
    """The project installs itself: `ragbench --help` lists every command, and a Python script
    in a folder outside the repository imports core from the installed package."""
    bin_dir = Path(sys.executable).parent
    helped = subprocess.run(
        [str(bin_dir / "ragbench"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    for command in (
        "loop",
        "ingest",
        "questions",
        "import",
        "finetune",
        "eval-retrieval",
        "rag-eval",
        "compare",
        "report",
        "delete",
        "runs",
        "cache",
    ):
        assert f"\n    {command}" in helped.stdout or f"  {command} " in helped.stdout, command
    outside = tmp_path / "notebook"
    outside.mkdir()
    (outside / "faq.txt").write_text(
        "The archives are updated twice every day by the mirror network. " * 20, encoding="utf-8"
    )
    script = outside / "try_ragbench.py"
    script.write_text(
        "import json, pathlib\n"
        "import core\n"
        "from core.documents.stage import UploadedFile, build_corpus\n"
        "from core.runs.folders import list_runs\n"
        "data = pathlib.Path('faq.txt').read_bytes()\n"
        "result = build_corpus([UploadedFile(name='faq.txt', data=data)])\n"
        "print(json.dumps({'core': core.__file__, 'chunks': result.n_chunks,\n"
        "                  'runs': [r.kind for r in list_runs()]}))\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAGBENCH_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["chunks"] >= 1 and out["runs"] == ["corpus"]
    assert Path(out["core"]).resolve().parent == ROOT / "core"


def test_usage_errors_leave_no_run_behind(tmp_path):
    data = tmp_path / "data"
    bad = tmp_path / "faq.jsonl"
    bad.write_text('{"not": "a document"}\n', encoding="utf-8")
    result = run_cli("ingest", str(bad), "--no-index", data=data)
    assert result.returncode == 1
    assert "None of the files could be used" in result.stderr and ".." not in result.stderr
    assert not (data / "runs").exists() or not any((data / "runs").iterdir())
    empty = run_cli("import", str(bad), data=data)
    assert empty.returncode == 2 and "pass --question COLUMN and --chunk COLUMN" in empty.stderr
    assert not (data / "runs").exists() or not any((data / "runs").iterdir())


def test_compare_report_and_delete_from_the_command_line(tmp_path):
    """An imported file, a base-only evaluation, then compare, report (HTML and zip) and delete
    (listing first, deleting only with --yes), as the Runs page does."""
    data = tmp_path / "data"
    qa_file, _ = write_catalogue_pairs(tmp_path)
    imported = run_cli("--quiet", "import", str(qa_file), "--seed", "3", data=data)
    assert imported.returncode == 0, imported.stderr[-2000:]
    qa_run = json.loads(imported.stdout.strip().splitlines()[-1])["qa_run"]
    evaluated = run_cli("--quiet", "eval-retrieval", qa_run, "--dims", "128", data=data)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    eval_run = json.loads(evaluated.stdout.strip().splitlines()[-1])["retrieval_eval_run"]

    compared = run_cli("compare", eval_run, data=data)  # run_cli is --quiet: JSON only
    assert compared.returncode == 0, compared.stderr[-2000:]
    rows = json.loads(compared.stdout.strip().splitlines()[-1])["retrieval"]
    assert {r["model"] for r in rows} == {"all-MiniLM-L6-v2", "random ranker"}
    table = run_cli("--format", "table", "compare", eval_run, data=data)
    assert table.stdout.startswith("retrieval (mean [95% CI]):") and "{" not in table.stdout
    assert "random ranker" in table.stdout

    html, archive = tmp_path / "report.html", tmp_path / "report.zip"
    reported = run_cli("report", eval_run, "--html", str(html), "--zip", str(archive), data=data)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert "<html" in html.read_text(encoding="utf-8") and archive.stat().st_size > 0
    assert run_cli("report", eval_run, data=data).returncode == 2  # where to? a usage error

    listed = run_cli("delete", qa_run, data=data)
    plan = json.loads(listed.stdout.strip().splitlines()[-1])
    assert plan["deleted"] is False and plan["would_delete"] == [eval_run, qa_run]
    assert (data / "runs" / qa_run).is_dir()  # nothing deleted without --yes
    deleted = run_cli("--quiet", "delete", qa_run, "--yes", data=data)
    assert json.loads(deleted.stdout.strip().splitlines()[-1])["runs"] == [eval_run, qa_run]
    assert not (data / "runs" / qa_run).exists() and not (data / "runs" / eval_run).exists()


@pytest.mark.slow
def test_loop_without_an_llm_trains_on_the_documents_and_is_scored_on_human_questions(tmp_path):
    """data/sample/loop_documents.toml: heading and cloze pairs from the sample PDF, aligned with
    the hand-written set, a model tuned on them, evaluated on the hand-written test split; the
    page and the CLI say what it trained on and that none of the scored questions was seen."""
    from core.evaluation.results import load_retrieval_eval
    from core.questions.dataset import load_qa

    config = tmp_path / "loop.toml"
    config.write_text(
        (ROOT / "data/sample/loop_documents.toml")
        .read_text()
        .replace("epochs = 2", "epochs = 1")
        .replace("max_seq_length = 256", "max_seq_length = 128")
        .replace("index = true", "index = false")
        .replace("include_bm25 = true", "include_bm25 = true\nfrontier = false")
    )
    data = tmp_path / "data"
    result = run_cli(
        "loop", str(config), data=data, env={"RAGBENCH_LLM_BASE_URL": "http://127.0.0.1:9"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    runs = lines[-1]["runs"]
    assert set(runs) == {"corpus", "evaluation_qa", "qa", "model", "retrieval_eval"}
    pairs = next(line for line in lines if line.get("source") == "documents")
    assert {s["source"] for s in pairs["sources"]} == {"heading", "cloze"}
    assert pairs["config"]["align_with"] == runs["evaluation_qa"]
    printed = next(line for line in lines if line["stage"] == "eval-retrieval")
    assert printed["qa_run"] == runs["evaluation_qa"] and printed["n_queries"] == 20
    (trained,) = printed["training"]
    assert trained["questions it trained on"] == 0
    assert trained["questions on its training chunks"] == 0
    os.environ["RAGBENCH_DATA_DIR"] = str(data)
    assert {i.source for i in load_qa(runs["qa"])} == {"heading", "cloze"}
    assert {i.source for i in load_qa(runs["evaluation_qa"])} == {"human"}
    assert load_retrieval_eval(runs["retrieval_eval"]).training_rows() == printed["training"]
    page = open_retrieval_eval_page(tmp_path)
    tables = [t.value for t in page.dataframe]
    shown = next(t for t in tables if "trained on" in t.columns)
    assert shown["training pairs"].iloc[0] == trained["training pairs"]
    assert any("held-out result" in w.value for w in page.warning)


def test_pairs_from_the_documents_dry_run_and_source_weights_on_the_command_line(tmp_path):
    data = tmp_path / "data"
    doc = tmp_path / "guide.md"
    from tests.support.documents import MARKDOWN

    doc.write_text(MARKDOWN * 1, encoding="utf-8")
    ingest = run_cli("ingest", str(doc), "--no-index", data=data)
    corpus = json.loads(ingest.stdout.strip().splitlines()[-1])["corpus_run"]
    dry = run_cli("questions", corpus, "--from-documents", "--dry-run", data=data)
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout.strip().splitlines()[-1])
    assert out["qa_run"] is None and out["rejected_by_reason"].get("generic_heading") == 1
    assert not [p for p in (data / "runs").iterdir() if p.name.startswith("qa-")]
    bad = run_cli("finetune", "qa-x", "--source-weight", "cloze", data=data)
    assert bad.returncode == 2 and "is not SOURCE=WEIGHT" in bad.stderr
    unknown = run_cli("finetune", "qa-x", "--source-weight", "clozes=1", data=data)
    assert unknown.returncode == 2 and "did you mean 'cloze'" in unknown.stderr
