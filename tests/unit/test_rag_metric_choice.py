"""RAG eval never preselects a metric it cannot compute, never calls an all-skipped metric a
success, and records no judge when none was needed (issue 26, item 6)."""

from __future__ import annotations

from core.llm.client import LLM
from core.rag.metrics import (
    RagasConfig,
    default_metrics,
    judge_for,
    needs_reference_text,
)
from core.rag.results import load_ragas_eval
from core.rag.stage import evaluate_rag
from core.rag.summary import scoring_status, summary_table
from tests.support.scripted_llm import ScriptedBackend
from tests.unit.test_ragas_eval import FakeEncoder, happy, rag_runs, sample

JUDGE_FREE = ("id_based_context_recall", "semantic_similarity")


def test_no_metric_needing_reference_answers_is_preselected_without_them():
    for embedded in (True, False):
        chosen = default_metrics(embedded, has_references=False)
        assert "semantic_similarity" not in chosen and "factual_correctness" not in chosen
        assert "semantic_similarity" in default_metrics(embedded, has_references=True)
    assert "id_based_context_recall" in default_metrics(True, has_references=False)
    assert needs_reference_text(list(JUDGE_FREE), n_references=0).startswith(
        "Semantic similarity compares each answer with a reference answer, and none of these "
        "questions has one: every sample would be skipped."
    )
    assert needs_reference_text(list(JUDGE_FREE), n_references=3) == ""


def _judge_free_without_references():
    from core.rag.judges import SentenceTransformerEmbeddings

    judge = LLM(ScriptedBackend(happy, identity="embedded|test"), use_cache=False, max_retries=0)
    run = evaluate_rag(
        rag_runs(base=[sample("s1", reference=None), sample("s2", reference=None)]),
        judge=judge,  # the page always passes its LLM; no chosen metric needs it
        embeddings=SentenceTransformerEmbeddings(FakeEncoder(), label="fake"),
        config=RagasConfig(metrics=JUDGE_FREE),
    )
    return load_ragas_eval(run.id)


def test_an_all_skipped_metric_is_a_warning_not_every_judgement_succeeded():
    result = _judge_free_without_references()
    table = summary_table(result.summary)
    level, text = scoring_status(table, result.scores, judged=False)
    assert level == "warning"
    assert text.startswith(
        "No score for semantic_similarity (no reference answer): every sample was skipped"
    )
    assert "succeeded" not in text


def test_no_judge_is_recorded_or_flagged_when_no_metric_is_judged():
    result = _judge_free_without_references()
    assert result.summary["judge"] is None
    assert result.summary["low_confidence_judge"] is False
    assert judge_for(RagasConfig(metrics=JUDGE_FREE), object()) is None


def test_success_says_whether_a_judge_was_called():
    result = _judge_free_without_references()
    table = summary_table(result.summary)
    table = table[table["metric"] != "semantic_similarity"]
    assert scoring_status(table, result.scores, judged=False) == (
        "success",
        "Every score was computed; no judge was called (judge-free metrics only).",
    )
    assert scoring_status(table, result.scores, judged=True) == (
        "success",
        "Every judgement succeeded.",
    )
