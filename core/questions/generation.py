"""The Questions stage: chunks -> generated questions -> quality gate -> splits -> a qa run.

How a generation run works:
1. `estimate_generation` counts calls and tokens before anything is sent (prompt tokens are
   about characters / 4 of the rendered prompt; cached requests are counted apart).
2. Every chunk gets one call of the typed question prompt (`core.questions.prompts`), parsed as
   structured output with `LLM.complete_json`; concurrency, retries and the disk cache come
   from `core.llm`, so re-running on the same chunks makes no new call.
3. A chunk whose call fails (timeout, unparseable or wrong-schema reply, no questions) is
   recorded as a failure with its reason and raw reply; the other chunks go on.
4. The gate (`core.questions.gate`) accepts or rejects every question with a reason; accepted questions
   beyond N per chunk are rejected as `over_quota`.
5. Chunks are dealt into train/validation/test (`core.questions.splits`), the no-leak check runs, and the
   qa run is written: `qa.jsonl`, `gate_report.json` (counts by reason, failures) and
   `usage.json` (calls, cache hits, tokens, failures).

Review edits never change a run: `save_review` writes a new qa run whose parents are the corpus
and the reviewed run ("source").
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.documents.corpus import Chunk, load_chunks
from core.errors import InputError, LLMError, RagbenchError, StoppedError
from core.llm.client import usage_delta
from core.progress import ProgressCallback, StopCheck
from core.questions.dataset import QAItem
from core.questions.gate import GateConfig, apply_gate, gate_counts, tie_near_duplicates
from core.questions.prompts import (
    ANSWERABILITY_PROMPT,
    QUESTION_PROMPT,
    AnswerabilityInput,
    GeneratedQuestions,
    QuestionPromptInput,
    coerce_questions,
)
from core.questions.qa_runs import GATE_REPORT_FILE, USAGE_FILE, _summary, write_qa_artifacts
from core.questions.splits import SplitConfig, assign_splits, check_no_leak
from core.runs.folders import Run, create_run
from core.runs.guard import stage_run

if TYPE_CHECKING:
    from core.llm.client import LLM


CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text


TOKENS_PER_MESSAGE = 4  # chat-template framing per message


QUESTION_TOKENS = 24  # a question as JSON, about 15 words


ANSWER_TOKENS = 32


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate: N questions per chunk, optionally from a seeded sample of chunks."""

    n_per_chunk: int = 2
    max_chunks: int = 0  # 0 = every chunk
    with_answers: bool = True
    temperature: float = 0.0
    seed: int = 42
    gate: GateConfig = field(default_factory=GateConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.n_per_chunk <= 20:
            raise InputError(
                f"Questions per chunk must be 1 to 20, not {self.n_per_chunk}.",
                fix="use 1 to 5 for most corpora",
            )
        if self.max_chunks < 0:
            raise InputError(f"Max chunks must be 0 (all) or more, not {self.max_chunks}.")

    @property
    def max_tokens(self) -> int:
        """Reply budget: room for N questions (and answers) with slack for JSON framing."""
        per_question = 2 * (QUESTION_TOKENS + (ANSWER_TOKENS if self.with_answers else 0))
        return 32 + self.n_per_chunk * per_question

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_tokens"] = self.max_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        """The config `to_dict` wrote (a qa run's manifest), derived fields ignored."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["gate"] = GateConfig.from_dict(dict(data.get("gate") or {}))
        fields["split"] = SplitConfig.from_dict(dict(data.get("split") or {}))
        return cls(**fields)


@dataclass(frozen=True)
class Estimate:
    """Calls and tokens a generation run will cost, known before it starts."""

    n_chunks: int
    calls: int  # generation calls not answered from the cache
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    answerability_calls: int = 0
    reply_budget_tokens: int = 0  # every reply at its max_tokens: what a rambling model uses

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def describe(self) -> str:
        """One line for people."""
        text = (
            f"{self.n_chunks} chunk(s): {self.calls} LLM call(s)"
            + (f" ({self.cached_calls} more already cached)" if self.cached_calls else "")
            + f", about {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion "
            "tokens"
        )
        if self.answerability_calls:
            text += f"; up to {self.answerability_calls} answerability check call(s) included"
        return text

    def seconds(self, prompt_per_s: float, completion_per_s: float, start_s: float = 0.0) -> float:
        """Wall time at these token rates with every reply at its budget (a small model fills
        it), plus `start_s` to load the model; 0 when every call is cached."""
        if not self.calls:
            return 0.0
        replies = self.reply_budget_tokens or self.completion_tokens
        return start_s + self.prompt_tokens / prompt_per_s + replies / completion_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk whose LLM call gave no usable questions, and why."""

    chunk_id: str
    kind: str
    message: str
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuestionStageResult:
    """A finished generation run."""

    run: Run
    items: list[QAItem]
    gate: dict[str, Any]
    failures: list[ChunkFailure]
    usage: dict[str, Any]
    estimate: Estimate

    @property
    def accepted(self) -> list[QAItem]:
        return [i for i in self.items if i.status == "accepted"]


def select_chunks(chunks: Sequence[Chunk], max_chunks: int = 0, seed: int = 42) -> list[Chunk]:
    """All chunks, or a seeded sample of `max_chunks` of them kept in corpus order, drawn from
    the chunks that are not a licence page or a table of contents while enough of them are."""
    from core.questions.structure import looks_like_boilerplate

    chunks = list(chunks)
    if not max_chunks or max_chunks >= len(chunks):
        return chunks
    usable = [c for c in chunks if not looks_like_boilerplate(c.text)]
    pool = usable if len(usable) >= max_chunks else chunks
    picked = sorted(random.Random(seed).sample(range(len(pool)), max_chunks))
    return [pool[i] for i in picked]


def question_messages(chunk: Chunk, config: GenerationConfig) -> list[dict[str, str]]:
    """The messages of the question prompt for one chunk."""
    data = QuestionPromptInput(
        passage=chunk.text, n_questions=config.n_per_chunk, with_answers=config.with_answers
    )
    return QUESTION_PROMPT.messages(data)


def _prompt_tokens(messages: Sequence[dict[str, str]]) -> int:
    chars = sum(len(m["content"]) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def _cache_params(config: GenerationConfig) -> dict[str, Any]:
    """The request parameters `LLM.complete_json` keys its cache with."""
    return {
        "t": config.temperature,
        "max": config.max_tokens,
        "schema": GeneratedQuestions.model_json_schema(),
        "sample": 0,
    }


def estimate_generation(
    chunks: Sequence[Chunk], config: GenerationConfig | None = None, llm: LLM | None = None
) -> Estimate:
    """Calls and tokens before starting. With `llm`, requests already in its disk cache are
    counted as cached (they cost nothing). Answerability checks, when on, assume every
    question reaches them (an upper bound)."""
    config = config or GenerationConfig()
    from core.llm.client import request_key

    calls = cached = prompt = completion = budget = 0
    params = _cache_params(config)
    for chunk in chunks:
        messages = question_messages(chunk, config)
        if llm is not None and llm.cache is not None:
            if llm.cache.get(request_key(llm.backend.identity, messages, params)) is not None:
                cached += 1
                continue
        calls += 1
        prompt += _prompt_tokens(messages)
        # About half the reply budget is used in practice (N questions of ~15 words).
        completion += config.max_tokens // 2
        budget += config.max_tokens
    checks = 0
    if config.gate.check_answerability:
        for chunk in chunks:
            data = AnswerabilityInput(question="x" * 60, passage=chunk.text)
            per_check = _prompt_tokens(ANSWERABILITY_PROMPT.messages(data))
            checks += config.n_per_chunk
            prompt += per_check * config.n_per_chunk
            completion += 20 * config.n_per_chunk
            budget += 20 * config.n_per_chunk
    return Estimate(
        n_chunks=len(chunks),
        calls=calls + checks,
        cached_calls=cached,
        prompt_tokens=prompt,
        completion_tokens=completion,
        answerability_calls=checks,
        reply_budget_tokens=budget,
    )


def question_id(chunk_id: str, index: int, question: str) -> str:
    """A deterministic id for a generated question."""
    digest = hashlib.sha256(f"{chunk_id}\x1f{index}\x1f{question}".encode()).hexdigest()[:12]
    return f"q_{digest}"


def _generate_for_chunk(llm: LLM, chunk: Chunk, config: GenerationConfig) -> list[QAItem]:
    parsed, completion = llm.complete_json(
        question_messages(chunk, config),
        GeneratedQuestions,
        coerce=coerce_questions,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )
    if not parsed.questions:
        raise LLMError(
            "The LLM reply held no questions.",
            found=completion.text[:200],
            kind="no_questions",
            raw=completion.text,
        )
    # A reply with a leading preamble item can hold more than N; the gate judges up to 2N.
    kept = parsed.questions[: 2 * config.n_per_chunk]
    return [
        QAItem(
            id=question_id(chunk.id, index, qa.question),
            question=qa.question,
            chunk_id=chunk.id,
            reference_answer=(qa.answer or None) if config.with_answers else None,
            origin="generated",
            meta={"index": index, "model": completion.model, "cached": completion.cached},
        )
        for index, qa in enumerate(kept)
    ]


def _failure_of(chunk: Chunk, exc: BaseException) -> ChunkFailure:
    if isinstance(exc, LLMError):
        return ChunkFailure(chunk.id, exc.kind, str(exc), (exc.raw or "")[:2000] or None)
    return ChunkFailure(chunk.id, type(exc).__name__, f"{type(exc).__name__}: {exc}")


def generate_questions(
    chunks: Sequence[Chunk],
    llm: LLM,
    config: GenerationConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[list[QAItem], list[ChunkFailure]]:
    """Ask the LLM for N questions per chunk. Returns the raw (ungated) items and the chunks
    that failed; one failing chunk never stops the others."""
    config = config or GenerationConfig()
    results = llm.map(
        lambda chunk: _generate_for_chunk(llm, chunk, config),
        chunks,
        stage="generating questions",
        on_progress=on_progress,
        should_stop=should_stop,
    )
    items: list[QAItem] = []
    failures: list[ChunkFailure] = []
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            failures.append(_failure_of(chunk, result))
        else:
            items.extend(result)
    return items, failures


def cap_per_chunk(items: Sequence[QAItem], n: int) -> list[QAItem]:
    """Reject accepted questions beyond the first `n` of each chunk as `over_quota`."""
    seen: Counter[str] = Counter()
    out: list[QAItem] = []
    for item in items:
        if item.status == "accepted" and item.origin == "generated":
            seen[item.chunk_id] += 1
            if seen[item.chunk_id] > n:
                meta = {**item.meta, "reason_text": f"chunk already has {n} accepted question(s)"}
                item = item.model_copy(
                    update={"status": "rejected", "reason": "over_quota", "meta": meta}
                )
        out.append(item)
    return out


def generate_question_run(
    corpus_run_id: str,
    llm: LLM,
    config: GenerationConfig | None = None,
    *,
    model: Any = None,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> QuestionStageResult:
    """Generate, gate and split questions for a corpus run; save them as a new qa run.

    `model` is the loaded embedding model for the near-duplicate check. Raises LLMError when
    every chunk failed (the run is then marked failed with the reasons kept)."""
    run = create_question_run(corpus_run_id, llm, config, name=name)
    return fill_question_run(
        run, llm, model=model, on_progress=on_progress, should_stop=should_stop
    )


def create_question_run(
    corpus_run_id: str, llm: LLM, config: GenerationConfig | None = None, *, name: str = ""
) -> Run:
    """The qa run a generation fills (status pending): its config, the chosen chunks and the
    estimate. A corpus without chunks is refused before any run exists."""
    config = config or GenerationConfig()
    chunks = select_chunks(load_chunks(corpus_run_id), config.max_chunks, config.seed)
    if not chunks:
        raise InputError(f"Corpus run {corpus_run_id} has no chunks.", fix="rebuild the corpus")
    estimate = estimate_generation(chunks, config, llm)
    return create_run(
        "qa",
        name=name or f"Generated: {config.n_per_chunk} per chunk, {len(chunks)} chunks",
        config={
            "source": "generated",
            "generation": config.to_dict(),
            "llm": {"label": llm.label, "identity": llm.backend.identity},
            "prompt": {"name": QUESTION_PROMPT.name, "instruction": QUESTION_PROMPT.instruction},
            "n_chunks": len(chunks),
            "estimate": estimate.to_dict(),
        },
        parents={"corpus": corpus_run_id},
    )


def fill_question_run(
    run: Run,
    llm: LLM,
    *,
    model: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> QuestionStageResult:
    """Generate, gate and split the questions of a qa run made by `create_question_run`."""
    config = GenerationConfig.from_dict(run.manifest.config["generation"])
    corpus_run_id = run.manifest.parents["corpus"]
    chunks = select_chunks(load_chunks(corpus_run_id), config.max_chunks, config.seed)
    estimate = estimate_generation(chunks, config, llm)
    run.set_status("running")
    before = llm.usage.to_dict()
    failures: list[ChunkFailure] = []

    def save_failures(exc: BaseException) -> None:
        if isinstance(exc, RagbenchError) and not isinstance(exc, StoppedError):
            _write_failure_report(run, failures, llm, before, estimate)

    with stage_run(run, on_failure=save_failures):
        raw_items, failures = generate_questions(
            chunks, llm, config, on_progress=on_progress, should_stop=should_stop
        )
        if not raw_items:
            kinds = Counter(f.kind for f in failures)
            first = failures[0] if failures else None
            raise LLMError(
                f"No questions came back from any of the {len(chunks)} chunk(s).",
                found=", ".join(f"{n} {k}" for k, n in kinds.items())
                + (f"; first: {first.message[:300]}" if first else ""),
                fix="check the LLM connection (sidebar: Test connection) or use a model that "
                "follows JSON instructions",
                kind=kinds.most_common(1)[0][0] if kinds else "error",
                raw=first.raw if first else None,
            )
        texts = {c.id: c.text for c in chunks}
        report = apply_gate(
            raw_items,
            texts,
            config.gate,
            model=model,
            llm=llm,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        items = cap_per_chunk(report.items, config.n_per_chunk)
        tied = None
        if model is not None:
            items, tied = tie_near_duplicates(items, model, config.gate.near_duplicate_threshold)
        items = assign_splits(items, config.split)
        check_no_leak(items)
    usage = {
        **usage_delta(before, llm.usage.to_dict()),
        "label": llm.label,
        "estimate": estimate.to_dict(),
    }
    gate_report = {
        **report.to_dict(),
        **gate_counts(items),
        **shortfall(raw_items, chunks, failures, config.n_per_chunk),
        "failed_chunks": len(failures),
        "failures_by_kind": dict(Counter(f.kind for f in failures)),
        "failures": [f.to_dict() for f in failures],
        "near_duplicates_tied": tied,
    }
    write_qa_artifacts(run, items, gate_report, usage, config.split)
    run.set_status(
        "done",
        **_summary(items),
        n_failed_chunks=len(failures),
        n_asked=gate_report["asked"],
        n_returned=gate_report["returned"],
        n_short_chunks=gate_report["short_chunks"],
        total_tokens=usage["total_tokens"],
    )
    return QuestionStageResult(
        run=run, items=items, gate=gate_report, failures=failures, usage=usage, estimate=estimate
    )


def shortfall(
    raw_items: Sequence[QAItem], chunks: Sequence[Chunk], failures: Sequence[ChunkFailure], n: int
) -> dict[str, int]:
    """What was asked of the LLM against what came back: `asked` (n per chunk), `returned`
    (questions in the replies, before the gate), and `short_chunks`, the chunks that answered
    with fewer than n (a failed chunk counts as failed, not short)."""
    got = Counter(i.chunk_id for i in raw_items)
    failed = {f.chunk_id for f in failures}
    short = sum(1 for c in chunks if c.id not in failed and got[c.id] < n)
    return {"asked": n * len(chunks), "returned": len(raw_items), "short_chunks": short}


def _write_failure_report(
    run: Run, failures: list[ChunkFailure], llm: LLM, before: dict[str, Any], estimate: Estimate
) -> None:
    run.write_json(
        GATE_REPORT_FILE,
        {
            "total": 0,
            "accepted": 0,
            "rejected": 0,
            "by_reason": {},
            "failed_chunks": len(failures),
            "failures_by_kind": dict(Counter(f.kind for f in failures)),
            "failures": [f.to_dict() for f in failures],
        },
    )
    usage = {
        **usage_delta(before, llm.usage.to_dict()),
        "label": llm.label,
        "estimate": estimate.to_dict(),
    }
    run.write_json(USAGE_FILE, usage)
