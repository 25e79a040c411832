"""Comparison and report export over real runs: a corpus, a qa run, a (stand-in) model run, a
base-vs-tuned retrieval evaluation with the packaged MiniLM, and a judge-free RAGAS run."""

from __future__ import annotations

import html
import io
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from core.charts.comparison import comparison_figure
from core.config import SAMPLE_DIR
from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.embeddings import ModelSpec
from core.errors import InputError
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.results import load_retrieval_eval
from core.evaluation.stage import evaluate_retrieval
from core.formatting import fmt, fmt_ci
from core.questions.dataset import QAItem, save_qa
from core.rag.answering import RagSample, save_samples
from core.rag.metrics import RagasConfig
from core.rag.stage import evaluate_rag
from core.report.comparison import HEADLINE_METRICS, RANDOM_LABEL, compare_runs
from core.report.export import REPORT_HTML, build_report, report_zip
from core.report.redaction import REDACTED, known_secrets, redact, scrub_text
from core.report.tables import headline_table
from core.runs.folders import create_run, load_run
from core.runs.lineage import lineage_chain

# Secrets planted in configs; none may appear anywhere in a report.
KEY_SECRET = "sk-planted-0123456789abcdefXYZ"
URL_PASSWORD = "hunter2-url-password"
BEARER = "tok-bearer-9876543210"
ENV_SECRET = "env-secret-value-5551234"
UI_SECRET = "typed&into<the>sidebar-777"  # HTML-escaped in the page
SECRETS = (KEY_SECRET, URL_PASSWORD, BEARER, ENV_SECRET, UI_SECRET)
N_PASSAGES = 30


class MemoModel:
    """A model that encodes each distinct list of texts once (base and tuned share encodings)."""

    def __init__(self, model) -> None:
        self.model = model
        self.prompts = getattr(model, "prompts", {}) or {}
        self.memo: dict[tuple, np.ndarray] = {}

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def encode(self, texts, **kwargs):
        key = (tuple(texts), repr(sorted(kwargs.items(), key=lambda kv: kv[0])))
        if key not in self.memo:
            self.memo[key] = np.asarray(self.model.encode(texts, **kwargs), dtype=np.float32)
        return self.memo[key].copy()


class JitteredModel:
    """MiniLM plus fixed noise: a 'tuned' model whose rankings differ a little from the base."""

    prompts: dict[str, str] = {}

    def __init__(self, model, scale: float = 0.04) -> None:
        self.model = model
        self.scale = scale

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def encode(self, texts, **kwargs):
        emb = np.asarray(self.model.encode(texts, **kwargs), dtype=np.float32)
        rng = np.random.default_rng(len(texts))
        return emb + rng.normal(0, self.scale, emb.shape).astype(np.float32)


def rag_sample(item: dict, contexts: list[str], ids: list[str]) -> RagSample:
    return RagSample(
        id=item["id"],
        user_input=item["question"],
        retrieved_contexts=contexts,
        retrieved_ids=ids,
        response="An answer.",
        reference_contexts=[item["evidence"]],
        gold_chunk_id=chunk_id_for(item["evidence"]),
    )


