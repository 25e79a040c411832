"""Adapters that let ragas 0.4 metrics use our parts: the judge is our `core.llm.client.LLM`, the
embeddings are our sentence-transformers model. Heavy by design: importing this imports ragas.

How a judge call works:
1. A ragas "collections" metric calls `agenerate(prompt, ResponseModel)` (ragas' modern LLM
   interface: one prompt string in, one validated pydantic object out).
2. `RagasJudge` sends the prompt through `LLM.complete` (so every judge call uses our disk cache,
   retries, concurrency limit and token counts), parses it leniently (core.jsonparse), validates it,
   and asks once more with the error attached when it does not validate. Only replies that
   validate are cached, so a retry of a failed judgement asks the judge again.
3. ragas asks for several completions of the same prompt by calling it several times (answer
   relevancy's `strictness`). Each repeat of an identical prompt within one scope gets its own
   `sample` index, so it is a separate single-completion request (works with servers that allow
   only n=1) and is cached separately. Judging repeats use a different `sample_offset`.
4. Every call is recorded in the scope's `JudgeTrace`: calls, cache hits, tokens, and the judge's
   `reason` fields, which the report shows next to each score.

No ragas object here ever builds an OpenAI client: the judge and the embeddings are passed in.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from core.config import apply_offline_env

apply_offline_env()
os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # never telemetry, whatever the environment says

from ragas.embeddings.base import BaseRagasEmbedding  # noqa: E402
from ragas.llms.base import InstructorBaseRagasLLM  # noqa: E402

from core.errors import ConfigError, LLMError  # noqa: E402
from core.llm.backends import Completion  # noqa: E402
from core.llm.client import LLM, request_key  # noqa: E402

T = TypeVar("T", bound=BaseModel)

# Sample indices of one judging repeat: repeat r uses r * SAMPLE_STRIDE + occurrence.
SAMPLE_STRIDE = 100
_REASON_LIMIT = 400  # characters kept per reason


@dataclass
class JudgeTrace:
    """What one scope (one metric on one sample) cost and what the judge said."""

    calls: int = 0  # requests sent to the backend (cache misses)
    cached: int = 0  # replies served from the disk cache
    prompt_tokens: int = 0
    completion_tokens: int = 0
    parse_failures: int = 0  # replies that did not validate (each one asked again or failed)
    samples_used: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, completion: Completion) -> None:
        if completion.cached:
            self.cached += 1
        else:
            self.calls += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens

    def usage(self) -> dict[str, int]:
        """Counts only (no reasons), for usage.json."""
        data = asdict(self)
        data.pop("reasons")
        data.pop("samples_used")
        return data


def _collect_reasons(value: Any, out: list[str]) -> None:
    """Every `reason` string in a parsed reply, with the statement it belongs to when present."""
    if isinstance(value, dict):
        reason = value.get("reason")
        if isinstance(reason, str) and reason.strip():
            subject = value.get("statement") or ""
            verdict = value.get("verdict", value.get("attributed"))
            head = f"{subject[:120]} → {verdict}: " if subject and verdict is not None else ""
            out.append((head + reason.strip())[:_REASON_LIMIT])
        for item in value.values():
            if isinstance(item, dict | list):
                _collect_reasons(item, out)
    elif isinstance(value, list):
        for item in value:
            _collect_reasons(item, out)


class RagasJudge(InstructorBaseRagasLLM):
    """Our LLM as ragas' modern LLM (`generate` / `agenerate` with a response model).

    Args:
        llm: the judge client (cache, retries, concurrency and token counts are its own).
        temperature: sampling temperature of every judge call.
        max_tokens: reply budget per call.
        parse_retries: corrective re-asks when a reply does not validate.
        sample_offset: first `sample` index (repeat r of a judgement uses r * SAMPLE_STRIDE).
        system_prompt: optional system message before ragas' prompt.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        parse_retries: int = 1,
        sample_offset: int = 0,
        system_prompt: str | None = None,
    ) -> None:
        if llm is None:
            raise ConfigError(
                "The RAGAS judge needs an LLM and none was given.",
                fix="pass the judge LLM explicitly (core.llm.client.make_llm(settings)); "
                "nothing falls back to a cloud model",
            )
        self.llm = llm
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.parse_retries = max(0, parse_retries)
        self.sample_offset = sample_offset
        self.system_prompt = system_prompt
        self.trace = JudgeTrace()
        self._occurrences: Counter[str] = Counter()
        self._lock = threading.Lock()

    def scoped(
        self, *, sample_offset: int | None = None, temperature: float | None = None
    ) -> RagasJudge:
        """A fresh judge on the same LLM with its own trace and occurrence counts (one per
        metric-on-sample job, so identical jobs share cache entries)."""
        return RagasJudge(
            self.llm,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens,
            parse_retries=self.parse_retries,
            sample_offset=self.sample_offset if sample_offset is None else sample_offset,
            system_prompt=self.system_prompt,
        )

    def _next_sample(self, messages: Sequence[dict[str, str]]) -> int:
        key = request_key("occurrence", messages, {})
        with self._lock:
            occurrence = self._occurrences[key]
            self._occurrences[key] += 1
        if occurrence >= SAMPLE_STRIDE:
            raise ConfigError(
                f"A judge prompt was repeated more than {SAMPLE_STRIDE} times in one judgement.",
                fix="lower answer relevancy's strictness",
            )
        return self.sample_offset + occurrence

    def generate(self, prompt: str, response_model: type[T]) -> T:
        """One validated reply of `response_model` for ragas' prompt string."""
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        sample = self._next_sample(messages)
        self.trace.samples_used.append(sample)

        def invalid(_: LLMError) -> None:
            self.trace.parse_failures += 1

        parsed, _ = self.llm.complete_json(
            messages,
            response_model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            parse_retries=self.parse_retries,
            sample=sample,
            on_reply=self.trace.add,
            on_invalid=invalid,
            what=f"The judge's reply does not match ragas' {response_model.__name__} schema.",
        )
        _collect_reasons(parsed.model_dump(), self.trace.reasons)
        return parsed

    async def agenerate(self, prompt: str, response_model: type[T]) -> T:
        """Same as `generate`. Scoring runs each job in its own worker thread and event loop,
        so blocking here holds up only that job."""
        return self.generate(prompt, response_model)

    def __repr__(self) -> str:
        return f"RagasJudge({self.llm.label}, t={self.temperature}, offset={self.sample_offset})"


