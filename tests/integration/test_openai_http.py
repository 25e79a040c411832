"""The OpenAI-compatible backend against a real HTTP server on loopback."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from core.config import LLMSettings
from core.errors import LLMError
from core.llm.backends import OpenAICompatibleBackend
from core.llm.client import LLM, check_connection, make_llm
from tests.support.openai_server import ChatServer, Reply

MSG = [{"role": "user", "content": "Say hi"}]


class Ping(BaseModel):
    ok: bool


def client(
    server: ChatServer, tmp_path, *, timeout_s: float = 5.0, retries: int = 2, key: str = ""
) -> LLM:
    backend = OpenAICompatibleBackend(
        server.base_url, "test-model", api_key=key, timeout_s=timeout_s
    )
    return LLM(backend, cache_dir=tmp_path / "c", max_retries=retries, retry_base_delay_s=0.01)


def test_plain_completion_with_usage_and_auth(tmp_path):
    with ChatServer(lambda body: Reply(content="hi there")) as server:
        llm = client(server, tmp_path, key="sk-test")
        completion = llm.complete(MSG)
    assert completion.text == "hi there"
    assert completion.completion_tokens == 2 and completion.prompt_tokens == 2
    assert server.requests[0]["model"] == "test-model"
    assert server.auth_headers[0] == "Bearer sk-test"


def test_json_schema_is_sent_and_reply_parsed(tmp_path):
    with ChatServer(lambda body: Reply(content='{"ok": true}')) as server:
        parsed, _ = client(server, tmp_path).complete_json(MSG, Ping)
    assert parsed.ok is True
    fmt = server.requests[0]["response_format"]
    assert (
        fmt["type"] == "json_schema"
        and fmt["json_schema"]["schema"]["properties"]["ok"]["type"] == "boolean"
    )


def test_429_is_retried_then_succeeds(tmp_path):
    replies = iter([Reply(status=429, raw_body='{"error": "rate limited"}'), Reply(content="ok")])
    with ChatServer(lambda body: next(replies)) as server:
        llm = client(server, tmp_path)
        assert llm.complete(MSG).text == "ok"
    assert len(server.requests) == 2 and llm.usage.retries == 1


def test_persistent_429_gives_clear_error(tmp_path):
    with ChatServer(lambda body: Reply(status=429, raw_body='{"error": "slow down"}')) as server:
        llm = client(server, tmp_path, retries=1)
        with pytest.raises(LLMError) as info:
            llm.complete(MSG)
    assert info.value.kind == "rate_limit"
    assert "rate-limiting (HTTP 429)" in str(info.value) and "lower the concurrency" in str(
        info.value
    )
    assert len(server.requests) == 2


def test_timeout_is_reported_clearly(tmp_path):
    with ChatServer(lambda body: Reply(content="late", delay_s=1.5)) as server:
        llm = client(server, tmp_path, timeout_s=0.3, retries=0)
        with pytest.raises(LLMError) as info:
            llm.complete(MSG)
    assert info.value.kind == "timeout"
    assert "did not answer within" in str(info.value)


def test_malformed_body_is_retried_then_reported(tmp_path):
    with ChatServer(lambda body: Reply(raw_body="<html>oops</html>", status=200)) as server:
        llm = client(server, tmp_path, retries=1)
        with pytest.raises(LLMError) as info:
            llm.complete(MSG)
    assert info.value.kind == "malformed"
    assert "not a chat completion" in str(info.value)
    assert len(server.requests) == 2


def test_malformed_json_content_is_repaired_or_rejected(tmp_path):
    replies = iter([Reply(content='{"ok": tru'), Reply(content='```json\n{"ok": false,}\n```')])
    with ChatServer(lambda body: next(replies)) as server:
        parsed, _ = client(server, tmp_path).complete_json(MSG, Ping)
    assert parsed.ok is False  # first reply unrepairable -> corrective retry -> fenced, repaired


def test_server_without_json_schema_support_falls_back(tmp_path):
    def handler(body):
        if "response_format" in body:
            return Reply(status=400, raw_body='{"error": "response_format is not supported"}')
        return Reply(content='{"ok": true}')

    with ChatServer(handler) as server:
        parsed, _ = client(server, tmp_path).complete_json(MSG, Ping)
    assert parsed.ok is True
    assert "response_format" in server.requests[0] and "response_format" not in server.requests[1]


def test_auth_error_not_retried(tmp_path):
    with ChatServer(lambda body: Reply(status=401, raw_body='{"error": "bad key"}')) as server:
        llm = client(server, tmp_path)
        with pytest.raises(LLMError, match="refused the API key"):
            llm.complete(MSG)
    assert len(server.requests) == 1


def test_server_down_gives_clear_error(tmp_path):
    with ChatServer(lambda body: Reply(content="x")) as server:
        url = server.base_url
    llm = LLM(OpenAICompatibleBackend(url, "m", timeout_s=1), cache_dir=tmp_path, max_retries=0)
    with pytest.raises(LLMError) as info:
        llm.complete(MSG)
    assert info.value.kind == "connection"
    assert "Cannot reach the LLM server" in str(info.value) and "start the server" in str(
        info.value
    )


def test_check_connection_shows_raw_reply_on_parse_failure():
    with ChatServer(lambda body: Reply(content="I am a helpful assistant!")) as server:
        report = check_connection(
            LLMSettings(backend="openai", base_url=server.base_url, model="m")
        )
    assert report.ok is False
    assert report.raw == "I am a helpful assistant!"


def test_check_connection_ok():
    with ChatServer(lambda body: Reply(content='{"ok": true}')) as server:
        report = check_connection(
            LLMSettings(backend="openai", base_url=server.base_url, model="m")
        )
    assert report.ok is True and "valid JSON" in report.message


def test_concurrency_limit_is_respected(tmp_path):
    import threading

    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handler(body):
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        import time

        time.sleep(0.1)
        with lock:
            active["now"] -= 1
        return Reply(content=json.dumps({"echo": body["messages"][0]["content"]}))

    with ChatServer(handler) as server:
        llm = make_llm(
            LLMSettings(backend="openai", base_url=server.base_url, model="m", max_concurrency=3),
            cache_dir=tmp_path,
        )
        out = llm.map(lambda i: llm.complete([{"role": "user", "content": str(i)}]).text, range(9))
    assert [json.loads(o)["echo"] for o in out] == [str(i) for i in range(9)]
    assert active["max"] == 3
