"""The Retrieval eval page renders with no runs and with a finished evaluation run."""

from __future__ import annotations

import html
import json
import time

import numpy as np
import pytest
from streamlit.testing.v1.element_tree import AlertBase

from core.embeddings import ModelSpec
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.stage import evaluate_retrieval
from core.runs.folders import create_run, list_runs
from core.runs.jobs import job_status, tail_log
from tests.app.conftest import page_path
from tests.support.faq import faq_corpus, faq_items, faq_qa

PAGE = page_path("retrieval_eval.py")


class JitteredModel:
    """The same model with tiny fixed noise: a 'tuned' model that is not really different."""

    prompts: dict[str, str] = {}

    def __init__(self, model) -> None:
        self.model = model

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def encode(self, texts, **kwargs):
        emb = np.asarray(self.model.encode(texts, **kwargs), dtype=np.float32)
        noise = np.random.default_rng(len(texts)).normal(0, 0.003, emb.shape).astype(np.float32)
        return emb + noise


@pytest.fixture
def qa_run():
    """A corpus of 30 FAQ passages and a qa run with 15 test questions."""
    items = faq_items(30)
    return faq_qa(faq_corpus("faq", items), "faq qa", items[::2])


@pytest.fixture
def finished_eval(minilm, qa_run):
    qa = qa_run
    twin = ModelSpec("local", "minilm-twin")
    models = {ModelSpec(): minilm, twin: JitteredModel(minilm)}
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(ModelSpec(), twin),
        dims=(384, 128),
        include_bm25=True,
        chroma_check=False,
        n_resamples=300,
        n_permutations=1000,
    )
    return evaluate_retrieval(config, model_loader=models.__getitem__)


def test_page_renders_without_runs(app):
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Retrieval eval"
    assert any("Questions" in i.value for i in app.info)


def test_page_shows_a_finished_run_and_says_not_significant(app, finished_eval):
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="reval_pick").value == finished_eval.run_id
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Corpus (chunks)"] == "30"
    assert metrics["Queries"] == "15"
    assert metrics["Random ranker ndcg@10"] == f"{finished_eval.random_baseline['ndcg@10']:.3f}"
    charts = app.get("plotly_chart")
    assert len(charts) >= 3  # metric vs dim, delta bars, trade-off
    text = " ".join(m.value for m in app.markdown)
    assert "not significant (max-T p=" in text
    assert "significant (max-T p=" not in text.replace("not significant (max-T p=", "")
    # fewer than 30 queries: the page warns that the models cannot be told apart
    assert any("Only 15 questions" in w.value for w in app.warning)
    # ... and says in numbers why: the headline verdict with the detectable delta (core.evaluation.verdict)
    (headline,) = finished_eval.headlines()
    assert headline.text.startswith("No significant difference between")
    assert "With 15 questions the test detects only differences of" in headline.text
    assert [i.value for i in app.info if i.value == headline.text] == [headline.text]
    assert "Gold chunks: 15 questions, one gold chunk each" in " ".join(
        c.value for c in app.caption
    )
    # What to ship: the same recommendation as the saved run's, and every frontier cell.
    advice = finished_eval.recommendation()
    assert advice.advice in [m.value for m in [*app.info, *app.success]]
    if advice.caution:  # BM25 or a hybrid scored higher than every cell: said apart
        assert advice.caution in [w.value for w in app.warning]
    ship = next(df.value for df in app.dataframe if "frontier" in df.value.columns)
    assert len(ship) == len(finished_eval.frontier)
    table = next(df.value for df in app.dataframe if "detectable Δ (80% power)" in df.value.columns)
    assert (table["family"] == "primary").all() and table["verdict"].str.contains("max-T p=").all()
    app.selectbox(key="reval_metric").set_value("hit_rate@5").run()
    assert not app.exception, app.exception


def test_while_a_new_evaluation_runs_the_shown_result_says_it_is_the_earlier_one(
    app, finished_eval
):
    import os

    from core.runs.jobs import process_start_time

    live = create_run("retrieval_eval", name="a new evaluation")
    me = os.getpid()  # an alive process stands in for the job's
    live.set_status(
        "running", job_module="core.evaluation.job", pid=me, pid_started=process_start_time(me)
    )
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="reval_pick").value == finished_eval.run_id
    notes = [i.value for i in app.info]
    assert (
        f"Evaluation {live.id} is running: the results below are of the earlier run "
        f"{finished_eval.run_id}; the new one shows here when it ends." in notes
    ), notes


