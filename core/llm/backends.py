"""Chat backends behind one interface (`ChatBackend.complete`): any OpenAI-compatible
server over HTTP (`response_format: json_schema` when the server takes it), and the choice of
backend from the settings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import ConfigError, LLMError

logger = logging.getLogger(__name__)


Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One reply and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cached: bool = False
    latency_s: float = 0.0


class ChatBackend(Protocol):
    """What a backend must do: one chat completion. `identity` keys the cache."""

    identity: str
    label: str

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion: ...


class OpenAICompatibleBackend:
    """Any server speaking OpenAI's /v1/chat/completions: OpenAI, Ollama, vLLM, llama.cpp server."""

    def __init__(
        self, base_url: str, model: str, api_key: str = "", timeout_s: float = 60.0
    ) -> None:
        if not base_url:
            raise ConfigError(
                "An OpenAI-compatible backend needs a base URL.",
                fix="set it in the sidebar or RAGBENCH_LLM_BASE_URL, e.g. http://localhost:11434/v1",
            )
        if not model:
            raise ConfigError(
                "An OpenAI-compatible backend needs a model name.",
                fix="set it in the sidebar or RAGBENCH_LLM_MODEL, e.g. llama3.1 or gpt-4o-mini",
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.identity = f"openai|{self.base_url}|{model}"
        self.label = f"{model} at {self.base_url}"
        self._schema_supported = True  # flipped off when the server rejects response_format
        self._client: Any = None
        self._lock = threading.Lock()

    def _http(self) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                if self._api_key:
                    headers["Authorization"] = f"Bearer {self._api_key}"
                self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
            return self._client

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        import httpx

        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if json_schema is not None and self._schema_supported:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema, "strict": False},
            }
        url = f"{self.base_url}/chat/completions"
        start = time.monotonic()
        try:
            response = self._http().post(url, json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(
                f"The LLM server at {self.base_url} did not answer within {self.timeout_s:g} s.",
                fix="raise the timeout, lower the concurrency, or check the server's load",
                kind="timeout",
                retryable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMError(
                f"Cannot reach the LLM server at {self.base_url}.",
                found=f"{type(exc).__name__}: {exc}",
                fix="start the server or correct the base URL (it usually ends in /v1)",
                kind="connection",
                retryable=True,
            ) from exc
        latency = time.monotonic() - start
        if (
            response.status_code == 400
            and "response_format" in body
            and _mentions_format(response.text)
        ):
            # Server lacks JSON-schema output: fall back to prompt-only JSON and lenient parsing.
            logger.warning("Server %s rejected response_format; retrying without it", self.base_url)
            self._schema_supported = False
            return self.chat(
                messages, temperature=temperature, max_tokens=max_tokens, json_schema=None
            )
        if response.status_code == 429:
            raise LLMError(
                f"The LLM server at {self.base_url} is rate-limiting (HTTP 429).",
                found=response.text[:200],
                fix="lower the concurrency or wait; failed items can be retried alone",
                kind="rate_limit",
                retryable=True,
                raw=response.text,
            )
        if response.status_code >= 500:
            raise LLMError(
                f"The LLM server at {self.base_url} failed (HTTP {response.status_code}).",
                found=response.text[:200],
                kind="server",
                retryable=True,
                raw=response.text,
            )
        if response.status_code in (401, 403):
            raise LLMError(
                f"The LLM server at {self.base_url} refused the API key (HTTP {response.status_code}).",
                fix="check the API key in the sidebar, secrets or RAGBENCH_LLM_API_KEY",
                kind="auth",
                raw=response.text,
            )
        if response.status_code >= 400:
            raise LLMError(
                f"The LLM server at {self.base_url} rejected the request (HTTP {response.status_code}).",
                found=response.text[:300],
                fix="check the model name and parameters",
                kind="refused",
                raw=response.text,
            )
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(
                f"The LLM server at {self.base_url} sent a reply that is not a chat completion.",
                found=response.text[:200],
                fix="check that the base URL points at an OpenAI-compatible /v1 endpoint",
                kind="malformed",
                retryable=True,
                raw=response.text,
            ) from exc
        usage = payload.get("usage") or {}
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=str(payload.get("model") or self.model),
            latency_s=latency,
        )


def _mentions_format(text: str) -> bool:
    lowered = text.lower()
    return "response_format" in lowered or "json_schema" in lowered
