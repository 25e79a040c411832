"""The LLM client: structured output, bounded retries, a disk cache, a concurrency limit and token
counts over any chat backend (core.llm.backends, core.llm.embedded).

How a call works:
1. `LLM.complete(messages, ...)` looks the request up in the disk cache, keyed by
   (backend identity, model, messages, params); a hit makes no call.
2. On a miss it calls the backend; retryable failures (timeout, 429, 5xx, malformed body)
   are retried with exponential back-off up to `max_retries`; others raise LLMError at once.
3. `LLM.complete_json(messages, ResponseModel)` parses the reply leniently (core.jsonparse),
   validates it with pydantic, and on failure asks once more with the parse error attached.
   Only replies that validate are cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.config import LLMSettings, data_dir
from core.errors import ConfigError, LLMError, RagbenchError, StoppedError
from core.jsonparse import extract_json
from core.llm.backends import Completion, OpenAICompatibleBackend
from core.llm.embedded import EmbeddedBackend
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.runs.folders import write_json_atomic

if TYPE_CHECKING:
    from core.llm.backends import ChatBackend, Message

logger = logging.getLogger(__name__)


T = TypeVar("T", bound=BaseModel)


R = TypeVar("R")


@dataclass
class Usage:
    """Counts for one LLM client: calls, cache hits, tokens and failures by kind."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = dict(self.failures)
        return data


def usage_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one stage cost: the difference of two `Usage.to_dict()` snapshots of one client,
    with the total of prompt and completion tokens."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            prev = before.get(key) or {}
            out[key] = {k: v - prev.get(k, 0) for k, v in value.items() if v - prev.get(k, 0)}
        else:
            out[key] = value - before.get(key, 0)
    out["total_tokens"] = out.get("prompt_tokens", 0) + out.get("completion_tokens", 0)
    return out