def test_run_button_evaluates_the_base_model(app, qa_run, minilm):
    app.run()
    app.switch_page(PAGE).run()
    assert app.selectbox(key="reval_qa").value == qa_run.id
    app.multiselect(key="reval_dims").set_value([384, 64])
    app.checkbox(key="reval_bm25").set_value(False)
    app.number_input(key="reval_boot").set_value(300)
    app.checkbox(key=f"reval_few_{qa_run.id}_test").check().run()  # 15 questions: asked first
    app.button(key="reval_run").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    (run,) = list_runs("retrieval_eval")
    assert run.manifest.status == "running"  # a background job: the page does not wait
    assert any(run.id in m.value for m in app.markdown)
    assert app.button(key=f"reval_stop_{run.id}") is not None
    deadline = time.monotonic() + 300
    while not job_status(run).finished and time.monotonic() < deadline:
        time.sleep(1)
    assert job_status(run).status == "done", tail_log(run)
    app.run()
    picked = app.selectbox(key="reval_pick").value
    assert picked == run.id
    from core.evaluation.results import load_retrieval_eval

    result = load_retrieval_eval(picked)
    assert sorted(result.metrics["dim"].dropna().unique().tolist()) == [64, 384]
    assert result.n_queries == 15


def test_the_cross_fit_section_offers_question_sets_but_not_fold_sets(app, qa_run):
    fold_set = create_run(
        "qa",
        name="faq qa · fold 1 of 5",
        config={"source": "crossfit_fold", "fold": 0},
        parents={"corpus": qa_run.manifest.parents["corpus"]},
    )
    fold_set.set_status("done")
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    picker = app.selectbox(key="reval_cf_qa")
    assert picker.options == [qa_run.id] or qa_run.id in picker.value
    assert fold_set.id not in picker.options
    assert app.number_input(key="reval_cf_folds").value == 5
    assert app.button(key="reval_cf_start").label == "Start cross-fit"


def test_no_two_pickers_on_the_page_share_a_label(app, qa_run):
    """A browser (and a screen reader) finds a control by its label: the cross-fit section's
    question-set picker must not carry the same label as the evaluation's own."""
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    labels = [w.label for w in [*app.selectbox, *app.multiselect, *app.number_input]]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    assert not twice, twice


def test_a_cross_fitted_result_shows_its_fold_spread(app, finished_eval):
    run = list_runs("retrieval_eval")[0]
    info = json.loads(run.artifact("result.json").read_text())
    info["crossfit"] = {
        "run": "crossfit-x",
        "folds": 3,
        "label": "tuned recipe (3-fold cross-fit)",
        "models": ["m1", "m2", "m3"],
        "spread": [
            {"fold": k, "questions": 5, "dim": 384, "base": 0.5, "tuned": 0.5 + d, "delta": d}
            for k, d in ((1, 0.01), (2, -0.02), (3, 0.04))
        ],
    }
    run.artifact("result.json").write_text(json.dumps(info))
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    spread = next(d.value for d in app.dataframe if "fold" in d.value.columns)
    assert spread["fold"].tolist() == [1, 2, 3]
    texts = " ".join(x.value for x in [*app.success, *app.info, *app.error])
    assert "What this judges: the recipe" in texts
    assert "Δ ndcg@10 at 384d runs from -0.020 to +0.040" in texts


def _reranker_run(qa_id: str, name: str, after: float, retriever: float = 0.75):
    """A finished reranker run with a one-score cross-encoder's config (no weights: the page
    only lists it; nothing here loads it)."""
    from core.embeddings import run_model_dir

    run = create_run("reranker", name=name, config={"rerank_top": 50}, parents={"qa": qa_id})
    folder = run_model_dir(run)
    folder.mkdir(parents=True)
    config = {"architectures": ["BertForSequenceClassification"], "num_labels": 1}
    (folder / "config.json").write_text(json.dumps(config))
    run.set_status("done", **{"ndcg@10_retriever": retriever, "ndcg@10_after": after})
    return run