def build_world(encoder) -> dict[str, str]:
    """corpus -> qa -> model -> retrieval_eval (base vs tuned, BM25), a second base-only
    retrieval_eval, and rag(base, tuned) -> ragas_eval, in the current data directory.
    `encoder` is the base embedding model (MiniLM here; anything with encode() elsewhere)."""
    lines = (SAMPLE_DIR / "qa_sample.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(x) for x in lines if x.strip()][:N_PASSAGES]
    corpus = create_run("corpus", name="faq", config={"chunk_size": 800})
    save_chunks(
        corpus, [Chunk(chunk_id_for(i["evidence"]), i["evidence"], "faq.pdf") for i in items]
    )
    corpus.set_status("done", n_chunks=len(items))
    qa = create_run(
        "qa",
        name="faq qa",
        parents={"corpus": corpus.id},
        config={
            "llm": {
                "backend": "openai",
                "base_url": f"https://bob:{URL_PASSWORD}@llm.example/v1",
                "model": "judge-model",
                "api_key": KEY_SECRET,
                "api_key_set": True,
                "max_tokens": 256,
            },
            "headers": {"Authorization": f"Bearer {BEARER}"},
        },
    )
    save_qa(
        qa,
        [
            QAItem(
                id=i["id"],
                question=i["question"],
                chunk_id=chunk_id_for(i["evidence"]),
                split="test",
            )
            for i in items[::2]
        ],
    )
    qa.set_status("done")
    model = create_run(
        "model",
        name="minilm tuned",
        parents={"qa": qa.id},
        config={"base_model": {"source": "default", "ref": ""}, "epochs": 1, "note": ENV_SECRET},
    )
    model.set_status("done")
    tuned = ModelSpec("run", model.id)
    memo = MemoModel(encoder)
    models = {ModelSpec(): memo, tuned: JitteredModel(memo)}
    result = evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa.id,
            models=(ModelSpec(), tuned),
            dims=(384, 128),
            include_bm25=True,
            chroma_check=False,
            similarity_csv=None,
            n_resamples=300,
            n_permutations=1000,
            name="base vs tuned",
        ),
        model_loader=models.__getitem__,
    )
    second = evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa.id,
            dims=(64,),
            chroma_check=False,
            similarity_csv=None,
            n_resamples=300,
            n_permutations=1000,
            name="base at 64",
        ),
        model_loader=models.__getitem__,
    )
    texts = {chunk_id_for(i["evidence"]): i["evidence"] for i in items}
    ids = list(texts)
    rag_ids = {}
    for label, shift in (("base", 0), ("tuned", 1)):
        run = create_run(
            "rag",
            name=f"rag {label}",
            parents={"qa": qa.id, **({"model": model.id} if label == "tuned" else {})},
            config={
                "k": 3,
                "llm": {"identity": f"openai|https://bob:{URL_PASSWORD}@h/v1|m"},
                "note": f"sidebar key was {UI_SECRET}",
            },
        )
        samples = []
        for n, item in enumerate(items[::2]):
            gold = chunk_id_for(item["evidence"])
            # base finds the gold chunk for every other question, tuned for two in three
            hit = (n % 2 == 0) if label == "base" else (n % 3 != 0)
            top = [gold] if hit else []
            top += [c for c in ids[n + shift :] if c != gold][: 3 - len(top)]
            samples.append(rag_sample(item, [texts[c] for c in top], top))
        save_samples(run, samples)
        run.set_status("done")
        rag_ids[label] = run.id
    ragas = evaluate_rag(
        rag_ids,
        judge=None,
        embeddings=None,
        config=RagasConfig(
            metrics=("id_based_context_precision", "id_based_context_recall"), n_resamples=300
        ),
        name="ragas judge-free",
    )
    return {
        "corpus": corpus.id,
        "qa": qa.id,
        "model": model.id,
        "eval": result.run_id,
        "eval2": second.run_id,
        "rag_base": rag_ids["base"],
        "rag_tuned": rag_ids["tuned"],
        "ragas": ragas.id,
    }


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory, minilm):
    """The runs, built once per module in their own data directory, and a report of the
    base-vs-tuned evaluation with its RAGAS run (built with a secret in the environment)."""
    root = tmp_path_factory.mktemp("report_world")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGBENCH_DATA_DIR", str(root))
        mp.setenv("RAGBENCH_LLM_API_KEY", ENV_SECRET)
        ids = build_world(minilm)
        report = build_report([ids["eval"], ids["ragas"]], secrets=[UI_SECRET])
    return root, ids, report


@pytest.fixture
def world(world_dir, data_root):
    """A per-test copy of the runs in this test's data directory."""
    root, ids, _ = world_dir
    shutil.copytree(root, data_root, dirs_exist_ok=True)
    return ids


@pytest.fixture
def report(world_dir):
    return world_dir[2]


