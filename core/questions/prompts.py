"""Typed prompts: each has a pydantic input model, a pydantic output model, an instruction and
few-shot examples, so a reply is parsed as structured output and never by splitting lines.

How a prompt becomes messages:
1. The system message is the instruction, which names the exact JSON shape wanted.
2. Each few-shot example becomes a user turn (the rendered input) and an assistant turn (the
   output model dumped as JSON), so even a small model sees the format once.
3. The real input is rendered into the last user turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

Message = dict[str, str]
I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the usual name for an input type
O = TypeVar("O", bound=BaseModel)  # noqa: E741


@dataclass(frozen=True)
class TypedPrompt(Generic[I, O]):
    """A prompt with typed input and output and few-shot examples."""

    name: str
    instruction: str
    input_model: type[I]
    output_model: type[O]
    render: Callable[[I], str]
    examples: tuple[tuple[I, O], ...] = ()

    def messages(self, data: I) -> list[Message]:
        """The chat messages for one input."""
        out: list[Message] = [{"role": "system", "content": self.instruction}]
        for example_in, example_out in self.examples:
            out.append({"role": "user", "content": self.render(example_in)})
            out.append(
                {"role": "assistant", "content": example_out.model_dump_json(exclude_none=True)}
            )
        out.append({"role": "user", "content": self.render(data)})
        return out

    def template_chars(self, data: I) -> int:
        """Characters of everything but the variable text: instruction, examples, framing."""
        return sum(len(m["content"]) for m in self.messages(data))


# --------------------------------------------------------------------------- question generation


class QuestionPromptInput(BaseModel):
    """What the question prompt is filled with."""

    passage: str
    n_questions: int = Field(default=2, ge=1, le=20)
    with_answers: bool = True


class GeneratedQA(BaseModel):
    """One generated question, with its answer when asked for."""

    question: str
    answer: str | None = None


class GeneratedQuestions(BaseModel):
    """The reply of the question prompt."""

    questions: list[GeneratedQA]


QUESTION_INSTRUCTION = (
    "You write questions for testing a search engine over a document collection. "
    "Given one passage, write questions that a reader could ask and that this passage answers. "
    "Each question must stand on its own (no 'the passage', 'this text' or 'the author'), "
    "be a single real question ending with '?', use your own words rather than copying a "
    "sentence, and differ from the other questions. "
    'Reply with only a JSON object of the form {"questions": [{"question": "...", '
    '"answer": "..."}]} and nothing else: no preamble, no numbering, no explanation.'
)


def render_question_input(data: QuestionPromptInput) -> str:
    """The user turn of the question prompt."""
    plural = "question" if data.n_questions == 1 else "questions"
    answers = (
        ' Give each a short "answer" taken from the passage.'
        if data.with_answers
        else ' Leave out "answer".'
    )
    return (
        f"Passage:\n<<<\n{data.passage.strip()}\n>>>\n\n"
        f"Write {data.n_questions} {plural} about this passage.{answers}"
    )


QUESTION_EXAMPLE_INPUT = QuestionPromptInput(
    passage=(
        "The tar program stores many files in one archive file. Run 'tar -czf backup.tar.gz "
        "photos/' to pack the folder photos into a gzip-compressed archive, and 'tar -xzf "
        "backup.tar.gz' to unpack it again. The -v flag lists each file as it is processed."
    ),
    n_questions=2,
    with_answers=True,
)
QUESTION_EXAMPLE_OUTPUT = GeneratedQuestions(
    questions=[
        GeneratedQA(
            question="Which tar command packs a folder into a gzip-compressed archive?",
            answer="tar -czf backup.tar.gz photos/",
        ),
        GeneratedQA(
            question="How can tar show every file while it works on an archive?",
            answer="Add the -v flag.",
        ),
    ]
)

QUESTION_PROMPT: TypedPrompt[QuestionPromptInput, GeneratedQuestions] = TypedPrompt(
    name="generate_questions",
    instruction=QUESTION_INSTRUCTION,
    input_model=QuestionPromptInput,
    output_model=GeneratedQuestions,
    render=render_question_input,
    examples=((QUESTION_EXAMPLE_INPUT, QUESTION_EXAMPLE_OUTPUT),),
)

# Keys a model may use instead of the ones asked for; mapped back when coercing.
_QUESTION_KEYS = ("question", "q", "query", "text", "anchor", "prompt")
_ANSWER_KEYS = ("answer", "a", "reference_answer", "response", "reference")


def _coerce_item(item: Any) -> Any:
    if isinstance(item, str):
        return {"question": item}
    if isinstance(item, dict):
        lowered = {str(k).lower(): v for k, v in item.items()}
        question = next((lowered[k] for k in _QUESTION_KEYS if k in lowered), None)
        answer = next((lowered[k] for k in _ANSWER_KEYS if k in lowered), None)
        if question is not None:
            out: dict[str, Any] = {
                "question": question if isinstance(question, str) else str(question)
            }
            if answer is not None:
                out["answer"] = answer if isinstance(answer, str) else json.dumps(answer)
            return out
    return item


def coerce_questions(value: Any) -> Any:
    """Bring near-misses into the GeneratedQuestions shape before validation.

    A bare list, a list of strings, a single {"question": ...} object, another key holding the
    list (e.g. {"items": [...]}), or items keyed "q"/"query" are all repaired; anything else is
    returned unchanged so validation fails with a clear schema error.
    """
    if isinstance(value, list):
        return {"questions": [_coerce_item(v) for v in value]}
    if isinstance(value, str):
        return {"questions": [{"question": value}]}
    if not isinstance(value, dict):
        return value
    lowered = {str(k).lower(): v for k, v in value.items()}
    if "questions" in lowered:
        items = lowered["questions"]
        if isinstance(items, str | dict):
            items = [items]
        if isinstance(items, list):
            return {"questions": [_coerce_item(v) for v in items]}
        return value
    if any(k in lowered for k in _QUESTION_KEYS):
        return {"questions": [_coerce_item(value)]}
    lists = [v for v in value.values() if isinstance(v, list)]
    if len(lists) == 1:
        return {"questions": [_coerce_item(v) for v in lists[0]]}
    return value


def example_questions() -> list[str]:
    """The few-shot example questions: a model that echoes them is caught by the gate."""
    return [qa.question for qa in QUESTION_EXAMPLE_OUTPUT.questions]


# --------------------------------------------------------------------------- answerability


class AnswerabilityInput(BaseModel):
    """What the answerability prompt is filled with."""

    question: str
    passage: str


class AnswerabilityVerdict(BaseModel):
    """Whether the passage alone answers the question."""

    answerable: bool
    reason: str = ""


ANSWERABILITY_INSTRUCTION = (
    "You check questions written for a search-engine test. Decide whether the question can be "
    "answered from the given passage alone, without outside knowledge. "
    'Reply with only a JSON object: {"answerable": true or false, "reason": "<a few words>"}.'
)


def render_answerability_input(data: AnswerabilityInput) -> str:
    """The user turn of the answerability prompt."""
    return (
        f"Passage:\n<<<\n{data.passage.strip()}\n>>>\n\nQuestion: {data.question.strip()}\n\n"
        "Can this question be answered from this passage alone?"
    )


ANSWERABILITY_PROMPT: TypedPrompt[AnswerabilityInput, AnswerabilityVerdict] = TypedPrompt(
    name="check_answerability",
    instruction=ANSWERABILITY_INSTRUCTION,
    input_model=AnswerabilityInput,
    output_model=AnswerabilityVerdict,
    render=render_answerability_input,
    examples=(
        (
            AnswerabilityInput(
                question="Which flag makes tar list each file it processes?",
                passage=QUESTION_EXAMPLE_INPUT.passage,
            ),
            AnswerabilityVerdict(answerable=True, reason="the passage names the -v flag"),
        ),
        (
            AnswerabilityInput(
                question="Who wrote the first version of tar?",
                passage=QUESTION_EXAMPLE_INPUT.passage,
            ),
            AnswerabilityVerdict(answerable=False, reason="the passage does not say"),
        ),
    ),
)

_YES = {"yes", "y", "true", "answerable", "1"}
_NO = {"no", "n", "false", "not answerable", "unanswerable", "0"}


def _as_bool(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().strip(".!").lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
    return value


def coerce_answerability(value: Any) -> Any:
    """Accept "yes"/"no", a bare boolean, or {"answer": "yes"} as a verdict."""
    if isinstance(value, bool | str):
        return {"answerable": _as_bool(value)}
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in ("answerable", "answer", "verdict", "can_answer", "result"):
            if key in lowered:
                out = {"answerable": _as_bool(lowered[key])}
                if isinstance(lowered.get("reason"), str):
                    out["reason"] = lowered["reason"]
                return out
    return value
