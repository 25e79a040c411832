"""The generation stage with a scripted LLM: structured output, repairs, per-chunk failures,
the qa run's artifacts, the cache, the estimate, and review edits saved as a new run."""

from __future__ import annotations

import json

import pytest

from core.documents.corpus import Chunk, chunk_id_for, load_chunks, save_chunks
from core.errors import InputError, LLMError
from core.llm.client import LLM
from core.questions.dataset import QAItem, load_qa
from core.questions.gate import REASONS, GateConfig
from core.questions.generation import (
    GenerationConfig,
    cap_per_chunk,
    estimate_generation,
    generate_question_run,
    question_messages,
    select_chunks,
)
from core.questions.prompts import GeneratedQuestions, coerce_questions
from core.questions.qa_runs import GATE_REPORT_FILE, USAGE_FILE
from core.questions.review import apply_review, review_rows, save_review
from core.questions.splits import check_no_leak
from core.runs.folders import create_run, load_run
from tests.support.scripted_llm import ScriptedBackend

NO_DUPS = GateConfig(check_near_duplicates=False)


def make_corpus(texts: list[str]) -> tuple[str, list[Chunk]]:
    run = create_run("corpus", name="test corpus")
    chunks = [
        Chunk(id=chunk_id_for(t), text=t, source="doc.txt", doc_id="d1", chunk_index=i)
        for i, t in enumerate(texts)
    ]
    save_chunks(run, chunks)
    run.set_status("done")
    return run.id, chunks


def topic_text(topic: str) -> str:
    return (
        f"TOPIC-{topic}. The {topic} subsystem keeps its settings in a plain file. Administrators "
        f"edit that file and restart the {topic} service to apply any change."
    )


def reply_for(messages, replies: dict[str, str | Exception]) -> str | Exception:
    """The scripted reply for the chunk named in the last passage of the messages."""
    turn = next(m["content"] for m in reversed(messages) if "TOPIC-" in m["content"])
    topic = turn.split("TOPIC-")[1].split(".")[0]
    return replies[topic]


def good(topic: str, n: int = 2) -> str:
    qs = [
        {
            "question": f"Where does the {topic} subsystem keep its settings file?",
            "answer": "A plain file.",
        },
        {
            "question": f"What must administrators restart after editing {topic} settings?",
            "answer": f"The {topic} service.",
        },
        {"question": f"Why would someone edit the configuration of {topic} at all?"},
    ]
    return json.dumps({"questions": qs[:n]})


def scripted_llm(
    tmp_path, replies: dict[str, str | Exception], **kw
) -> tuple[LLM, ScriptedBackend]:
    backend = ScriptedBackend(lambda messages: reply_for(messages, replies))
    llm = LLM(backend, cache_dir=tmp_path / "llm-cache", retry_base_delay_s=0, **kw)
    return llm, backend


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "questions"),
    [
        (
            ["Why is the sky blue today?", "What makes grass green?"],
            ["Why is the sky blue today?", "What makes grass green?"],
        ),
        ([{"question": "How do tides work here?"}], ["How do tides work here?"]),
        ({"items": [{"q": "What is a tide pool?", "a": "A pool."}]}, ["What is a tide pool?"]),
        ({"question": "What is one single question?"}, ["What is one single question?"]),
        ({"questions": "A lone string question here?"}, ["A lone string question here?"]),
        ({"Questions": [{"Query": "How is case handled here?"}]}, ["How is case handled here?"]),
    ],
)
def test_near_miss_shapes_are_coerced(value, questions):
    parsed = GeneratedQuestions.model_validate(coerce_questions(value))
    assert [q.question for q in parsed.questions] == questions


def test_wrong_schema_stays_wrong():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GeneratedQuestions.model_validate(coerce_questions({"foo": 1, "bar": "x"}))


def test_prompt_asks_for_the_json_object_with_a_few_shot_example():
    chunk = Chunk(id="c1", text="Some passage text.", source="s")
    messages = question_messages(chunk, GenerationConfig(n_per_chunk=3))
    assert messages[0]["role"] == "system"
    assert '{"questions": [{"question": "...", "answer": "..."}]}' in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"])["questions"][0]["question"].endswith("?")
    assert "Some passage text." in messages[-1]["content"]
    assert "Write 3 questions" in messages[-1]["content"]


# --------------------------------------------------------------------------- the stage