def test_compare_runs_lines_up_headline_metrics_with_intervals_and_random_baseline(world):
    comparison = compare_runs([world["eval"], world["eval2"]])
    result = load_retrieval_eval(world["eval"])
    table = comparison.retrieval
    assert set(table["metric"].astype(str)) == set(HEADLINE_METRICS)
    first = table[table["run_id"] == world["eval"]]
    (tuned,) = result.model_labels(("tuned",))
    assert set(first["model"]) == {"all-MiniLM-L6-v2", tuned, "BM25", RANDOM_LABEL}
    want = result.metrics.set_index(["model", "dim", "metric"])
    row = first[(first["model"] == tuned) & (first["dim"] == 128)]
    row = row[row["metric"] == "ndcg@10"].iloc[0]
    assert row["value"] == pytest.approx(want.loc[(tuned, 128, "ndcg@10"), "value"])
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert row["corpus_size"] == N_PASSAGES and row["n_queries"] == 15
    rand = first[(first["model"] == RANDOM_LABEL) & (first["metric"] == "hit_rate@5")].iloc[0]
    assert rand["value"] == pytest.approx(result.random_baseline["hit_rate@5"])
    assert rand["value"] == pytest.approx(5 / N_PASSAGES)

    wide = headline_table(table)
    assert list(wide.columns) == [
        "run",
        "model",
        "kind",
        "dim",
        *HEADLINE_METRICS,
        "corpus",
        "queries",
    ]
    cell = wide[(wide["model"] == tuned) & (wide["dim"] == "128")]["ndcg@10"].iloc[0]
    assert cell == fmt_ci(row["value"], row["ci_low"], row["ci_high"])
    mine = wide[wide["run"] == wide["run"].iloc[0]]
    assert list(mine["model"]).count("BM25") == 1 and mine["model"].iloc[-1] == RANDOM_LABEL
    random_row = mine.iloc[-1]
    assert random_row["dim"] == "—" and random_row["corpus"] == N_PASSAGES
    assert random_row["ndcg@10"] == fmt(result.random_baseline["ndcg@10"])
    # two runs: labels carry the run id's suffix so rows can be told apart
    assert wide["run"].nunique() == 2
    assert all(
        r.rsplit("-", 1)[-1] in label
        for r, label in zip((world["eval"], world["eval2"]), wide["run"].unique(), strict=True)
    )

    fig = comparison_figure(table, "ndcg@10")
    names = [t.name for t in fig.data]
    assert len(names) == 4  # base, tuned, BM25 of the first run; base of the second
    assert any("64d" in list(t.x) for t in fig.data)
    # same corpus and questions: one random-ranker line for both runs, at its expected score
    assert len(fig.layout.shapes) == 1
    assert fig.layout.shapes[0].y0 == pytest.approx(result.random_baseline["ndcg@10"], abs=5e-4)
    assert (
        fig.layout.annotations[0].text == f"random ranker {fmt(result.random_baseline['ndcg@10'])}"
    )


def test_compare_runs_shows_ragas_means_with_failures_and_context(world):
    comparison = compare_runs([world["ragas"]])
    ragas = comparison.ragas.set_index(["retriever", "metric"])
    recall = ragas.loc[("base", "id_based_context_recall")]
    assert recall["mean"] == pytest.approx(8 / 15)  # every other question of 15
    assert ragas.loc[("tuned", "id_based_context_recall"), "mean"] == pytest.approx(10 / 15)
    assert recall["n_failed"] == 0 and recall["n_samples"] == 15
    context = comparison.ragas_context[world["ragas"]]
    assert context["corpus_size"] == N_PASSAGES and context["k"] == 3
    assert context["random"]["id_based_context_recall"] == pytest.approx(3 / N_PASSAGES)