def test_rerankers_of_this_question_set_can_be_evaluated_and_a_weak_one_is_flagged(
    app, qa_run, monkeypatch
):
    other = faq_qa(faq_corpus("other", faq_items(12)), "other qa", faq_items(12))
    weak = _reranker_run(qa_run.id, "weak reranker", after=0.16)
    foreign = _reranker_run(other.id, "another set's reranker", after=0.9)
    started = []
    monkeypatch.setattr(
        "core.evaluation.job.start_retrieval_eval",
        lambda config, *_: started.append(config) or create_run("retrieval_eval", name="x"),
    )
    app.run()
    app.switch_page(PAGE).run()
    app.selectbox(key="reval_qa").set_value(qa_run.id).run()
    assert not app.exception, app.exception
    picker = app.multiselect(key=f"reval_rerankers_{qa_run.id}")
    assert picker.options == ["weak reranker · done"]  # never another question set's
    assert foreign.id not in str(picker.options)
    picker.set_value([weak.id]).run()
    assert any("orders the miner's top 50 worse than the miner" in w.value for w in app.warning)
    # base + BM25 + its two hybrids, reranked: 15 questions x 50 passages each
    assert any(
        "Reranking 4 retrievers × 1 reranker × 15 questions × 50 passages: about" in c.value
        for c in app.caption
    )
    app.number_input(key="reval_rerank_top").set_value(20)
    app.checkbox(key=f"reval_few_{qa_run.id}_test").check().run()
    app.button(key="reval_run").click().run()
    assert not app.exception, app.exception
    (config,) = started
    assert [r.ref for r in config.rerankers] == [weak.id] and config.rerank_top == 20


def _walk(node):
    """Every element under `node`, in the page's order."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_with_two_levers_the_page_says_which_helps_after_the_tuned_verdict(app, minilm, qa_run):
    twin = ModelSpec("local", "minilm-twin")
    models = {ModelSpec(): minilm, twin: JitteredModel(minilm)}
    config = RetrievalEvalConfig(
        qa_run_id=qa_run.id,
        models=(ModelSpec(), twin),
        dims=(384,),
        include_bm25=True,
        hybrid=True,
        chroma_check=False,
        frontier=False,
        n_resamples=200,
        n_permutations=500,
    )
    result = evaluate_retrieval(config, model_loader=models.__getitem__)
    expected = result.levers_text()
    assert expected.startswith("Which lever helps here")
    # a local twin is another model, not a fine-tune of this set
    assert "another embedding model (" in expected and "fusion with BM25 (" in expected
    from core.cli.render import retrieval_text
    from core.report.html import _verdict_html

    text = retrieval_text(result)  # the CLI and the report say it too, in the same place
    assert f"levers: {expected}" in text
    assert text.index("verdict: ") < text.index("lexical: ") < text.index("levers: ")
    report = _verdict_html(result)
    assert html.escape(expected) in report and report.index("BM25 alone") < report.index(
        html.escape(expected)
    )
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    boxes = [b.value for b in _walk(app.main) if isinstance(b, AlertBase)]  # page order
    twin = next(i for i, b in enumerate(boxes) if "between minilm-twin and" in b)
    hybrid = next(i for i, b in enumerate(boxes) if "+ BM25 (RRF) and" in b)
    levers = next(i for i, b in enumerate(boxes) if b.startswith("Which lever helps here"))
    assert boxes[levers] == expected
    assert twin < hybrid < levers  # the tuned verdict first, the levers' answer last


def test_the_results_picker_prefers_a_finished_evaluation_and_labels_a_failed_one(
    app, finished_eval
):
    """The tour: a fresh session preselected the newest evaluation though it had failed, and
    the failed and the finished one had the same label but for the time."""
    failed = create_run("retrieval_eval", name="a later evaluation", config={})
    failed.set_status("failed", error="Model run x has no saved model folder.")
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    picker = app.selectbox(key="reval_pick")
    assert picker.value == finished_eval.run_id
    labels = [picker.format_func(o) for o in picker.options]
    assert any(label.startswith("a later evaluation · failed · ") for label in labels)
    assert not any(" · done · " in label for label in labels)


def test_a_chunks_text_shows_as_text_not_as_markdown():
    """The tour: flipped questions' passages became list items ('11. Escapes …' inside the
    base's top-5 list) and lost their marks."""
    from pages._ui import plain_markdown

    text = "11. Escapes\nMany *OSes* use a_b and [x](y)\n5. Finally # not a heading"
    shown = plain_markdown(text)
    assert shown == (
        "11\\. Escapes Many \\*OSes\\* use a\\_b and \\[x\\](y) 5. Finally \\# not a heading"
    )
    assert "\n" not in shown and plain_markdown("- a dash") == "\\- a dash"
