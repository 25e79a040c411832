"""The question quality gate: every rule, the exact real failures, repairs, and set rules."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, LLMError
from core.llm.client import LLM
from core.questions.dataset import QAItem
from core.questions.gate import (
    REASONS,
    GateConfig,
    apply_gate,
    check_question,
    gate_counts,
    normalize_question,
    repair_question,
)
from core.questions.prompts import example_questions
from tests.support.scripted_llm import ScriptedBackend

CHUNK = (
    "Debian GNU/Linux is a free operating system. The archives are updated twice every day. "
    "Packages are installed with dpkg, and APT fetches them from the network."
)

# The two "questions" a published fine-tune was trained on: they must be rejected, exactly so.
REAL_FAILURES = [
    ("QUESTION #1\n", "template_echo"),
    ("...', additional_kwargs={}, response_metadata={})]", "message_repr"),
]


@pytest.mark.parametrize(("text", "reason"), REAL_FAILURES)
def test_the_real_published_garbage_is_rejected(text, reason):
    verdict = check_question(text, CHUNK)
    assert not verdict.accepted
    assert verdict.reason == reason
    assert verdict.detail


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("AIMessage(content='What is Debian?')", "message_repr"),
        ("content='How often are the archives updated?'", "message_repr"),
        ("What is it? response_metadata={'model': 'x'}", "message_repr"),
        ("[HumanMessage(content='hi', additional_kwargs={})]", "message_repr"),
        ("Question 1:", "template_echo"),
        ("QUESTION #2", "template_echo"),
        ("Q1.", "template_echo"),
        ("question", "template_echo"),
        ("1.", "template_echo"),
        ("Question #3 How does dpkg install packages?", "template_echo"),
        (example_questions()[0], "template_echo"),
        ("[question]", "placeholder"),
        ("<question>", "placeholder"),
        ("{question}", "placeholder"),
        ("...", "placeholder"),
        ("…", "placeholder"),
        ("[Your question here]", "placeholder"),
        ("... and how is that done in Debian?", "placeholder"),
        ("Here are two questions based on the passage:", "preamble"),
        ("Here are two potential questions about Debian packages", "preamble"),
        ("Sure! What is Debian GNU/Linux?", "preamble"),
        ("Certainly, here you go", "preamble"),
        ("I will write two questions about the text", "preamble"),
        ("Questions about the passage:", "preamble"),
        ("", "empty"),
        ("   \n ", "empty"),
        ("What is dpkg?", "too_short"),
        ("Why?", "too_short"),
        (" ".join(["word"] * 61) + "?", "too_long"),
        ("Debian releases happen often for many users", "not_a_question"),
        ("1. The passage provides information about Debian", "not_a_question"),
        ("The archives are updated twice every day?", "copy_of_chunk"),
        ("Is Debian GNU/Linux a free operating system?", "copy_of_chunk"),
    ],
)
def test_each_rule_rejects_with_its_reason(text, reason):
    verdict = check_question(text, CHUNK)
    assert (verdict.accepted, verdict.reason) == (False, reason), verdict
    assert reason in REASONS


@pytest.mark.parametrize(
    ("text", "repaired"),
    [
        (
            "1. How often are the Debian archives updated?",
            "How often are the Debian archives updated?",
        ),
        ('Q: "Which program installs Debian packages?"', "Which program installs Debian packages?"),
        (
            "**Question 2:** Which tool fetches packages from the network?",
            "Which tool fetches packages from the network?",
        ),
        (
            "- 'Why does Debian update its archives so often?'",
            "Why does Debian update its archives so often?",
        ),
        (
            "Question: what does APT fetch from the network?",
            "what does APT fetch from the network?",
        ),
        (
            "  3)  Explain how dpkg and APT work together  ",
            "Explain how dpkg and APT work together",
        ),
    ],
)
def test_numbering_and_quotes_are_repaired_then_accepted(text, repaired):
    verdict = check_question(text, CHUNK)
    assert verdict.accepted, verdict
    assert verdict.question == repaired


@pytest.mark.parametrize(
    "text",
    [
        "How often are the Debian archives updated?",
        "What questions about licensing does the Debian FAQ answer?",
        "I have an old laptop; how do I upgrade it to the new Debian release?",
        "Which tool installs a downloaded .deb file",  # no '?' but a question word
        "Explain how APT and dpkg share the work of installing packages",
        "1.5 million users run which distribution?",
    ],
)
def test_good_questions_pass(text):
    assert check_question(text, CHUNK).accepted


def test_repair_leaves_inner_text_alone():
    assert (
        repair_question('"What does "stable" mean in Debian?"')
        == 'What does "stable" mean in Debian?'
    )
    assert (
        normalize_question("How  OFTEN, are archives updated?") == "how often are archives updated"
    )


def test_word_limits_are_configurable():
    config = GateConfig(min_words=2, max_words=5)
    assert check_question("What is dpkg?", CHUNK, config).accepted
    assert (
        check_question("Why are archives updated twice daily?", CHUNK, config).reason == "too_long"
    )


def test_invalid_config_is_refused():
    with pytest.raises(ConfigError, match="not a range"):
        GateConfig(min_words=10, max_words=5)
    with pytest.raises(ConfigError, match="near_duplicate_threshold"):
        GateConfig(near_duplicate_threshold=1.5)


def item(i: int, question: str, chunk: str = "c1", **kw) -> QAItem:
    return QAItem(id=f"q{i}", question=question, chunk_id=chunk, **kw)


def test_apply_gate_keeps_rejections_with_reason_and_raw_text():
    items = [
        item(1, "1. How often are the Debian archives updated?"),
        item(2, "QUESTION #1\n"),
        item(3, "...', additional_kwargs={}, response_metadata={})]"),
        item(4, "Here are two questions:"),
    ]
    report = apply_gate(items, {"c1": CHUNK}, GateConfig(check_near_duplicates=False))
    statuses = [(i.status, i.reason) for i in report.items]
    assert statuses == [
        ("accepted", ""),
        ("rejected", "template_echo"),
        ("rejected", "message_repr"),
        ("rejected", "preamble"),
    ]
    assert report.items[0].question == "How often are the Debian archives updated?"
    assert report.items[0].meta["raw"] == "1. How often are the Debian archives updated?"
    assert all(i.meta["reason_text"] for i in report.items[1:])
    assert report.counts == {
        "total": 4,
        "accepted": 1,
        "rejected": 3,
        "by_reason": {"template_echo": 1, "message_repr": 1, "preamble": 1},
    }
    assert any("near-duplicate check skipped" in n for n in report.notes) is False


def test_exact_duplicates_keep_the_first():
    items = [
        item(1, "How often are the Debian archives updated?"),
        item(2, "how often are the DEBIAN archives updated ?", chunk="c2"),
    ]
    report = apply_gate(items, {"c1": CHUNK, "c2": CHUNK}, GateConfig(check_near_duplicates=False))
    assert [i.status for i in report.items] == ["accepted", "rejected"]
    assert report.items[1].reason == "duplicate" and "q1" in report.items[1].meta["reason_text"]


class FakeEmbedder:
    """Stands in for a SentenceTransformer: fixed vectors per text, unit length after
    normalisation."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts, **kwargs):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)

    def get_sentence_embedding_dimension(self) -> int:
        return 3


