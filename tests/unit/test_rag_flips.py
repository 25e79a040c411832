"""RAG eval's retrieval flips name the tuned model it answered with (issue 26, item 5): not the
base's hybrid that a retrieval eval happens to list first."""

from __future__ import annotations

from core.rag.side_by_side import retrieval_flips
from core.runs.folders import create_run


def _comparison(model: str, dim: int, gained: list[str], lost: list[str]) -> dict:
    row = {"question": "q", "gold_ids": [], "base_top": [], "model_top": []}
    return {
        "model": model,
        "dim": dim,
        "k": 5,
        "gained": [{**row, "query_id": q} for q in gained],
        "lost": [{**row, "query_id": q} for q in lost],
    }


def _evaluation() -> tuple[str, str]:
    """A question set and a finished retrieval eval of it whose flips list the base's hybrids
    before the tuned model, as an evaluation with hybrids writes them."""
    qa_id = create_run("qa", name="questions").id
    run = create_run("retrieval_eval", parents={"qa": qa_id})
    run.write_json(
        "result.json",
        {
            "models": [
                {"label": "MiniLM", "kind": "base", "source": "default", "ref": ""},
                {"label": "MiniLM + BM25 (RRF)", "kind": "hybrid", "source": "hybrid"},
                {"label": "my fine-tune", "kind": "tuned", "source": "run", "ref": "model-1"},
                {"label": "my fine-tune + BM25 (RRF)", "kind": "hybrid", "source": "hybrid"},
            ]
        },
    )
    run.write_json(
        "flips.json",
        {
            "k": 5,
            "base": "MiniLM",
            "comparisons": [
                _comparison("MiniLM + BM25 (RRF)", 384, ["q1", "q2"], []),
                _comparison("my fine-tune", 384, ["q3"], ["q4"]),
                _comparison("my fine-tune", 128, [], ["q3"]),
                _comparison("my fine-tune + BM25 (RRF)", 384, ["q1"], []),
            ],
        },
    )
    run.set_status("done")
    return qa_id, run.id


def test_the_flips_are_the_tuned_model_s_at_the_rag_eval_s_dimension():
    qa_id, eval_id = _evaluation()
    flips = retrieval_flips(qa_id, {"source": "run", "ref": "model-1"})
    assert flips is not None and flips.run_id == eval_id
    assert (flips.model, flips.dim) == ("my fine-tune", 384)  # native: the largest dim
    assert flips.by_question == {"q3": "gained", "q4": "lost"}
    at_128 = retrieval_flips(qa_id, {"source": "run", "ref": "model-1"}, dim=128)
    assert (at_128.model, at_128.dim, at_128.by_question) == ("my fine-tune", 128, {"q3": "lost"})


def test_any_tuned_model_but_never_a_hybrid_when_none_is_named():
    qa_id, _ = _evaluation()
    assert retrieval_flips(qa_id).model == "my fine-tune"


def test_no_flips_for_a_model_no_evaluation_compared():
    qa_id, _ = _evaluation()
    assert retrieval_flips(qa_id, {"source": "run", "ref": "model-2"}) is None
    assert retrieval_flips(create_run("qa", name="another set").id) is None