class SentenceTransformerEmbeddings(BaseRagasEmbedding):
    """Our sentence-transformers model as ragas' modern embeddings (answer relevancy, semantic
    similarity). Vectors are L2-normalised, optionally truncated to `dim`, and memoised per text.

    Args:
        model: a SentenceTransformer (or anything with the same `encode`).
        dim: Matryoshka truncation, None for the native dimension.
        prompt: an encode prompt; None embeds plain text, as ragas' own providers do.
        label: a name for manifests.
    """

    def __init__(
        self, model: Any, *, dim: int | None = None, prompt: str | None = None, label: str = ""
    ) -> None:
        if model is None:
            raise ConfigError(
                "The RAGAS embeddings need a sentence-transformers model and none was given.",
                fix="pass the embedding model explicitly; nothing falls back to a cloud model",
            )
        super().__init__(cache=None)
        self.model = model
        self.dim = dim
        self.prompt = prompt
        self.label = label or type(model).__name__
        self.texts_embedded = 0
        self._memo: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        """Embed texts not seen before in one batch; return one vector per text."""
        from core.embeddings import encode_texts

        texts = [str(t) for t in texts]
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
            if todo:
                vectors = encode_texts(
                    self.model, todo, dim=self.dim, prompt=self.prompt
                )  # (n, dim)
                for text, vec in zip(todo, np.asarray(vectors, dtype=np.float64), strict=True):
                    self._memo[text] = vec.tolist()
                self.texts_embedded += len(todo)
            return [self._memo[t] for t in texts]

    def embed_text(self, text: str, **kwargs: Any) -> list[float]:
        return self.embed_texts([text])[0]

    async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
        return self.embed_texts([text])[0]

    async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return self.embed_texts(list(texts))

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbeddings({self.label}, dim={self.dim})"


class WordSequenceSimilarity:
    """A string-similarity measure for ragas' non-LLM context metrics when rapidfuzz (ragas'
    default, normalised Levenshtein) is not installed: difflib's ratio over word sequences.
    Duck-types ragas' SingleTurnMetric the way those metrics call it."""

    name = "difflib_word_ratio"

    async def single_turn_ascore(
        self, sample: Any, callbacks: Any = None, timeout: Any = None
    ) -> float:
        import difflib

        a, b = str(sample.reference or ""), str(sample.response or "")
        if a == b:
            return 1.0
        return difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()


def string_similarity_measure() -> tuple[Any, str]:
    """ragas' own string-similarity measure when rapidfuzz is installed, else the difflib one;
    returns (measure, description) so reports say which one scored."""
    try:
        import rapidfuzz  # noqa: F401
    except ImportError:
        return WordSequenceSimilarity(), "difflib word-sequence ratio (rapidfuzz not installed)"
    from ragas.metrics._string import NonLLMStringSimilarity

    return NonLLMStringSimilarity(), "normalised Levenshtein similarity (rapidfuzz, ragas default)"