def test_report_html_has_tables_verdicts_flips_lineage_and_inline_plotly(world_dir, report):
    from plotly.offline import get_plotlyjs

    _, ids, _ = world_dir
    page = report.html
    # plotly.js inline (its topojson default URL mentions the CDN, but nothing loads from it)
    assert get_plotlyjs()[:500] in page
    assert 'src="https://cdn.plot.ly' not in page and "<script src=" not in page
    assert page.count("Plotly.newPlot") >= 4  # metric vs dim, deltas, trade-off, RAGAS bars
    assert page.count("Plotly.newPlot") == page.count('id="ragbench-fig-')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGBENCH_DATA_DIR", str(world_dir[0]))
        result = load_retrieval_eval(ids["eval"])
        chain = lineage_chain(ids["eval"])
    # Browser tour: the lineage read 'corpus:corpus-2026… → qa:qa-… → retrieval_eval:…'.
    assert chain == (
        "corpus faq → question set faq qa → tuned model minilm tuned → "
        "retrieval evaluation base vs tuned"
    )
    assert f"<li>{chain}</li>" in page
    for run_id in ids.values():
        if run_id != ids["eval2"]:
            assert run_id in page
    # headline figures as shown: value [ci_low, ci_high], corpus, queries, random ranker
    m = result.metrics.set_index(["model", "dim", "metric"])
    for model in result.model_labels(("base", "tuned")):
        for metric in HEADLINE_METRICS:
            r = m.loc[(model, 384, metric)]
            assert fmt_ci(r["value"], r["ci_low"], r["ci_high"]) in page
    assert f"<b>Corpus:</b> {N_PASSAGES:,} chunks" in page
    assert "<b>Queries:</b> 15 questions (test split)" in page
    assert f"ndcg@10 {fmt(result.random_baseline['ndcg@10'])}" in page
    # deltas with CIs, p-values and verdicts in words
    for _, d in result.deltas[result.deltas["metric"].isin(HEADLINE_METRICS)].iterrows():
        word = "significant" if d["significant"] else "not significant"
        assert f"[{fmt(d['ci_low'], True)}, {fmt(d['ci_high'], True)}]" in page
        assert d["verdict"].startswith(f"{word} (max-T p=") and d["verdict"] in page
    ndcg = result.deltas[result.deltas["metric"] == "ndcg@10"].iloc[0]
    assert f"Δ {fmt(ndcg['delta'], True)} (95% CI {fmt(ndcg['ci_low'], True)} to" in page
    # the flipped questions, with both rankings
    flips = result.flips["comparisons"]
    flipped = [row for comp in flips for side in ("gained", "lost") for row in comp[side]]
    assert flipped, "the jittered model should flip some questions"
    for row in flipped[:5]:
        assert row["question"].replace("'", "&#x27;").replace('"', "&quot;") in page
    assert "★" in page
    # RAGAS part: means with intervals and failure counts, and the deltas
    assert "id_based_context_recall" in page and "Random retriever" in page
    assert "tuned − base" in page


def test_no_secret_is_exported_but_harmless_settings_are(report):
    assert all(s not in report.html and html.escape(s) not in report.html for s in SECRETS)
    assert "sidebar key was " + REDACTED in report.html
    for name, data in report.files.items():
        text = data.decode("utf-8")
        assert all(s not in text for s in SECRETS), name
    with zipfile.ZipFile(io.BytesIO(report_zip(report))) as archive:
        for name in archive.namelist():
            text = archive.read(name).decode("utf-8")
            assert all(s not in text for s in SECRETS), name
    qa_manifest = next(
        json.loads(v) for k, v in report.files.items() if k.startswith("manifests/qa/")
    )
    llm = qa_manifest["config"]["llm"]
    assert llm["api_key"] == REDACTED
    assert llm["api_key_set"] is True and llm["max_tokens"] == 256  # flags and counts stay
    assert llm["model"] == "judge-model"
    assert llm["base_url"] == f"https://{REDACTED}@llm.example/v1"
    assert qa_manifest["config"]["headers"]["Authorization"] == REDACTED


def test_report_zip_holds_the_html_artifacts_and_manifests(world_dir, report):
    root, ids, _ = world_dir
    with zipfile.ZipFile(io.BytesIO(report_zip(report))) as archive:
        names = set(archive.namelist())
        assert archive.read(REPORT_HTML).decode("utf-8") == report.html
        metrics = pd.read_csv(io.BytesIO(archive.read(f"runs/{ids['eval']}/metrics.csv")))
        headline = pd.read_csv(io.BytesIO(archive.read("comparison/retrieval_headline.csv")))
    for name in ("metrics.csv", "deltas.csv", "per_query.jsonl", "flips.json", "result.json"):
        assert f"runs/{ids['eval']}/{name}" in names
    for name in ("scores.csv", "summary.json"):
        assert f"runs/{ids['ragas']}/{name}" in names
    kinds = {"corpus", "qa", "model", "retrieval_eval", "rag", "ragas_eval"}
    assert {n.split("/")[1] for n in names if n.startswith("manifests/")} == kinds
    assert f"manifests/rag/{ids['rag_tuned']}.json" in names
    original = pd.read_csv(root / "runs" / ids["eval"] / "metrics.csv")
    pd.testing.assert_frame_equal(metrics, original)
    assert set(headline["metric"]) == set(HEADLINE_METRICS)


def test_two_retrieval_runs_get_a_side_by_side_section(world):
    report = build_report([world["eval"], world["eval2"]])
    assert "Retrieval runs side by side" in report.html
    assert "ndcg@10 side by side" in report.html
    assert f"runs/{world['eval2']}/metrics.csv" in report.files


