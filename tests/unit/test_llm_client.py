"""The LLM client with a scripted backend: cache, retries, structured output, map, usage."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from core.config import LLMSettings
from core.errors import ConfigError, LLMError
from core.llm.client import LLM, make_backend
from tests.support.scripted_llm import ScriptedBackend


class Questions(BaseModel):
    questions: list[str]


MSG = [{"role": "user", "content": "write questions"}]


def make(script, tmp_path, **kw) -> tuple[LLM, ScriptedBackend]:
    backend = ScriptedBackend(script)
    return LLM(backend, cache_dir=tmp_path / "cache", retry_base_delay_s=0.0, **kw), backend


def test_cache_hit_makes_no_call(tmp_path):
    llm, backend = make(["hello"], tmp_path)
    first = llm.complete(MSG)
    second = llm.complete(MSG)
    assert (first.text, first.cached) == ("hello", False)
    assert (second.text, second.cached) == ("hello", True)
    assert len(backend.calls) == 1
    assert llm.usage.calls == 1 and llm.usage.cached == 1
    # A new client on the same cache folder (a re-run) also makes no call.
    llm2, backend2 = make(["other"], tmp_path)
    assert llm2.complete(MSG).text == "hello" and backend2.calls == []


def test_samples_are_cached_separately(tmp_path):
    llm, backend = make(["a", "b", "c"], tmp_path)
    texts = [llm.complete(MSG, temperature=0.7, sample=i).text for i in range(3)]
    assert texts == ["a", "b", "c"] and len(backend.calls) == 3


def test_retryable_errors_are_retried_then_succeed(tmp_path):
    script = [
        LLMError("slow", kind="timeout", retryable=True),
        LLMError("429", kind="rate_limit", retryable=True),
        "ok",
    ]
    llm, backend = make(script, tmp_path, max_retries=3)
    assert llm.complete(MSG).text == "ok"
    assert len(backend.calls) == 3 and llm.usage.retries == 2


def test_retries_are_bounded_and_failure_counted(tmp_path):
    llm, backend = make(
        [LLMError("429", kind="rate_limit", retryable=True)], tmp_path, max_retries=2
    )
    with pytest.raises(LLMError, match="429"):
        llm.complete(MSG)
    assert len(backend.calls) == 3
    assert llm.usage.failures["rate_limit"] == 1


def test_non_retryable_error_fails_at_once(tmp_path):
    llm, backend = make([LLMError("bad key", kind="auth"), "never"], tmp_path)
    with pytest.raises(LLMError, match="bad key"):
        llm.complete(MSG)
    assert len(backend.calls) == 1


def test_complete_json_repairs_fenced_reply(tmp_path):
    llm, _ = make(['```json\n{"questions": ["What is dpkg?",]}\n```'], tmp_path)
    parsed, completion = llm.complete_json(MSG, Questions)
    assert parsed.questions == ["What is dpkg?"]


def test_complete_json_corrective_retry_then_caches_only_valid(tmp_path):
    llm, backend = make(["QUESTION #1\n", '{"questions": ["Why?"]}'], tmp_path)
    parsed, _ = llm.complete_json(MSG, Questions)
    assert parsed.questions == ["Why?"]
    assert len(backend.calls) == 2
    assert "not valid JSON" in backend.calls[1][-1]["content"]
    assert backend.calls[1][-2] == {"role": "assistant", "content": "QUESTION #1\n"}


def test_complete_json_wrong_schema_raises_with_raw(tmp_path):
    llm, _ = make(['{"items": 3}'], tmp_path)
    with pytest.raises(LLMError) as info:
        llm.complete_json(MSG, Questions, parse_retries=1)
    assert info.value.kind == "schema"
    assert info.value.raw == '{"items": 3}'
    assert llm.usage.failures["schema"] == 1


def test_complete_json_coerce_wraps_bare_list(tmp_path):
    llm, _ = make(['["A?", "B?"]'], tmp_path)
    parsed, _ = llm.complete_json(
        MSG, Questions, coerce=lambda v: {"questions": v} if isinstance(v, list) else v
    )
    assert parsed.questions == ["A?", "B?"]


def test_map_keeps_order_and_returns_exceptions(tmp_path):
    def reply(messages):
        text = messages[-1]["content"]
        if text == "boom":
            return LLMError("broken", kind="server")
        return text.upper()

    llm, _ = make(reply, tmp_path, max_concurrency=4, max_retries=0)
    events = []
    out = llm.map(
        lambda s: llm.complete([{"role": "user", "content": s}]).text,
        ["a", "boom", "c", "d"],
        on_progress=events.append,
    )
    assert out[0] == "A" and out[2] == "C" and out[3] == "D"
    assert isinstance(out[1], LLMError)
    assert events[-1].done == 4 and events[-1].total == 4


def test_openai_backend_needs_url_and_model():
    with pytest.raises(ConfigError, match="base URL"):
        make_backend(LLMSettings(backend="openai", model="m"))
    with pytest.raises(ConfigError, match="model name"):
        make_backend(LLMSettings(backend="openai", base_url="http://x/v1"))
    with pytest.raises(ConfigError, match="Unknown LLM backend"):
        make_backend(LLMSettings(backend="cloud"))


def test_settings_redacted_never_contains_key():
    settings = LLMSettings(backend="openai", base_url="u", model="m", api_key="sk-secret-123")
    assert "sk-secret-123" not in str(settings.redacted())
    assert settings.redacted()["api_key_set"] is True