def test_near_duplicates_use_the_model_and_threshold():
    a = "How often are the Debian archives updated?"
    b = "How frequently do the Debian archives get updated?"
    c = "Which program installs Debian packages?"
    model = FakeEmbedder({a: [1, 0, 0], b: [0.99, 0.05, 0], c: [0, 1, 0]})
    items = [item(1, a), item(2, b), item(3, c)]
    report = apply_gate(items, {"c1": CHUNK}, GateConfig(), model=model)
    assert [i.reason for i in report.items] == ["", "near_duplicate", ""]
    assert "cosine 0.99" in report.items[1].meta["reason_text"]
    loose = apply_gate(
        items, {"c1": CHUNK}, GateConfig(near_duplicate_threshold=0.999), model=model
    )
    assert [i.status for i in loose.items] == ["accepted"] * 3


def test_near_duplicate_check_without_model_is_noted_not_silent():
    report = apply_gate([item(1, "How often are the Debian archives updated?")], {"c1": CHUNK})
    assert report.counts["accepted"] == 1
    assert report.notes == ["near-duplicate check skipped: no embedding model was given"]


def test_already_rejected_items_pass_through():
    rejected = item(1, "QUESTION #1", status="rejected", reason="reviewer")
    report = apply_gate([rejected], {"c1": CHUNK}, GateConfig(check_near_duplicates=False))
    assert report.items == [rejected]