def test_only_finished_evaluation_runs_can_be_reported(world):
    with pytest.raises(InputError, match="only evaluation runs"):
        build_report([world["qa"]])
    failed = create_run("retrieval_eval", name="broken", parents={"qa": world["qa"]})
    failed.set_status("failed", error="boom")
    with pytest.raises(InputError, match=r"failed; only finished \(done\) runs can be"):
        compare_runs([failed.id])
    with pytest.raises(InputError, match="No evaluation run"):
        compare_runs([])
    assert load_run(world["eval"]).manifest.status == "done"


def test_redact_hides_secret_named_values_and_secret_looking_strings():
    config = {
        "api_key": "abc123456789",
        "OPENAI_API_KEY": "x" * 20,
        "chroma": {"token": "t0k3n-value", "host": "db.local"},
        "client_secret": ["s1-secret-aaaa", 7],
        "max_tokens": 512,
        "prompt_tokens": 10,
        "api_key_set": True,
        "tokenless": None,
        "url": "http://user:pa55word@host:8000/v1?api_key=qwerty12345&x=1",
        "note": "header Authorization: Bearer abcdef123456 and sk-abcdefghijklmnopqrst",
    }
    out = redact(config)
    assert out["api_key"] == REDACTED and out["OPENAI_API_KEY"] == REDACTED
    assert out["chroma"] == {"token": REDACTED, "host": "db.local"}
    assert out["client_secret"] == [REDACTED, 7]
    assert out["max_tokens"] == 512 and out["prompt_tokens"] == 10 and out["api_key_set"] is True
    assert out["url"] == f"http://{REDACTED}@host:8000/v1?api_key={REDACTED}&x=1"
    assert "abcdef123456" not in out["note"] and "sk-abcdefghijklmnopqrst" not in out["note"]
    assert config["api_key"] == "abc123456789"  # the input is not modified
    prose = "Basic configuration of a Bearer instrument: mask-abcdefghijklmnopqrstuv"
    assert scrub_text(prose) == prose
    assert scrub_text("Authorization: Basic dXNlcjpwYXNzd29yZDE=") == (
        f"Authorization: Basic {REDACTED}"
    )


def test_known_secrets_come_from_the_environment_and_the_caller(monkeypatch):
    monkeypatch.setenv("RAGBENCH_CHROMA_TOKEN", "chroma-token-123")
    monkeypatch.setenv("SOME_PASSWORD", "short")  # too short to scrub verbatim
    monkeypatch.setenv("MAX_TOKEN_BUDGET", "100000000")  # a number, not a secret
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    found = known_secrets(["typed-key-999", ""])
    assert "chroma-token-123" in found and "typed-key-999" in found
    assert not {"short", "", "100000000", "false"} & set(found)


def test_the_report_lists_summaries_in_words_and_warnings_below_their_table(report):
    """Issue 26: raw JSON cut mid-string in the lineage's summary column, and a warning column
    so narrow it wrapped one word a line."""
    import re

    from core.report.html import _summary_text

    cells = re.findall(r"<td>(\{&quot;[^<]*)</td>", report.html)
    assert cells == []  # no JSON object in a table cell
    assert "<th>warning</th>" not in report.html
    text = _summary_text(
        {"n_queries": 15, "ndcg": 0.81234, "models": ["a", "b"], "note": "w " * 50}
    )
    assert text.startswith("questions: 15; ndcg: 0.8123; models: a, b; note: w w")
    assert text.endswith(" …")


def test_the_lineage_names_summary_figures_and_parents_in_words_not_keys(world_dir, report):
    """Issue 26: the lineage showed the manifest's keys (n_queries, qa_run_id, pid, ...)."""
    import re

    from core.report.html import _summary_text

    summary = {
        "pid": 4242,
        "pid_started": 1.5,
        "job_module": "core.finetune.job",
        "n_chunks": 248,
        "qa_run_id": "qa-1",
        "parent_ids": ["a", "b"],
        "ndcg_at_10": {"base": 0.5},
        "dims": [384, 128],
    }
    assert _summary_text(summary) == (
        "chunks: 248; qa run: qa-1; parents: a, b; ndcg@10: base 0.5; dimensions: 384, 128"
    )
    _, ids, _ = world_dir
    lineage = report.html[report.html.index("<h2>Lineage") : report.html.index("<h3>Configs")]
    assert f"question set: {ids['qa']}" in lineage and f"corpus: {ids['corpus']}" in lineage
    assert "questions: 15" in lineage
    # no snake_case key before a colon in the table (ids like 'corpus-2026…' have no colon)
    assert re.findall(r"\b[a-z]+_[a-z_]+: ", lineage) == []


