"""Fuzzing the LLM-reply parser (core.jsonparse, LLM.complete_json) and the question gate.

Properties:
- extract_json never raises anything but LLMError(kind="parse") with the raw reply attached;
- valid JSON comes back unchanged: bare, fenced with prose around it, or an object inside prose;
- a reply cut off mid-list keeps every element that was complete, in order;
- complete_json on any reply returns a validated model or raises LLMError (parse or schema),
  and counts the failure;
- the gate never crashes on any string; every item comes out accepted, or rejected with a reason
  code it documents and a non-empty explanation; accepted questions obey its word limits and
  no two accepted questions are the same text; answerability-check failures are counted and the
  question is kept.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from core.errors import LLMError
from core.jsonparse import extract_json
from core.llm.client import LLM
from core.questions.dataset import QAItem
from core.questions.gate import (
    QUESTION_WORDS,
    REASONS,
    GateConfig,
    apply_gate,
    check_question,
    gate_counts,
    normalize_question,
    repair_question,
)
from core.questions.prompts import GeneratedQuestions, coerce_questions
from tests.support.fuzzing import scaled
from tests.support.scripted_llm import ScriptedBackend

# --------------------------------------------------------------------------- strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
# Prose an LLM wraps around JSON: no quotes, brackets, braces or backticks.
prose = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs",), exclude_characters='"[]{}`\\'
    ),
    max_size=40,
)
question_texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60
)


def dumps(value: object, indent: int | None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)


@st.composite
def llm_replies(draw: st.DrawFn) -> str:
    """What comes back from an LLM: anything, JSON-ish text, broken JSON, fenced JSON."""
    value = draw(json_values)
    text = dumps(value, draw(st.sampled_from([None, 2])))
    cut = draw(st.integers(0, len(text)))
    return draw(
        st.sampled_from(
            [
                text,
                text[:cut],
                text[:cut] + "," + text[cut:],
                f"```json\n{text}",
                f"Here you go:\n```\n{text[:cut]}\n```\nanything else?",
                text.replace(":", "", 1),
                text + "}" * draw(st.integers(1, 3)),
            ]
        )
        | st.text(max_size=200)
    )


# --------------------------------------------------------------------------- extract_json


@given(llm_replies())
def test_extract_json_returns_a_value_or_raises_a_parse_error(reply):
    try:
        value = extract_json(reply)
    except LLMError as exc:
        assert exc.kind == "parse" and exc.retryable
        assert exc.raw == reply
        assert "empty reply" in str(exc) or "not valid JSON" in str(exc)
    else:
        json.dumps(value)  # a plain JSON value, whatever was repaired


@given(json_values, st.sampled_from([None, 0, 2]), st.sampled_from(["", " ", "\n\n"]))
def test_valid_json_round_trips(value, indent, pad):
    text = dumps(value, indent)
    assume("```" not in text)  # see test_fenced_text_inside_a_json_string_is_kept
    assert extract_json(pad + text + pad) == value


@given(json_values, prose, prose, st.sampled_from(["```json\n", "```\n", "```JSON "]))
def test_fenced_json_with_prose_around_round_trips(value, before, after, fence):
    text = dumps(value, 2)
    assume("```" not in text)
    assert extract_json(f"{before}\n{fence}{text}\n```\n{after}") == value


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), prose, prose)
def test_an_object_inside_prose_round_trips(value, before, after):
    assert extract_json(f"{before} {dumps(value, None)} {after}") == value


_ITEM_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters=","),
    max_size=30,
)


@given(
    st.lists(
        st.fixed_dictionaries({"question": _ITEM_TEXT}, optional={"answer": _ITEM_TEXT}),
        min_size=1,
        max_size=5,
    ),
    st.data(),
)
def test_a_reply_cut_off_mid_list_keeps_every_complete_element(items, data):
    text = dumps(items, None)
    cut = data.draw(st.integers(1, len(text) - 1), label="cut")
    truncated = text[:cut]
    # Elements whose whole text made it into the reply.
    complete = 0
    while complete < len(items) and truncated.startswith(dumps(items[: complete + 1], None)[:-1]):
        complete += 1
    try:
        value = extract_json(truncated)
    except LLMError:
        assert complete == 0, f"lost {complete} complete element(s) of {truncated!r}"
        return
    assert isinstance(value, list)
    assert value[:complete] == items[:complete]
    assert len(value) <= complete + 1
    if len(value) == complete + 1:  # the half-written element, closed: only keys it really had
        assert isinstance(value[-1], dict) and set(value[-1]) <= set(items[complete])


def test_a_list_inside_prose_round_trips():
    assert extract_json('Here: ["What is X?", {"question": "What is Y?"}] ok') == [
        "What is X?",
        {"question": "What is Y?"},
    ]


def test_fenced_text_inside_a_json_string_is_kept():
    assert extract_json(json.dumps({"code": "```1```"})) == {"code": "```1```"}


def test_repairing_a_truncated_reply_leaves_string_contents_alone():
    reply = '[{"question": "Is it a, ]?"}, {"question": "Wh'
    assert extract_json(reply) == [{"question": "Is it a, ]?"}]


# --------------------------------------------------------------------------- complete_json


@scaled(0.5)
@given(llm_replies())
def test_complete_json_validates_or_raises_a_counted_llm_error(reply):
    llm = LLM(ScriptedBackend(reply), use_cache=False, max_retries=0)
    messages = [{"role": "user", "content": "questions please"}]
    try:
        parsed, completion = llm.complete_json(
            messages, GeneratedQuestions, coerce=coerce_questions
        )
    except LLMError as exc:
        assert exc.kind in {"parse", "schema"}
        assert exc.raw == reply
        assert llm.usage.failures == {exc.kind: 1}
        assert len(llm.backend.calls) == 2  # one corrective retry, then give up
    else:
        assert isinstance(parsed, GeneratedQuestions)
        assert all(isinstance(q.question, str) for q in parsed.questions)
        assert completion.text == reply and not llm.usage.failures


@given(json_values)
def test_coerce_questions_never_raises_and_repairs_what_it_documents(value):
    """Never raises; a repaired shape stays as it is; a string, a list of strings and a list of
    {"question": …} objects always validate with their questions in order; anything else
    either validates or fails with pydantic's schema error (nothing else), and then only when
    some item is neither a string nor an object with a question."""
    coerced = coerce_questions(value)
    assert coerce_questions(coerced) == coerced
    strings = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if strings is not None and all(isinstance(v, str) for v in strings):
        parsed = GeneratedQuestions.model_validate(coerced)
        assert [q.question for q in parsed.questions] == strings
        return
    try:
        parsed = GeneratedQuestions.model_validate(coerced)
    except ValidationError:
        items = coerced.get("questions") if isinstance(coerced, dict) else None
        assert not isinstance(items, list) or any(
            not (isinstance(i, dict) and isinstance(i.get("question"), str)) for i in items
        )
    else:
        assert all(isinstance(q.question, str) for q in parsed.questions)


# --------------------------------------------------------------------------- the gate

_LABELLED = st.builds(
    lambda label, q: f"{label}{q}",
    st.sampled_from(["", "1. ", "Q: ", "Question 2: ", "- ", "**", '"', "Here are two questions:\n",
                     "AIMessage(content='", "QUESTION #1\n", "[question] "]),
    question_texts,
)  # fmt: skip
questions = st.one_of(question_texts, _LABELLED, st.sampled_from(
    ["What is the default shell in Debian?", "what is the default shell in debian", "...", "",
     "How can tar show every file while it works on an archive?", "Name the two archive tools."]
))  # fmt: skip
gate_configs = st.builds(
    GateConfig,
    min_words=st.integers(1, 6),
    max_words=st.integers(6, 80),
    copy_ratio=st.floats(0.5, 1.0),
    copy_min_words=st.integers(3, 12),
    near_duplicate_threshold=st.floats(0.5, 1.0),
)


@given(questions, st.text(max_size=300), gate_configs)
def test_check_question_accepts_or_gives_a_documented_reason(text, chunk, config):
    verdict = check_question(text, chunk, config)
    if verdict.accepted:
        assert verdict.reason == "" and verdict.question.strip()
        n_words = len(verdict.question.split())
        assert config.min_words <= n_words <= config.max_words
        first = re.sub(r"[^\w']", "", verdict.question.split()[0].lower())
        assert "?" in verdict.question or first in QUESTION_WORDS
        assert not re.search(r"additional_kwargs|response_metadata", text, re.IGNORECASE)
    else:
        assert verdict.reason in REASONS, verdict.reason
        assert verdict.detail.strip()


@given(question_texts)
def test_repair_question_is_idempotent(text):
    once = repair_question(text)
    assert repair_question(once) == once
    assert once == once.strip()


class HashingEncoder:
    """A stand-in embedding model for the near-duplicate check: bag of hashed words."""

    def encode(self, texts, **kwargs):  # noqa: ANN001, ANN003, ANN201
        out = np.zeros((len(texts), 64), dtype=np.float32)  # (n, 64)
        for row, text in enumerate(texts):
            for word in normalize_question(text).split() or ["<empty>"]:
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        return out


class Reply(BaseModel):
    question: str


@scaled(0.5)
@given(
    st.lists(st.tuples(questions, st.sampled_from(["c1", "c2", "c3", "missing"]), st.booleans()),
             max_size=12),
    gate_configs,
    st.lists(st.sampled_from(['{"answerable": true}', '{"answerable": false, "reason": "no"}',
                              "yes", "no", "maybe", "", '{"answerable": "perhaps"}']), min_size=1,
             max_size=4),
    st.booleans(),
)  # fmt: skip
def test_apply_gate_gives_every_item_a_verdict(rows, config, judge_script, with_model):
    config = GateConfig(**{**config.to_dict(), "check_answerability": True})
    chunks = {"c1": "Debian uses dpkg to install packages.", "c2": "", "c3": "What is apt?"}
    items = [
        QAItem(id=f"q{i}", question=q, chunk_id=c, status="accepted" if fresh else "rejected",
               reason="" if fresh else "reviewer")
        for i, (q, c, fresh) in enumerate(rows)
    ]  # fmt: skip
    llm = LLM(ScriptedBackend(judge_script), use_cache=False, max_retries=0)
    report = apply_gate(
        items, chunks, config, model=HashingEncoder() if with_model else None, llm=llm
    )

    assert [i.id for i in report.items] == [i.id for i in items]
    for before, after in zip(items, report.items, strict=True):
        if before.status == "rejected":
            assert after == before  # earlier verdicts pass through untouched
            continue
        assert after.status in ("accepted", "rejected")
        if after.status == "rejected":
            assert after.reason in REASONS
            assert str(after.meta.get("reason_text", "")).strip()
        else:
            assert after.reason == ""
    accepted = [normalize_question(i.question) for i in report.items if i.status == "accepted"]
    assert len(accepted) == len(set(accepted)), "two accepted questions with the same text"
    assert report.counts == gate_counts(report.items)
    errors = sum("answerability_error" in i.meta for i in report.items)
    assert report.answerability_errors == errors
    if not with_model:
        assert any("near-duplicate check skipped" in n for n in report.notes)
