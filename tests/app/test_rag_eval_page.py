"""The RAG eval page renders with no runs, and shows a saved evaluation side by side."""

from __future__ import annotations

import pytest

from core.llm.client import LLM
from core.rag.metrics import RagasConfig
from core.rag.stage import evaluate_rag
from core.runs.jobs import job_status, tail_log
from tests.app.conftest import page_path
from tests.support.jobs import only_job, wait_for_job
from tests.support.scripted_llm import ScriptedBackend
from tests.unit.test_ragas_eval import GOLD, OTHER, happy, judge_input, rag_runs, sample, schema_of


def frame_with(at, column: str):  # noqa: ANN001, ANN201
    """The first dataframe shown that has `column` (AppTest dataframes carry no key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def open_page(app):  # noqa: ANN001, ANN201
    app.run()
    return app.switch_page(page_path("rag_eval.py")).run()


def test_page_renders_with_no_runs(app):
    at = open_page(app)
    assert not at.exception, at.exception
    assert at.title[0].value == "RAG eval"
    assert any("Generate questions on the **Questions** page" in i.value for i in at.info)
    assert any("No RAGAS evaluation yet" in c.value for c in at.caption)


def test_page_shows_a_saved_evaluation_with_failures_flags_and_low_confidence(app):
    from core.errors import LLMError

    def judge(messages):  # noqa: ANN001, ANN202
        prompt = messages[0]["content"]
        if schema_of(prompt) == "ContextRecallOutput" and judge_input(prompt)["context"].startswith(
            OTHER
        ):
            return LLMError("rate limited", kind="rate_limit")
        return happy(prompt)

    # An embedded-looking judge identity: the page must flag its scores as low-confidence.
    llm = LLM(ScriptedBackend(judge, identity="embedded|test"), use_cache=False, max_retries=0)
    runs = rag_runs(
        base=[sample("s1", contexts=(GOLD, OTHER)), sample("s2", contexts=(OTHER, GOLD))],
        tuned=[sample("s1", contexts=(OTHER, GOLD)), sample("s2", contexts=(GOLD, OTHER))],
    )
    evaluate_rag(
        runs,
        judge=llm,
        embeddings=None,
        config=RagasConfig(
            metrics=("context_precision", "context_recall", "id_based_context_recall")
        ),
    )
    at = open_page(app)
    assert not at.exception, at.exception
    assert any(
        "low-confidence scores; point the app at a stronger model" in w.value for w in at.warning
    )
    assert any("failed and are left out of their means" in e.value for e in at.error)
    assert at.button(key="rag_retry").label == "Retry the 2 failed judgement(s)"
    questions = frame_with(at, "sample_id")
    assert list(questions["sample_id"]) == ["s1", "s2"]
    assert list(questions["tuned_worse"]) == [True, False]
    at.checkbox(key="rag_only_worse").check().run()
    assert list(frame_with(at, "sample_id")["sample_id"]) == ["s1"]
    summary = frame_with(at, "n_failed")
    recall = summary[
        (summary["retriever"] == "base") & (summary["metric"] == "context_recall")
    ].iloc[0]
    assert recall["n_failed"] == 1 and recall["failures"] == "rate_limit: 1"


@pytest.mark.slow
def test_page_generates_and_scores_through_an_openai_compatible_server(app):
    """The Run button: real MiniLM, real Chroma, answers and judgements from a loopback server."""
    from tests.integration.test_ragas_http import ScriptedJudgeServer
    from tests.support.openai_server import ChatServer
    from tests.unit.test_rag import make_runs

    make_runs()
    with ChatServer(ScriptedJudgeServer()) as server:
        app.run()
        app.sidebar.radio(key="llm_backend").set_value("openai").run()
        app.text_input(key="llm_base_url").set_value(server.base_url)
        app.text_input(key="llm_model").set_value("judge-model")
        at = app.switch_page(page_path("rag_eval.py")).run()
        assert not at.exception, at.exception
        at.multiselect(key="rag_metrics").set_value(["faithfulness", "id_based_context_recall"])
        at.button(key="rag_run").click().run(timeout=300)
        assert not at.exception, at.exception
        job = only_job("ragas_eval")  # a background job: the page does not wait
        assert job_status(job).status == "done", tail_log(job)
        at.run()
    assert not at.error, [e.value for e in at.error]
    assert any(f"RAG evaluation **{job.id}**: 0 failed" in s.value for s in at.success)
    questions = frame_with(at, "sample_id")
    assert list(questions["sample_id"]) == ["q1", "q2", "q3"]
    assert questions["base_answer"].str.len().gt(0).all()
    summary = frame_with(at, "n_failed")
    assert set(summary["metric"]) == {"faithfulness", "id_based_context_recall"}
    assert (summary["n_failed"] == 0).all()
    assert any("Every judgement succeeded" in s.value for s in at.success)
    from core.runs.folders import list_runs

    first = list_runs("ragas_eval")[0]
    assert at.selectbox(key="rag_result").value == first.id
    with ChatServer(ScriptedJudgeServer()) as server:  # a second evaluation is what is shown
        at.text_input(key="llm_base_url").set_value(server.base_url)
        at.button(key="rag_run").click().run(timeout=300)
        second = list_runs("ragas_eval")[0]
        assert wait_for_job(second) == "done", tail_log(second)
        at.run()
    assert second.id != first.id
    assert at.selectbox(key="rag_result").value == second.id


def test_without_reference_answers_nothing_uncomputable_is_preselected_nor_a_judge_flagged(app):
    """Issue 26, item 6: semantic similarity was preselected on questions without reference
    answers, and the tiny-judge caveat showed though no metric was judged."""
    from tests.support.faq import faq_corpus, faq_items, faq_qa

    items = faq_items(6)
    faq_qa(faq_corpus("faq", items), "no reference answers", items)
    at = open_page(app)
    assert not at.exception, at.exception
    chosen = at.multiselect(key="rag_metrics").value
    assert chosen and "semantic_similarity" not in chosen
    assert not any("low-confidence scores" in w.value for w in at.warning)
    assert any("no judge is called for the chosen metrics" in c.value for c in at.caption)
    at.multiselect(key="rag_metrics").set_value([*chosen, "semantic_similarity"]).run()
    assert any("every sample would be skipped" in w.value for w in at.warning)


def test_a_reranker_of_this_question_set_can_answer_too(app, monkeypatch):
    """Issue 29: a reranker can sit between retrieval and the answer; the page offers the
    rerankers trained on this question set and sends the choice with the request."""
    from tests.app.test_retrieval_eval_page import _reranker_run
    from tests.support.faq import faq_corpus, faq_items, faq_qa

    items = faq_items(6)
    qa = faq_qa(faq_corpus("faq", items), "faq qa", items)
    reranker = _reranker_run(qa.id, "weak reranker", after=0.16)
    started = []

    def fake_start(request, *_):  # noqa: ANN001, ANN002, ANN202
        from core.runs.folders import create_run

        started.append(request)
        return create_run("ragas_eval", name="x")

    monkeypatch.setattr("core.rag.job.start_rag_eval", fake_start)
    at = open_page(app)
    assert not at.exception, at.exception
    picker = at.selectbox(key=f"rag_reranker_{qa.id}")
    assert picker.options == ["no reranker", "weak reranker · done"]
    picker.set_value(reranker.id).run()
    assert any("worse than the miner itself" in w.value for w in at.warning)
    at.button(key="rag_run").click().run()
    assert not at.exception, at.exception
    (request,) = started
    assert request.reranker == f"run:{reranker.id}"
    assert request.labels[-1] == "base + reranker"
