"""Bad LLM replies and servers, through the real HTTP client (core.llm) against a loopback
OpenAI-compatible server (tests/support/openai_server.py).

Every case asserts the message a person sees (what, found, fix), how the failure is counted, and
that the runs saved before are untouched. Stage-level cases run the Questions and RAG stages and
check that failed items are recorded with their reason and that the rest is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading

import numpy as np
import pytest

from core.config import LLMSettings
from core.documents.corpus import load_chunks
from core.errors import LLMError
from core.llm.backends import OpenAICompatibleBackend
from core.llm.client import LLM, check_connection, make_llm
from core.questions.dataset import load_qa
from core.questions.gate import GateConfig
from core.questions.generation import GenerationConfig, generate_question_run
from core.questions.prompts import GeneratedQuestions, coerce_questions
from core.questions.qa_runs import GATE_REPORT_FILE
from core.runs.folders import load_run
from tests.support.openai_server import ChatServer, Reply

QUESTIONS_JSON = json.dumps(
    {"questions": [{"question": "Which tool resolves package dependencies in Debian?",
                    "answer": "apt"}]}
)  # fmt: skip
MESSAGES = [{"role": "user", "content": "Write one question about apt."}]


class Script:
    """Replies in order (the last one repeats); thread-safe; counts the requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.n = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        with self._lock:
            reply = self.replies[min(self.n, len(self.replies) - 1)]
            self.n += 1
            return reply


def client(server: ChatServer, *, timeout_s: float = 10.0, retries: int = 1) -> LLM:
    backend = OpenAICompatibleBackend(server.base_url, "test-model", timeout_s=timeout_s)
    return LLM(backend, use_cache=False, max_retries=retries, retry_base_delay_s=0.01)


def ask_json(llm: LLM) -> GeneratedQuestions:
    parsed, _ = llm.complete_json(MESSAGES, GeneratedQuestions, coerce=coerce_questions)
    return parsed


# --------------------------------------------------------------------------- one call