class DiskCache:
    """One JSON file per request key under `root`; atomic writes, safe across processes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        write_json_atomic(self._path(key), value)


def request_key(identity: str, messages: Sequence[Message], params: dict[str, Any]) -> str:
    """The cache key of a request: a hash of backend identity, messages and parameters."""
    blob = json.dumps({"id": identity, "m": list(messages), "p": params}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LLM:
    """A backend plus cache, retries, structured output, concurrency and token counts."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        cache_dir: Path | None = None,
        use_cache: bool = True,
        max_retries: int = 3,
        max_concurrency: int = 4,
        retry_base_delay_s: float = 0.5,
    ) -> None:
        self.backend = backend
        self.cache = DiskCache(cache_dir or data_dir() / "cache" / "llm") if use_cache else None
        self.max_retries = max_retries
        self.max_concurrency = max(1, max_concurrency)
        self.retry_base_delay_s = retry_base_delay_s
        self.usage = Usage()
        self._usage_lock = threading.Lock()

    @property
    def label(self) -> str:
        return self.backend.label

    def _count(self, completion: Completion | None = None, failure: str | None = None) -> None:
        with self._usage_lock:
            if failure:
                self.usage.failures[failure] += 1
                return
            assert completion is not None
            if completion.cached:
                self.usage.cached += 1
            else:
                self.usage.calls += 1
                self.usage.prompt_tokens += completion.prompt_tokens
                self.usage.completion_tokens += completion.completion_tokens

    def _call_with_retries(
        self,
        messages: Sequence[Message],
        temperature: float,
        max_tokens: int,
        json_schema: dict | None,
    ) -> Completion:
        attempt = 0
        while True:
            try:
                return self.backend.chat(
                    messages,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    json_schema=json_schema,
                )
            except LLMError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    self._count(failure=exc.kind)
                    raise
                attempt += 1
                with self._usage_lock:
                    self.usage.retries += 1
                delay = self.retry_base_delay_s * (2 ** (attempt - 1))
                logger.info("LLM %s (%s); retry %d in %.1fs", exc.kind, exc.what, attempt, delay)
                time.sleep(delay)

    def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        json_schema: dict[str, Any] | None = None,
        sample: int = 0,
        write_cache: bool = True,
    ) -> Completion:
        """One completion, from the cache when this exact request was answered before.

        `sample` distinguishes repeated draws of the same request (e.g. n=3 for answer relevancy
        on servers that allow only n=1).
        """
        params = {"t": temperature, "max": max_tokens, "schema": json_schema, "sample": sample}
        key = request_key(self.backend.identity, messages, params)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                completion = Completion(**{**hit, "cached": True})
                self._count(completion)
                return completion
        completion = self._call_with_retries(messages, temperature, max_tokens, json_schema)
        self._count(completion)
        if self.cache is not None and write_cache:
            self.cache.put(key, {**asdict(completion), "cached": False})
        return completion

    def complete_json(
        self,
        messages: Sequence[Message],
        response_model: type[T],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        coerce: Callable[[Any], Any] | None = None,
        parse_retries: int = 1,
        sample: int = 0,
        on_reply: Callable[[Completion], None] | None = None,
        on_invalid: Callable[[LLMError], None] | None = None,
        what: str = "The LLM reply does not match the expected schema.",
    ) -> tuple[T, Completion]:
        """A reply parsed into `response_model`: lenient JSON extraction, optional `coerce` (e.g.
        wrap a bare list), and `parse_retries` corrective re-asks that quote the parse error.

        The one corrective-retry loop of the project (the RAGAS judge uses it too). Only a reply
        that validates is cached, keyed by the original request, so a reply that needed the
        retry is found on the first attempt next time. `on_reply` sees every completion and
        `on_invalid` every reply that did not validate. Raises LLMError (kind "parse" or
        "schema", with the raw reply) when the last attempt still does not validate."""
        schema = response_model.model_json_schema()
        convo = list(messages)
        last_error: LLMError | None = None
        for attempt in range(parse_retries + 1):
            completion = self.complete(
                convo,
                temperature=temperature,
                max_tokens=max_tokens,
                json_schema=schema,
                sample=sample,
                write_cache=False,
            )
            if on_reply is not None:
                on_reply(completion)
            try:
                value = extract_json(completion.text)
                if coerce is not None:
                    value = coerce(value)
                parsed = response_model.model_validate(value)
            except LLMError as exc:
                last_error = exc
            except ValidationError as exc:
                last_error = LLMError(
                    what,
                    found=_short_validation(exc),
                    fix="use a model that follows JSON instructions, or a server with structured output",
                    kind="schema",
                    raw=completion.text,
                )
            else:
                if self.cache is not None and not completion.cached:
                    params = {
                        "t": temperature,
                        "max": max_tokens,
                        "schema": schema,
                        "sample": sample,
                    }
                    self.cache.put(
                        request_key(self.backend.identity, messages, params),
                        {**asdict(completion), "cached": False},
                    )
                return parsed, completion
            if on_invalid is not None:
                on_invalid(last_error)
            if attempt < parse_retries:
                convo = [
                    *messages,
                    {"role": "assistant", "content": completion.text},
                    {
                        "role": "user",
                        "content": "That reply was not valid JSON for the requested schema "
                        f"({last_error.what}). Reply again with only the JSON object.",
                    },
                ]
        assert last_error is not None
        self._count(failure=last_error.kind)
        raise last_error

    def map(
        self,
        fn: Callable[[R], Any],
        items: Iterable[R],
        *,
        stage: str = "llm",
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[Any]:
        """Apply `fn` to every item with at most `max_concurrency` in flight. Results keep the
        input order; an item whose call raised gets its exception object (never dropped)."""
        items = list(items)
        results: list[Any] = [None] * len(items)
        tracker = ProgressTracker(stage, len(items), on_progress, should_stop)
        tracker.report("starting")
        stopped = False
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    results[index] = future.result()
                except Exception as exc:  # noqa: BLE001 - kept per item, counted by the caller
                    results[index] = exc
                try:
                    tracker.advance(1)  # the count travels in the event, not its text
                except StoppedError:
                    stopped = True
                    for pending in futures:
                        pending.cancel()
                    break
        if stopped:
            raise StoppedError(f"{stage} was stopped after {tracker.done} of {len(items)} items.")
        return results


def _short_validation(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{len(errors)} error(s); first at '{loc}': {first.get('msg', '')}"


def make_backend(settings: LLMSettings) -> ChatBackend:
    """The backend the settings describe. Never falls back to a cloud model."""
    if settings.backend == "embedded":
        return EmbeddedBackend()
    if settings.backend == "openai":
        return OpenAICompatibleBackend(
            settings.base_url, settings.model, settings.api_key, settings.timeout_s
        )
    raise ConfigError(
        f"Unknown LLM backend {settings.backend!r}.", fix="use 'embedded' or 'openai'"
    )


def make_llm(
    settings: LLMSettings, *, cache_dir: Path | None = None, use_cache: bool = True
) -> LLM:
    """An LLM client for the settings (backend, cache, retries, concurrency)."""
    return LLM(
        make_backend(settings),
        cache_dir=cache_dir,
        use_cache=use_cache,
        max_retries=settings.max_retries,
        max_concurrency=settings.max_concurrency if settings.backend == "openai" else 1,
    )


class _Ping(BaseModel):
    ok: bool


@dataclass(frozen=True)
class ConnectionReport:
    """What "Test connection" shows: success, a message, and the raw reply when parsing failed."""

    ok: bool
    message: str
    raw: str | None = None
    latency_s: float | None = None


def check_connection(settings: LLMSettings, show_reply: bool = True) -> ConnectionReport:
    """Send a tiny JSON request and report whether the reply parses; never raises. With
    `show_reply` False (an address someone typed, on a shared server) the report holds nothing
    the server answered, only what failed and the fix: the app must not become a way to read
    pages that only the server can reach."""
    try:
        llm = make_llm(settings, use_cache=False)
        llm.max_retries = 0
        messages = [
            {
                "role": "user",
                "content": 'Reply with exactly this JSON and nothing else: {"ok": true}',
            }
        ]
        parsed, completion = llm.complete_json(messages, _Ping, max_tokens=20, parse_retries=0)
        return ConnectionReport(
            ok=True,
            message=f"{llm.label} answered in {completion.latency_s:.1f} s with valid JSON.",
            raw=completion.text if show_reply else None,
            latency_s=completion.latency_s,
        )
    except LLMError as exc:
        if not show_reply:
            return ConnectionReport(ok=False, message=str(RagbenchError(exc.what, fix=exc.fix)))
        return ConnectionReport(ok=False, message=str(exc), raw=exc.raw)
    except ConfigError as exc:
        return ConnectionReport(ok=False, message=str(exc))