REPLIES: dict[str, str | Exception] = {
    "alpha": good("alpha"),
    "fenced": "Here you go:\n```json\n" + good("fenced") + "\n```\nHope that helps!",
    "trailing": '{"questions": [{"question": "Where does trailing keep its settings file?",},],}',
    "truncated": '{"questions": [{"question": "Where does truncated keep its settings file?", '
    '"answer": "A plain file."}, {"question": "What must administrators rest',
    "strings": '["Where does strings keep its settings file?", "QUESTION #1\\n"]',
    "garbage": json.dumps(
        {
            "questions": [
                {"question": "QUESTION #1\n"},
                {"question": "...', additional_kwargs={}, response_metadata={})]"},
                {"question": "Here are two questions about garbage:"},
            ]
        }
    ),
    "empty": "",
    "wrongschema": '{"foo": 1, "bar": 2}',
    "noquestions": '{"questions": []}',
    "timeout": LLMError("The server timed out.", kind="timeout"),
}


def test_every_reply_is_repaired_or_recorded_never_crashing(tmp_path):
    corpus_id, chunks = make_corpus([topic_text(t) for t in REPLIES])
    llm, backend = scripted_llm(tmp_path, REPLIES)
    result = generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    by_topic = {}
    texts = {c.id: c.text.split(".")[0].removeprefix("TOPIC-") for c in chunks}
    for item in result.items:
        by_topic.setdefault(texts[item.chunk_id], []).append((item.status, item.reason))

    assert by_topic["alpha"] == [("accepted", ""), ("accepted", "")]
    assert by_topic["fenced"] == [("accepted", ""), ("accepted", "")]
    assert by_topic["trailing"] == [("accepted", "")]
    assert by_topic["truncated"] == [("accepted", "")]  # the half-written second item is dropped
    assert by_topic["strings"] == [("accepted", ""), ("rejected", "template_echo")]
    assert by_topic["garbage"] == [
        ("rejected", "template_echo"),
        ("rejected", "message_repr"),
        ("rejected", "preamble"),
    ]
    failures = {texts[f.chunk_id]: f.kind for f in result.failures}
    assert failures == {
        "empty": "parse",
        "wrongschema": "schema",
        "noquestions": "no_questions",
        "timeout": "timeout",
    }
    assert all(f.message for f in result.failures)
    raw = {texts[f.chunk_id]: f.raw for f in result.failures}
    assert raw["wrongschema"] == '{"foo": 1, "bar": 2}'

    run = load_run(result.run.id)
    assert run.manifest.status == "done"
    assert run.manifest.parents == {"corpus": corpus_id}
    assert run.manifest.summary["n_failed_chunks"] == 4
    saved = load_qa(run, accepted_only=False)
    assert [i.id for i in saved] == [i.id for i in result.items]
    assert all(
        i.status == "accepted" or (i.reason in REASONS and i.meta["reason_text"]) for i in saved
    )
    report = run.read_json(GATE_REPORT_FILE)
    assert report["accepted"] == 7 and report["rejected"] == 4
    assert report["by_reason"] == {"template_echo": 2, "message_repr": 1, "preamble": 1}
    assert report["failures_by_kind"] == {"parse": 1, "schema": 1, "no_questions": 1, "timeout": 1}
    assert report["notes"] == []
    usage = run.read_json(USAGE_FILE)
    assert usage["calls"] == len(backend.calls) - 1  # the timeout call returned nothing
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert usage["failures"] == {"parse": 1, "schema": 1, "timeout": 1}
    check_no_leak(saved)
    assert all(i.split for i in saved if i.status == "accepted")


def test_reference_answers_are_kept_when_asked(tmp_path):
    corpus_id, _ = make_corpus([topic_text("alpha")])
    llm, _ = scripted_llm(tmp_path, {"alpha": good("alpha")})
    with_answers = generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    assert [i.reference_answer for i in with_answers.items] == [
        "A plain file.",
        "The alpha service.",
    ]
    llm2, backend = scripted_llm(tmp_path / "other", {"alpha": good("alpha")})
    without = generate_question_run(
        corpus_id, llm2, GenerationConfig(gate=NO_DUPS, with_answers=False)
    )
    assert [i.reference_answer for i in without.items] == [None, None]
    assert 'Leave out "answer"' in backend.calls[0][-1]["content"]


def test_every_chunk_failing_fails_the_run_with_reasons(tmp_path):
    corpus_id, _ = make_corpus([topic_text("a"), topic_text("b")])
    llm, _ = scripted_llm(tmp_path, {"a": "not json at all", "b": "still not json"})
    with pytest.raises(LLMError, match="No questions came back from any of the 2 chunk") as info:
        generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    assert info.value.kind == "parse"
    from core.runs.folders import list_runs

    run = list_runs("qa")[0]
    assert run.manifest.status == "failed"
    assert "No questions came back" in run.manifest.error
    assert run.read_json(GATE_REPORT_FILE)["failures_by_kind"] == {"parse": 2}