# (case id, server replies, error kind, words in the message, requests the server saw)
FAILURES = [
    ("malformed-body", [Reply(raw_body="<html>502 Bad Gateway</html>")], "malformed",
     ["sent a reply that is not a chat completion", "Found: <html>502 Bad Gateway", "Fix: check that the base URL"], 2),
    ("no-choices", [Reply(raw_body='{"object": "chat.completion", "choices": []}')], "malformed",
     ["not a chat completion"], 2),
    ("empty-content", [Reply(content="")], "parse", ["empty reply"], 2),
    ("null-content", [Reply(content=None)], "parse", ["empty reply"], 2),
    ("prose-not-json", [Reply(content="Sure! Here are some great questions about apt.")], "parse",
     ["not valid JSON", "Found: Sure! Here are some great", "JSON-schema (structured output)"], 2),
    ("wrong-schema", [Reply(content='{"items_wanted": 2, "note": "none"}')], "schema",
     ["does not match the expected schema", "questions"], 2),
    ("rate-limited", [Reply(status=429, raw_body='{"error": "slow down"}')], "rate_limit",
     ["rate-limiting (HTTP 429)", 'Found: {"error": "slow down"}', "Fix: lower the concurrency"], 2),
    ("server-error", [Reply(status=500, raw_body='{"error": "CUDA error: device-side assert"}')], "server",
     ["failed (HTTP 500)", "device-side assert"], 2),
    ("bad-key", [Reply(status=401, raw_body='{"error": "invalid api key"}')], "auth",
     ["refused the API key (HTTP 401)", "Fix: check the API key"], 1),
    ("unknown-model", [Reply(status=404, raw_body='{"error": "model test-model not found"}')], "refused",
     ["rejected the request (HTTP 404)", "model test-model not found", "check the model name"], 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("replies", "kind", "words", "n_requests"),
    [pytest.param(r, k, w, n, id=i) for i, r, k, w, n in FAILURES],
)
def test_a_bad_reply_is_a_clear_counted_llm_error(baseline, replies, kind, words, n_requests):
    script = Script(*replies)
    with ChatServer(script) as server:
        llm = client(server, retries=1)
        with pytest.raises(LLMError) as excinfo:
            ask_json(llm)
    error = excinfo.value
    assert error.kind == kind
    for word in words:
        assert word in str(error), (word, str(error))
    assert script.n == n_requests  # retried (or corrected) once when retryable, never when not
    assert llm.usage.failures == {kind: 1}
    baseline.intact()


def test_a_truncated_reply_keeps_the_complete_questions(baseline):
    cut = (
        '{"questions": [{"question": "Which tool resolves dependencies?", "answer": "apt"}, {"quest'
    )
    with ChatServer(Script(Reply(content=cut))) as server:
        parsed = ask_json(client(server))
    assert [q.question for q in parsed.questions] == ["Which tool resolves dependencies?"]
    baseline.intact()


def test_a_slow_server_times_out_with_the_limit_in_the_message(baseline):
    script = Script(Reply(content=QUESTIONS_JSON, delay_s=3.0))
    with ChatServer(script) as server:
        llm = client(server, timeout_s=1.0, retries=1)
        with pytest.raises(LLMError) as excinfo:
            llm.complete(MESSAGES)
    assert excinfo.value.kind == "timeout"
    assert str(excinfo.value).startswith(
        f"The LLM server at {server.base_url} did not answer within 1 s."
    )
    assert "Fix: raise the timeout, lower the concurrency" in str(excinfo.value)
    assert (script.n, llm.usage.retries, llm.usage.failures) == (2, 1, {"timeout": 1})
    baseline.intact()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_transient_failure_is_retried_and_the_answer_kept(baseline, status):
    script = Script(Reply(status=status, raw_body="{}"), Reply(content=QUESTIONS_JSON))
    with ChatServer(script) as server:
        llm = client(server, retries=2)
        parsed = ask_json(llm)
    assert parsed.questions[0].answer == "apt"
    assert (script.n, llm.usage.retries, dict(llm.usage.failures)) == (2, 1, {})
    baseline.intact()


def test_a_server_without_structured_output_falls_back_to_plain_json(baseline, caplog):
    def handler(body: dict) -> Reply:
        if "response_format" in body:
            return Reply(status=400, raw_body='{"error": "response_format is not supported"}')
        return Reply(content=QUESTIONS_JSON)

    with ChatServer(handler) as server:
        with caplog.at_level(logging.WARNING, logger="core.llm"):
            parsed = ask_json(client(server))
        assert "response_format" not in server.requests[-1]
    assert parsed.questions[0].question.startswith("Which tool")
    assert "rejected response_format; retrying without it" in caplog.text
    baseline.intact()


def test_no_server_at_all_is_a_connection_error_and_test_connection_says_so(baseline):
    with ChatServer(Script(Reply(content="{}"))) as server:
        url = server.base_url  # a port that was just closed
    llm = client_for_url(url)
    with pytest.raises(LLMError) as excinfo:
        llm.complete(MESSAGES)
    assert excinfo.value.kind == "connection"
    assert f"Cannot reach the LLM server at {url}" in str(excinfo.value)
    assert "start the server or correct the base URL" in str(excinfo.value)
    report = check_connection(LLMSettings(backend="openai", base_url=url, model="m"))
    assert not report.ok and report.message.startswith(f"Cannot reach the LLM server at {url}")
    baseline.intact()


def client_for_url(url: str) -> LLM:
    return LLM(OpenAICompatibleBackend(url, "m", timeout_s=2), use_cache=False, max_retries=1,
               retry_base_delay_s=0.01)  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(content="I'm a teapot, not JSON."), ["not valid JSON"]),
        (Reply(status=429, raw_body="{}"), ["rate-limiting (HTTP 429)"]),
        (Reply(content="", delay_s=0.0), ["empty reply"]),
    ],
    ids=["prose", "429", "empty"],
)
def test_test_connection_reports_a_bad_server_and_never_raises(baseline, reply, words):
    with ChatServer(Script(reply)) as server:
        report = check_connection(
            LLMSettings(backend="openai", base_url=server.base_url, model="m", max_retries=0)
        )
    assert not report.ok
    assert all(w in report.message for w in words), report.message
    baseline.intact()


# --------------------------------------------------------------------------- the Questions stage


def question_config() -> GenerationConfig:
    return GenerationConfig(n_per_chunk=1, gate=GateConfig(check_near_duplicates=False))


def test_questions_stage_fails_cleanly_when_every_reply_is_empty(baseline):
    with ChatServer(Script(Reply(content=""))) as server:
        with pytest.raises(LLMError) as excinfo:
            generate_question_run(baseline.corpus.id, client(server), question_config())
    message = str(excinfo.value)
    assert message.startswith("No questions came back from any of the 2 chunk(s).")
    assert "Found: 2 parse; first: The LLM returned an empty reply." in message
    assert "Test connection" in message
    (failed,) = [r for r in _runs("qa") if r.id != baseline.qa.id]
    assert failed.manifest.status == "failed" and failed.manifest.error == message
    report = failed.read_json(GATE_REPORT_FILE)
    assert report["failed_chunks"] == 2 and report["failures_by_kind"] == {"parse": 2}
    baseline.intact()


def test_questions_stage_keeps_good_chunks_when_one_chunk_fails(baseline):
    chunks = load_chunks(baseline.corpus)
    release = next(c for c in chunks if "every two years" in c.text)

    def handler(body: dict) -> Reply:
        if "every two years" in body["messages"][-1]["content"]:
            return Reply(status=500, raw_body='{"error": "overloaded"}')
        return Reply(content=QUESTIONS_JSON[:-3])  # truncated, still salvageable

    with ChatServer(handler) as server:
        result = generate_question_run(baseline.corpus.id, client(server), question_config())
    assert [f.kind for f in result.failures] == ["server"]
    assert result.failures[0].chunk_id == release.id
    assert "failed (HTTP 500)" in result.failures[0].message
    saved = load_qa(result.run.id)
    assert [i.question for i in saved] == ["Which tool resolves package dependencies in Debian?"]
    manifest = load_run(result.run.id).manifest
    assert manifest.status == "done" and manifest.summary["n_failed_chunks"] == 1
    assert result.run.read_json(GATE_REPORT_FILE)["failures_by_kind"] == {"server": 1}
    baseline.intact()


