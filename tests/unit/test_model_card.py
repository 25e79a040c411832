"""The model card says what the Fine-tune page says (issue 26, item 7): the caution on pairs
only from the documents' structure, no bare 'None' under warnings, no blank table header; and
the page draws the card's headings below its own."""

from __future__ import annotations

from core.finetune.model_card import protocol_section
from core.questions.sources import STRUCTURE_ONLY
from core.runs.folders import create_run
from core.text import demote_headings

METRICS = {
    "data": {"corpus_size": 248, "n_train": 90, "n_validation": 20, "n_test": 20},
    "base": {"384": 0.61},
    "final": {"384": 0.72},
    "dims": [384],
    "weights": [1],
}


def _card(sources: dict, warnings: list[str]) -> str:
    qa = create_run("qa", name="pairs")
    run = create_run("model", name="tuned", config={"epochs": 1}, parents={"qa": qa.id})
    metrics = {**METRICS, "data": {**METRICS["data"], "sources": sources}}
    return protocol_section(run, metrics, warnings)


def test_a_card_of_document_pairs_carries_the_page_s_caution():
    pairs = {"heading": {"available": 60, "used": 60}, "cloze": {"available": 30, "used": 30}}
    card = _card(pairs, [])
    assert f"- {STRUCTURE_ONLY}" in card
    assert "None." not in card
    assert "| | |" not in card and "| Setting | Value |" in card


def test_human_questions_need_no_caution_and_an_empty_list_says_what_held():
    card = _card({"human": {"available": 90, "used": 90}}, [])
    assert STRUCTURE_ONLY not in card
    assert "No guard-rail fired: the native dimension is among the dims" in card
    weighted_out = _card(
        {"human": {"available": 90, "used": 0}, "heading": {"available": 60, "used": 60}},
        ["Batch size 8 gives each question only 7 in-batch negatives."],
    )
    assert f"- {STRUCTURE_ONLY}" in weighted_out  # the human pairs were left out
    assert "- Batch size 8 gives each question only 7 in-batch negatives." in weighted_out


def test_headings_are_moved_below_the_page_s_own():
    text = "## Evaluation protocol\n\ntext\n\n### Random baseline\n```\n# not a heading\n```"
    assert demote_headings(text, 5) == (
        "##### Evaluation protocol\n\ntext\n\n###### Random baseline\n```\n# not a heading\n```"
    )
    assert demote_headings("no heading", 5) == "no heading"


def test_a_model_stopped_in_the_warm_up_says_it_is_nearly_the_base_model():
    """Issue 26: a model stopped in warm-up was identical to base and nothing said so."""
    from types import SimpleNamespace

    from core.finetune.config import FinetuneConfig
    from core.finetune.trainer import stop_note

    cfg = FinetuneConfig(qa_run_id="qa", warmup_ratio=0.1)
    at = lambda step: stop_note(SimpleNamespace(global_step=step, max_steps=30), cfg)  # noqa: E731
    assert at(0).endswith("the base model unchanged: no training step ran.")
    assert (
        "barely changed from the base model: it stopped at step 2 of 30, inside the warm-up (the first 3 steps"
        in at(2)
    )
    assert at(20).endswith("the one at the stop (step 20 of 30).")


def test_a_warm_up_of_one_step_is_the_first_step_not_the_first_1_steps():
    """Issue 26: 'inside the warm-up (the first 1 steps, ...)'."""
    from types import SimpleNamespace

    from core.finetune.config import FinetuneConfig
    from core.finetune.trainer import stop_note

    cfg = FinetuneConfig(qa_run_id="qa", warmup_ratio=0.1)
    note = stop_note(SimpleNamespace(global_step=1, max_steps=10), cfg)  # warm-up: 1 step
    assert "inside the warm-up (the first step, the learning rate rising from 0)." in note
    assert "1 steps" not in note
