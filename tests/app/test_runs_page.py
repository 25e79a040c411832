"""The Runs page: renders with no runs, compares evaluation runs side by side, offers the
report downloads, and still inspects and deletes runs."""

from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest

from core.evaluation.results import load_retrieval_eval
from core.formatting import fmt_ci
from core.runs.folders import list_runs, load_run
from core.runs.lineage import lineage_chain
from tests.app.conftest import page_path
from tests.unit.test_report import build_world

PAGE = page_path("runs.py")


class HashedWords:
    """A tiny deterministic bag-of-words embedder (no torch): enough for real evaluation runs."""

    prompts: dict[str, str] = {}
    dim = 384

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs_page_world")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGBENCH_DATA_DIR", str(root))
        ids = build_world(HashedWords())
    return root, ids


@pytest.fixture
def world(world_dir, data_root):
    root, ids = world_dir
    shutil.copytree(root, data_root, dirs_exist_ok=True)
    return ids


def frame_with(app, *columns: str):
    """The first dataframe shown with these columns (AppTest keeps no dataframe keys)."""
    for frame in app.dataframe:
        if set(columns) <= set(frame.value.columns):
            return frame.value
    raise AssertionError(f"no dataframe with columns {columns}")


def test_page_renders_without_runs(app):
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Runs"
    assert any("No runs yet" in i.value for i in app.info)


def test_page_compares_evaluation_runs_and_offers_the_report(app, world):
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    picker = app.multiselect(key="runs_compare")
    assert len(picker.options) == 3  # two retrieval evaluations and the RAGAS run
    assert picker.value == [world["eval"]]  # the newest base-vs-tuned evaluation by default
    # Browser tour: headings read 'Verdict of retrieval_eval-20261203-…', not the run's name.
    headings = [m.value for m in app.markdown]
    assert "**Verdict of retrieval evaluation base vs tuned**" in headings
    assert "**Tuned vs base in retrieval evaluation base vs tuned**" in headings
    assert not any("retrieval_eval" in h for h in headings)
    # the comparison shows the evaluation's verdict, the very lines the Retrieval eval page shows
    shown = [m.value for m in [*app.info, *app.success, *app.error]]
    verdicts = [h.text for h in load_retrieval_eval(world["eval"]).headlines()]
    assert verdicts and all(v in shown for v in verdicts), (verdicts, shown)

    picker.set_value([world["eval"], world["ragas"]]).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    headline = frame_with(app, "run", "ndcg@10", "corpus")
    result = load_retrieval_eval(world["eval"])
    row = result.metrics[(result.metrics["metric"] == "ndcg@10") & (result.metrics["dim"] == 384)]
    row = row[row["kind"] == "base"].iloc[0]
    assert fmt_ci(row["value"], row["ci_low"], row["ci_high"]) in headline["ndcg@10"].tolist()
    assert "random ranker" in headline["model"].tolist()
    captions = " ".join(c.value for c in app.caption)
    assert "corpus 30 chunks · 15 questions (test)" in captions
    assert f"random ranker ndcg@10 {result.random_baseline['ndcg@10']:.3f}" in captions
    ragas = frame_with(app, "retriever", "mean [95% CI]")
    assert set(ragas["retriever"]) == {"base", "tuned"}
    assert {"failed", "failures", "mean [95% CI]"} <= set(ragas.columns)
    deltas = frame_with(app, "verdict", "Holm p")
    assert deltas["verdict"].str.contains(r"significant \(Holm p=").all()
    charts = app.get("plotly_chart")
    assert len(charts) == 2  # retrieval side by side, RAGAS bars
    buttons = app.get("download_button")
    assert len(buttons) == 2

    app.selectbox(key="runs_compare_metric").set_value("mrr@10").run()
    assert not app.exception, app.exception


def test_page_compares_two_retrieval_runs(app, world):
    app.run()
    app.switch_page(PAGE).run()
    app.multiselect(key="runs_compare").set_value([world["eval"], world["eval2"]]).run()
    assert not app.exception, app.exception
    headline = frame_with(app, "run", "ndcg@10", "corpus")
    assert headline["run"].nunique() == 2
    assert (headline["dim"] == "64").any()


def test_inspect_shows_the_full_lineage_and_delete_still_cascades(app, world):
    app.run()
    app.switch_page(PAGE).run()
    # Issue 26: the picker listed bare ids; it names each run, then its kind and id.
    evaluation = load_run(world["eval"])
    assert evaluation.manifest.name
    assert (
        f"{evaluation.manifest.name} · retrieval evaluation · {evaluation.id}"
        in app.selectbox(key="runs_selected").options
    )
    app.selectbox(key="runs_selected").set_value(world["eval"]).run()
    assert not app.exception, app.exception
    text = " ".join(m.value for m in app.markdown)
    # Browser tour: the lineage read 'corpus:corpus-… → qa:qa-… → retrieval_eval:…'
    assert "**Lineage:** corpus faq → question set faq qa → " in text
    assert lineage_chain(world["eval"]) in text and "retrieval_eval" not in text
    ids = " ".join(c.value for c in app.caption)
    assert f"Ids: {world['corpus']} → {world['qa']} → " in ids
    app.selectbox(key="runs_selected").set_value(world["model"]).run()
    app.text_input(key="runs_delete_confirm").set_value(world["model"]).run()
    app.button(key="runs_delete").click().run()
    assert not app.exception, app.exception
    left = {r.id for r in list_runs()}
    # the model run, the evaluation and the tuned rag run depending on it, and the RAGAS run
    assert not left & {world["model"], world["eval"], world["rag_tuned"], world["ragas"]}
    assert {world["qa"], world["eval2"], world["rag_base"]} <= left
    # what went is said after the page reran without them (it used to vanish with the rerun)
    assert [s.value for s in app.success] == ["Deleted 4 run(s) and 0 Chroma collection(s)."]


def test_inspect_names_a_nameless_run_once_and_says_which_runs_are_not_done(app, data_root):
    """Browser tour: 'corpus-X · corpus · corpus-X', and a failed run looked like a done one."""
    from core.runs.folders import create_run

    nameless = create_run("corpus")
    nameless.set_status("done")
    failed = create_run("corpus", name="R manuals")
    failed.set_status("failed", error="boom")
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    options = app.selectbox(key="runs_selected").options
    assert f"{nameless.id} · corpus" in options
    assert f"R manuals · corpus · {failed.id} · failed" in options


def test_the_audit_log_counts_its_events_in_words(app, data_root):
    """Browser tour: 'Audit log (19 latest event(s))'."""
    from core.runs.folders import create_run

    create_run("corpus", name="one")  # one 'created' event in the audit log
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    labels = [e.label for e in app.expander]
    assert "Audit log (1 latest event)" in labels, labels