# --------------------------------------------------------------------------- the RAG stage


def fake_encoder(texts: list[str]) -> np.ndarray:
    """Bag-of-words hashing: enough to rank two chunks, no model needed."""
    out = np.zeros((len(texts), 32), dtype=np.float32)  # (n, 32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def run_rag_stage(llm: LLM, qa_run_id: str):  # noqa: ANN201
    from core.rag.answering import RagConfig, generate_answers
    from core.rag.chain import exact_search

    chunks = load_chunks(load_run(qa_run_id).manifest.parents["corpus"])
    search = exact_search([c.id for c in chunks], fake_encoder([c.text for c in chunks]))
    return generate_answers(
        qa_run_id, llm=llm, encode=fake_encoder, search=search, config=RagConfig(k=2, split=None)
    )


def test_rag_stage_records_a_rate_limited_question_and_keeps_the_answered_one(baseline):
    from core.rag.answering import load_samples

    def handler(body: dict) -> Reply:
        if "stable release" in body["messages"][-1]["content"].split("Question:")[-1]:
            return Reply(status=429, raw_body='{"error": "quota"}')
        return Reply(content="apt resolves dependencies.")

    with ChatServer(handler) as server:
        run = run_rag_stage(client(server, retries=1), baseline.qa.id)
    samples = {s.id: s for s in load_samples(run)}
    assert samples["b1"].response == "apt resolves dependencies." and samples["b1"].error is None
    assert samples["b2"].response == "" and samples["b2"].error_kind == "rate_limit"
    assert "rate-limiting (HTTP 429)" in samples["b2"].error
    assert samples["b2"].retrieved_ids  # the retrieval is kept even when the answer failed
    manifest = load_run(run.id).manifest
    assert manifest.status == "done"
    assert (manifest.summary["n_answered"], manifest.summary["n_failed"]) == (1, 1)
    baseline.intact()


def _runs(kind: str):  # noqa: ANN202
    from core.runs.folders import list_runs

    return list_runs(kind)


# --------------------------------------------------------------------------- the API key

SECRET = "sk-TESTSECRET123"


def test_the_api_key_is_sent_but_never_written_anywhere(baseline, data_root, caplog):
    """Run Questions and RAG with a key through the loopback server, export, then grep every
    file of the data directory and every log record for the key."""
    from core.questions.exporting import export_hf_zip, export_qa
    from core.rag.answering import load_samples, samples_json

    def handler(body: dict) -> Reply:
        if "Question:" in body["messages"][-1]["content"]:
            return Reply(content="apt does.")
        if "fail" in str(body["messages"]):
            return Reply(status=401, raw_body='{"error": "bad key"}')
        return Reply(content=QUESTIONS_JSON)

    settings = LLMSettings(
        backend="openai", model="test-model", api_key=SECRET, max_retries=0, base_url=""
    )
    with caplog.at_level(logging.DEBUG), ChatServer(handler) as server:
        settings = LLMSettings(**{**settings.__dict__, "base_url": server.base_url})
        assert check_connection(settings).raw is not None
        llm = make_llm(settings)  # with the disk cache: cache files are grepped too
        qa = generate_question_run(baseline.corpus.id, llm, question_config()).run
        rag = run_rag_stage(llm, baseline.qa.id)
        with pytest.raises(LLMError):  # an auth failure's message must not echo the key either
            llm.complete([{"role": "user", "content": "fail"}])
        auth_headers = list(server.auth_headers)
    assert auth_headers and all(h == f"Bearer {SECRET}" for h in auth_headers)  # it was used

    items = load_qa(qa.id, accepted_only=False)
    chunk_texts = {c.id: c.text for c in load_chunks(baseline.corpus)}
    exports = {
        "csv": export_qa(items, chunk_texts, "csv"),
        "jsonl": export_qa(items, chunk_texts, "jsonl"),
        "hf.zip": export_hf_zip(items, chunk_texts),
        "samples.json": samples_json(load_samples(rag)).encode(),
    }
    files = [p for p in data_root.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any("cache" in p.parts for p in files)
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    leaks += [name for name, data in exports.items() if SECRET.encode() in data]
    leaks += [r.getMessage() for r in caplog.records if SECRET in r.getMessage()]
    assert leaks == []
    assert (
        load_run(qa.id).manifest.config["llm"]["identity"] == f"openai|{server.base_url}|test-model"
    )
    baseline.intact()