def test_rerun_on_the_same_chunks_makes_no_call(tmp_path):
    corpus_id, _ = make_corpus([topic_text("a"), topic_text("b")])
    llm, backend = scripted_llm(tmp_path, {"a": good("a"), "b": good("b")})
    first = generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    assert len(backend.calls) == 2
    llm_again, backend_again = scripted_llm(tmp_path, {"a": good("a"), "b": good("b")})
    estimate = estimate_generation(
        load_chunks(corpus_id),
        GenerationConfig(gate=NO_DUPS),
        llm_again,
    )
    assert (estimate.calls, estimate.cached_calls) == (0, 2)
    second = generate_question_run(corpus_id, llm_again, GenerationConfig(gate=NO_DUPS))
    assert backend_again.calls == []
    assert second.usage["cached"] == 2 and second.usage["calls"] == 0
    assert [i.question for i in second.items] == [i.question for i in first.items]


def test_a_reply_fixed_by_the_corrective_retry_is_cached_too(tmp_path):
    corpus_id, _ = make_corpus([topic_text("a")])
    replies = iter(["Sorry, I can't write JSON.", good("a")])
    backend = ScriptedBackend(lambda messages: next(replies))
    llm = LLM(backend, cache_dir=tmp_path / "c", retry_base_delay_s=0)
    first = generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    assert len(backend.calls) == 2 and first.gate["accepted"] == 2
    again = ScriptedBackend("never called")
    generate_question_run(
        corpus_id, LLM(again, cache_dir=tmp_path / "c"), GenerationConfig(gate=NO_DUPS)
    )
    assert again.calls == []


def test_estimate_counts_calls_and_tokens_before_starting(tmp_path):
    _, chunks = make_corpus([topic_text("a"), topic_text("b"), topic_text("c")])
    config = GenerationConfig(n_per_chunk=2)
    estimate = estimate_generation(chunks, config)
    assert estimate.calls == 3 and estimate.cached_calls == 0
    chars = sum(len(m["content"]) for m in question_messages(chunks[0], config))
    assert chars / 4 < estimate.prompt_tokens / 3 < chars / 4 + 40
    assert estimate.completion_tokens == 3 * (config.max_tokens // 2)
    assert "3 chunk(s): 3 LLM call(s)" in estimate.describe()
    checked = estimate_generation(
        chunks, GenerationConfig(gate=GateConfig(check_answerability=True))
    )
    assert checked.answerability_calls == 6 and checked.calls == 9
    assert checked.prompt_tokens > estimate.prompt_tokens


def test_progress_is_reported_per_chunk(tmp_path):
    corpus_id, _ = make_corpus([topic_text(t) for t in "abc"])
    llm, _ = scripted_llm(tmp_path, {t: good(t) for t in "abc"})
    events = []
    generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS), on_progress=events.append)
    done = [e for e in events if e.stage == "generating questions"]
    assert done[-1].done == done[-1].total == 3


def test_extra_questions_beyond_n_are_rejected_over_quota(tmp_path):
    corpus_id, _ = make_corpus([topic_text("a")])
    llm, _ = scripted_llm(tmp_path, {"a": good("a", n=3)})
    result = generate_question_run(corpus_id, llm, GenerationConfig(n_per_chunk=1, gate=NO_DUPS))
    assert [(i.status, i.reason) for i in result.items] == [
        ("accepted", ""),
        ("rejected", "over_quota"),
    ]


def test_cap_per_chunk_leaves_manual_items_alone():
    items = [
        QAItem(id=f"q{i}", question=f"Question {i} here?", chunk_id="c1", origin=o)
        for i, o in enumerate(["generated", "generated", "manual"])
    ]
    assert [i.status for i in cap_per_chunk(items, 1)] == ["accepted", "rejected", "accepted"]


def test_max_chunks_takes_a_seeded_sample_in_corpus_order():
    chunks = [Chunk(id=f"c{i}", text=f"text {i}", source="s", chunk_index=i) for i in range(50)]
    picked = select_chunks(chunks, 5, seed=3)
    assert len(picked) == 5 and picked == sorted(picked, key=lambda c: c.chunk_index)
    assert picked == select_chunks(chunks, 5, seed=3) != select_chunks(chunks, 5, seed=4)
    assert select_chunks(chunks, 0) == chunks