def test_answerability_check_rejects_no_and_counts_failures(tmp_path):
    def judge(messages):
        # The last turn holding a question (a corrective retry adds a turn after it).
        turn = next(m["content"] for m in reversed(messages) if "Question:" in m["content"])
        question = turn.split("Question:")[1]
        if "dpkg" in question:
            return '{"answerable": true, "reason": "named"}'
        if "kernel" in question:
            return '```json\n{"answerable": false, "reason": "the passage does not say"}\n```'
        if "mirror" in question:
            return '"yes"'
        return "I cannot decide."

    backend = ScriptedBackend(judge)
    llm = LLM(backend, cache_dir=tmp_path / "cache", retry_base_delay_s=0)
    items = [
        item(1, "Which program installs Debian packages, dpkg or rpm?"),
        item(2, "Which kernel version does Debian ship?"),
        item(3, "Is there a mirror that updates the archives?"),
        item(4, "How does APT fetch packages from the network?"),
    ]
    config = GateConfig(check_near_duplicates=False, check_answerability=True)
    report = apply_gate(items, {"c1": CHUNK}, config, llm=llm)
    got = [(i.status, i.reason) for i in report.items]
    assert got == [
        ("accepted", ""),
        ("rejected", "not_answerable"),
        ("accepted", ""),
        ("accepted", ""),
    ]
    assert report.items[1].meta["reason_text"] == "the passage does not say"
    assert report.items[3].meta["answerability_error"] == "parse"
    assert report.answerability_errors == 1
    assert any("failed for 1 question" in n for n in report.notes)


def test_answerability_needs_an_llm():
    config = GateConfig(check_near_duplicates=False, check_answerability=True)
    report = apply_gate(
        [item(1, "How often are the Debian archives updated?")], {"c1": CHUNK}, config
    )
    assert "answerability check skipped: no LLM was given" in report.notes


def test_gate_counts_by_reason():
    items = [
        item(1, "a?", status="rejected", reason="too_short"),
        item(2, "b?", status="rejected", reason="too_short"),
        item(3, "c?", status="rejected", reason="preamble"),
        item(4, "How often are the Debian archives updated?"),
    ]
    assert gate_counts(items) == {
        "total": 4,
        "accepted": 1,
        "rejected": 3,
        "by_reason": {"too_short": 2, "preamble": 1},
    }


def test_scripted_errors_do_not_escape_the_gate(tmp_path):
    backend = ScriptedBackend(LLMError("down", kind="connection"))
    llm = LLM(backend, cache_dir=tmp_path / "cache", max_retries=0)
    config = GateConfig(check_near_duplicates=False, check_answerability=True)
    report = apply_gate(
        [item(1, "How often are the Debian archives updated?")], {"c1": CHUNK}, config, llm=llm
    )
    assert report.items[0].status == "accepted"
    assert report.items[0].meta["answerability_error"] == "connection"