def test_the_summary_column_leaves_out_empty_values_and_lists_short_dicts():
    """Browser tour: 'hint: ; warnings: ; device: cpu; … pair sources: 2 items; … ndcg@10: 7
    items'."""
    from core.report.html import _summary_text

    summary = {
        "hint": "",
        "warnings": [],
        "device": "cpu",
        "error": None,
        "sources": {
            "heading": {"used": 120, "available": 120},
            "cloze": {"used": 212, "available": 212},
        },
        "ndcg_at_10": {"base": 0.81234, "tuned": 0.85},
        "folds": [{"fold": 1}],  # nested beyond reading: left out, not '1 item'
    }
    assert _summary_text(summary) == (
        "device: cpu; pair sources: heading 120 · cloze 212; ndcg@10: base 0.8123, tuned 0.85"
    )


def test_the_lineage_table_names_kinds_as_people_do(report):
    """Browser tour: the lineage table's kind column read 'retrieval_eval', 'qa'."""
    import re

    lineage = report.html[report.html.index("<h2>Lineage") : report.html.index("<h3>Configs")]
    cells = re.findall(r"<tr><td>([^<]*)</td>", lineage)
    assert {"corpus", "question set", "tuned model", "retrieval evaluation"} <= set(cells)
    assert not {"qa", "model", "retrieval_eval", "ragas_eval"} & set(cells)


def test_the_report_folds_the_full_deltas_and_each_flip_and_keeps_every_row(world_dir, report):
    """Issue 26: the report of an evaluation with BM25 and hybrids was ~29,700 px tall, mostly
    the deltas table and the flipped questions' top-5 lists. The primary metric's deltas stay
    open; every delta is in a folded table; each flipped question folds to one line. A report
    is an archive: folded, nothing dropped."""
    import re

    from core.report.flips import MAX_FLIPS

    _, ids, _ = world_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGBENCH_DATA_DIR", str(world_dir[0]))
        result = load_retrieval_eval(ids["eval"])
    page = report.html

    def rows(fragment: str) -> list[tuple[str, str, str]]:
        """(model, metric, 95% CI) of each body row of the tables in `fragment`."""
        found = re.findall(r"<tr>(.*?)</tr>", fragment)
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in found]
        return [(html.unescape(c[0]), c[2], c[7]) for c in cells if c]

    start = page.index("<h3>Tuned vs base: deltas of ndcg@10, the verdict's metric</h3>")
    fold = page.index("<details class='all deltas'>", start)
    (folded,) = re.findall(r"<details class='all deltas'>(.*?)</details>", page, re.S)
    wanted = result.deltas[result.deltas["metric"].isin(HEADLINE_METRICS)]
    every = [
        (m, k, f"[{fmt(lo, True)}, {fmt(hi, True)}]")
        for m, k, lo, hi in zip(
            wanted["model"], wanted["metric"], wanted["ci_low"], wanted["ci_high"], strict=True
        )
    ]
    assert sorted(rows(folded)) == sorted(every)  # every delta row, nothing lost
    assert folded.startswith(f"<summary>All deltas ({len(wanted)} rows: ")
    opened = rows(page[start:fold])  # outside any <details>
    assert opened and sorted(opened) == sorted(r for r in every if r[1] == "ndcg@10")
    assert "<details" not in page[start:fold]

    flips = re.findall(r"<details class='flip'>(.*?)</details>", page, re.S)
    comparisons = result.flips["comparisons"]
    flipped = [r for c in comparisons for side in ("gained", "lost") for r in c[side][:MAX_FLIPS]]
    assert flipped and len(flips) == len(flipped)
    assert all(f.count('<ol class="top">') == 2 for f in flips)  # both lists, folded
    assert page.count('<ol class="top">') == 2 * len(flips)  # and none outside a fold
    for row, flip in zip(flipped[:3], flips, strict=False):
        summary = flip[: flip.index("</summary>")]
        assert html.escape(row["question"]) in summary
        assert f"gold rank {row['base_rank'] or '>100'} → {row['model_rank'] or '>100'}" in (
            html.unescape(summary)
        )
    assert page.count("<details class='comparison' open>") == 1  # tuned vs base, first
    assert page.count("<details class='comparison'") == len(comparisons)