def test_bad_generation_config_is_refused():
    with pytest.raises(InputError, match="Questions per chunk must be 1 to 20"):
        GenerationConfig(n_per_chunk=0)


def test_answerability_runs_inside_the_stage(tmp_path):
    corpus_id, _ = make_corpus([topic_text("a")])

    def script(messages):
        if "answered from the given passage" in messages[0]["content"]:
            return '{"answerable": false}' if "Why would" in messages[-1]["content"] else "yes"
        return good("a", n=3)

    llm = LLM(ScriptedBackend(script), cache_dir=tmp_path / "c")
    config = GenerationConfig(
        n_per_chunk=3, gate=GateConfig(check_near_duplicates=False, check_answerability=True)
    )
    result = generate_question_run(corpus_id, llm, config)
    assert [i.reason for i in result.items] == ["", "", "not_answerable"]


# --------------------------------------------------------------------------- review


def test_review_edits_approvals_rejections_and_new_rows(tmp_path):
    corpus_id, chunks = make_corpus([topic_text("a"), topic_text("b")])
    llm, _ = scripted_llm(
        tmp_path,
        {
            "a": good("a"),
            "b": json.dumps(
                {
                    "questions": [
                        {"question": "QUESTION #1"},
                        {"question": "Where does b keep its settings?"},
                    ]
                }
            ),
        },
    )
    source = generate_question_run(corpus_id, llm, GenerationConfig(gate=NO_DUPS))
    rows = review_rows(source.items)
    rows[0]["question"] = "Where exactly does the alpha subsystem store settings?"
    rows[1]["status"] = "rejected"
    rows[2]["status"] = "accepted"  # overrule the gate's template_echo
    rows[2]["question"] = "Which file holds the b settings?"
    del rows[3]
    rows.append(
        {
            "id": None,
            "question": "How is the b service restarted after an edit?",
            "status": "accepted",
            "chunk_id": chunks[1].id,
            "reference_answer": float("nan"),
        }
    )
    rows.append({"id": None, "question": None, "chunk_id": None})  # an empty grid row
    run = save_review(source.run.id, rows)

    assert run.manifest.parents == {"corpus": corpus_id, "source": source.run.id}
    items = load_qa(run, accepted_only=False)
    assert len(items) == 4
    assert items[0].question.startswith("Where exactly") and items[0].meta["edited"] is True
    assert items[0].meta["before_edit"] == source.items[0].question
    assert (items[1].status, items[1].reason) == ("rejected", "reviewer")
    assert (items[2].status, items[2].reason) == ("accepted", "")
    assert items[2].meta["overruled"] == "template_echo"
    assert items[3].origin == "manual" and items[3].reference_answer is None
    original_splits = {i.chunk_id: i.split for i in source.items if i.split}
    assert all(original_splits.get(i.chunk_id, i.split) == i.split for i in items)
    check_no_leak(items)
    assert run.manifest.config["edits"] == {
        "edited": 2,
        "added": 1,
        "status_changed": 2,
        "removed": 1,
    }
    # The reviewed run is untouched.
    assert load_qa(source.run.id, accepted_only=False) == source.items


def test_review_refuses_unknown_chunks_and_blank_questions():
    items = [QAItem(id="q1", question="A fine question here?", chunk_id="c1")]
    rows = [
        {"id": "q1", "question": "", "status": "accepted", "chunk_id": "c1"},
        {
            "id": "",
            "question": "New one about nothing?",
            "status": "accepted",
            "chunk_id": "c_nope",
        },
        {"id": "", "question": "Odd status here?", "status": "maybe", "chunk_id": "c1"},
    ]
    with pytest.raises(InputError) as info:
        apply_review(items, rows, {"c1"})
    message = str(info.value)
    assert "3 review row(s) cannot be saved" in message
    assert "row 1: no question" in message and "'c_nope' is not in the corpus" in message
    assert "status 'maybe'" in message


def test_review_keeps_rejected_items_without_a_chunk_but_refuses_to_approve_them():
    items = [
        QAItem(id="s1", question="A fine question about c1?", chunk_id="c1"),
        QAItem(
            id="s2",
            question="A quote found nowhere?",
            chunk_id="",
            status="rejected",
            reason="evidence_not_found",
        ),
    ]
    rows = review_rows(items)
    assert [i.id for i in apply_review(items, rows, {"c1"})] == ["s1", "s2"]
    rows[1]["status"] = "accepted"
    with pytest.raises(InputError, match="row 2: chunk id '\\(empty\\)' is not in the corpus"):
        apply_review(items, rows, {"c1"})
