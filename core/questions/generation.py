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
from core.errors import InputError, LLMError, RagbenchError, RunError, StoppedError
from core.progress import ProgressCallback, StopCheck
from core.questions.dataset import QAItem, load_qa, save_qa
from core.questions.gate import REASONS, GateConfig, apply_gate, gate_counts
from core.questions.prompts import (
    ANSWERABILITY_PROMPT,
    QUESTION_PROMPT,
    AnswerabilityInput,
    GeneratedQuestions,
    QuestionPromptInput,
    coerce_questions,
)
from core.questions.splits import SplitConfig, assign_splits, check_no_leak, split_counts
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import discard_on_failure, stage_run

if TYPE_CHECKING:
    from core.llm.client import LLM

GATE_REPORT_FILE = "gate_report.json"
USAGE_FILE = "usage.json"
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


@dataclass(frozen=True)
class Estimate:
    """Calls and tokens a generation run will cost, known before it starts."""

    n_chunks: int
    calls: int  # generation calls not answered from the cache
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    answerability_calls: int = 0

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


# --------------------------------------------------------------------------- planning


def select_chunks(chunks: Sequence[Chunk], max_chunks: int = 0, seed: int = 42) -> list[Chunk]:
    """All chunks, or a seeded sample of `max_chunks` of them kept in corpus order."""
    chunks = list(chunks)
    if not max_chunks or max_chunks >= len(chunks):
        return chunks
    picked = sorted(random.Random(seed).sample(range(len(chunks)), max_chunks))
    return [chunks[i] for i in picked]


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

    calls = cached = prompt = completion = 0
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
    checks = 0
    if config.gate.check_answerability:
        for chunk in chunks:
            data = AnswerabilityInput(question="x" * 60, passage=chunk.text)
            per_check = _prompt_tokens(ANSWERABILITY_PROMPT.messages(data))
            checks += config.n_per_chunk
            prompt += per_check * config.n_per_chunk
            completion += 20 * config.n_per_chunk
    return Estimate(
        n_chunks=len(chunks),
        calls=calls + checks,
        cached_calls=cached,
        prompt_tokens=prompt,
        completion_tokens=completion,
        answerability_calls=checks,
    )


# --------------------------------------------------------------------------- generation


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


def _usage_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            old = before.get(key) or {}
            out[key] = {k: v - old.get(k, 0) for k, v in value.items() if v - old.get(k, 0)}
        else:
            out[key] = value - before.get(key, 0)
    out["total_tokens"] = out.get("prompt_tokens", 0) + out.get("completion_tokens", 0)
    return out


# --------------------------------------------------------------------------- qa runs


def write_qa_artifacts(
    run: Run,
    items: Sequence[QAItem],
    gate_report: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> None:
    """Write qa.jsonl, gate_report.json and usage.json of a qa run."""
    save_qa(run, list(items))
    report = {**(gate_report or {}), **gate_counts(items)}
    report.setdefault("reasons", {k: v for k, v in REASONS.items() if k in report["by_reason"]})
    report["splits"] = split_counts(items)
    run.write_json(GATE_REPORT_FILE, report)
    run.write_json(
        USAGE_FILE,
        usage
        or {
            "calls": 0,
            "cached": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "failures": {},
        },
    )


def _summary(items: Sequence[QAItem]) -> dict[str, Any]:
    counts = gate_counts(items)
    accepted = [i for i in items if i.status == "accepted"]
    return {
        "n_items": counts["total"],
        "n_accepted": counts["accepted"],
        "n_rejected": counts["rejected"],
        "n_chunks": len({i.chunk_id for i in accepted}),
        "n_test": sum(i.split == "test" for i in accepted),
        "n_multi_gold": sum(len(i.gold_ids) > 1 for i in accepted),
    }


def save_qa_run(
    items: Sequence[QAItem],
    corpus_run_id: str,
    *,
    name: str = "",
    config: dict[str, Any] | None = None,
    gate_report: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    source_run_id: str | None = None,
) -> Run:
    """A finished qa run on a corpus (and, for review edits, the qa run it came from). A leaking
    dataset is refused before anything is written; a failed write leaves no run behind."""
    accepted = [i for i in items if i.status == "accepted"]
    texts = None
    if any(i.evidence for i in accepted):
        texts = {c.id: c.text for c in load_chunks(corpus_run_id)}
    check_no_leak(accepted, texts)
    parents = {"corpus": corpus_run_id}
    if source_run_id:
        parents["source"] = source_run_id
    with discard_on_failure() as created:
        run = create_run("qa", name=name, config=config or {}, parents=parents)
        created.append(run)
        write_qa_artifacts(run, items, gate_report, usage)
        run.set_status("done", **_summary(items))
    return run


def corpus_of(qa_run: Run | str) -> str:
    """The corpus run id a qa run was made on."""
    run = load_run(qa_run) if isinstance(qa_run, str) else qa_run
    corpus = run.manifest.parents.get("corpus")
    if not corpus:
        raise RunError(f"QA run {run.id} names no corpus run.", fix="re-create it from a corpus")
    return corpus


def read_gate_report(run: Run | str) -> dict[str, Any]:
    """The gate report of a qa run (counts computed from qa.jsonl when the file is missing)."""
    run = load_run(run) if isinstance(run, str) else run
    if run.artifact(GATE_REPORT_FILE).exists():
        return run.read_json(GATE_REPORT_FILE)
    return gate_counts(load_qa(run, accepted_only=False))


def read_usage(run: Run | str) -> dict[str, Any]:
    """The LLM usage of a qa run ({} when it made no calls)."""
    run = load_run(run) if isinstance(run, str) else run
    return run.read_json(USAGE_FILE) if run.artifact(USAGE_FILE).exists() else {}


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
    config = config or GenerationConfig()
    chunks = select_chunks(load_chunks(corpus_run_id), config.max_chunks, config.seed)
    if not chunks:
        raise InputError(f"Corpus run {corpus_run_id} has no chunks.", fix="rebuild the corpus")
    estimate = estimate_generation(chunks, config, llm)
    run = create_run(
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
        items = assign_splits(items, config.split)
        check_no_leak(items)
    usage = {
        **_usage_delta(before, llm.usage.to_dict()),
        "label": llm.label,
        "estimate": estimate.to_dict(),
    }
    gate_report = {
        **report.to_dict(),
        **gate_counts(items),
        "failed_chunks": len(failures),
        "failures_by_kind": dict(Counter(f.kind for f in failures)),
        "failures": [f.to_dict() for f in failures],
    }
    write_qa_artifacts(run, items, gate_report, usage)
    run.set_status(
        "done",
        **_summary(items),
        n_failed_chunks=len(failures),
        total_tokens=usage["total_tokens"],
    )
    return QuestionStageResult(
        run=run, items=items, gate=gate_report, failures=failures, usage=usage, estimate=estimate
    )


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
        **_usage_delta(before, llm.usage.to_dict()),
        "label": llm.label,
        "estimate": estimate.to_dict(),
    }
    run.write_json(USAGE_FILE, usage)


# --------------------------------------------------------------------------- review

REVIEW_COLUMNS = (
    "id",
    "question",
    "status",
    "reason",
    "chunk_id",
    "split",
    "reference_answer",
    "origin",
)
_STATUS_WORDS = {
    "accepted": "accepted",
    "accept": "accepted",
    "approve": "accepted",
    "approved": "accepted",
    "rejected": "rejected",
    "reject": "rejected",
}


def review_rows(items: Sequence[QAItem]) -> list[dict[str, Any]]:
    """Rows for the review grid (one per item, REVIEW_COLUMNS)."""
    return [
        {
            "id": i.id,
            "question": i.question,
            "status": i.status,
            "reason": i.reason,
            "chunk_id": i.chunk_id,
            "split": i.split or "",
            "reference_answer": i.reference_answer or "",
            "origin": i.origin,
        }
        for i in items
    ]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def apply_review(
    items: Sequence[QAItem], rows: Sequence[dict[str, Any]], chunk_ids: set[str]
) -> list[QAItem]:
    """The items after a review: edited questions, status changes (approve overrules the gate,
    reject records `reviewer`), new rows added by hand (origin "manual"), deleted rows dropped.

    Raises InputError naming the rows that lack a question or point at an unknown chunk."""
    by_id = {i.id: i for i in items}
    out: list[QAItem] = []
    problems: list[str] = []
    for number, row in enumerate(rows, start=1):
        question = _text(row.get("question"))
        chunk_id = _text(row.get("chunk_id"))
        item_id = _text(row.get("id"))
        status_word = _text(row.get("status")).lower() or "accepted"
        if not question and not chunk_id and item_id not in by_id:
            continue  # an empty row the grid added
        status = _STATUS_WORDS.get(status_word)
        if status is None:
            problems.append(f"row {number}: status {status_word!r} (use accepted or rejected)")
            continue
        if not question:
            problems.append(f"row {number}: no question")
            continue
        original = by_id.get(item_id)
        # A rejected item may keep a chunk the corpus lacks (e.g. a quote found nowhere).
        unchanged_rejected = (
            original is not None and chunk_id == original.chunk_id and status == "rejected"
        )
        if chunk_id not in chunk_ids and not unchanged_rejected:
            problems.append(
                f"row {number}: chunk id {chunk_id or '(empty)'!r} is not in the corpus"
            )
            continue
        answer = _text(row.get("reference_answer")) or None
        if original is None:
            out.append(
                QAItem(
                    id=f"m_{hashlib.sha256(f'{chunk_id}|{question}'.encode()).hexdigest()[:12]}",
                    question=question,
                    chunk_id=chunk_id,
                    status=status,  # type: ignore[arg-type]
                    reason="reviewer" if status == "rejected" else "",
                    reference_answer=answer,
                    origin="manual",
                    meta={"reviewed": True},
                )
            )
            continue
        meta = dict(original.meta)
        update: dict[str, Any] = {"reference_answer": answer}
        if question != original.question:
            meta.setdefault("before_edit", original.question)
            meta["edited"] = True
            update["question"] = question
        if chunk_id != original.chunk_id:
            # The evidence's gold and linked chunks belonged to the old chunk: a moved question
            # is relevant to the chunk the reviewer chose only.
            meta["moved_from_chunk"] = original.chunk_id
            update.update(chunk_id=chunk_id, split=None, gold_chunk_ids=[], linked_chunk_ids=[])
        if status != original.status:
            meta["reviewed"] = True
            if status == "accepted":
                meta["overruled"] = original.reason
                update["reason"] = ""
                meta.pop("reason_text", None)
            else:
                update["reason"] = "reviewer"
                meta["reason_text"] = REASONS["reviewer"]
            update["status"] = status
        update["meta"] = meta
        out.append(original.model_copy(update=update))
    if problems:
        raise InputError(
            f"{len(problems)} review row(s) cannot be saved.",
            found="; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""),
            fix="give every row a question and a chunk id from this corpus",
        )
    ids = Counter(i.id for i in out)
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        raise InputError("Review rows repeat item ids.", found=", ".join(duplicated[:5]))
    return out


def save_review(source_run_id: str, rows: Sequence[dict[str, Any]], *, name: str = "") -> Run:
    """Save review edits of a qa run as a new qa run (parents: corpus and "source").

    Chunks keep their split; chunks new to the set are dealt with the source run's split
    config."""
    source = load_run(source_run_id)
    corpus_id = corpus_of(source)
    chunk_ids = {c.id for c in load_chunks(corpus_id)}
    original = load_qa(source, accepted_only=False)
    items = apply_review(original, rows, chunk_ids)
    if not items:
        raise InputError("The review leaves no questions.", fix="keep or add at least one row")
    split_cfg = SplitConfig.from_dict(
        source.manifest.config.get("split")
        or source.manifest.config.get("generation", {}).get("split")
        or {}
    )
    items = assign_splits(items, split_cfg, keep_existing=True)
    before = {i.id: i for i in original}
    edited = sum(1 for i in items if i.meta.get("edited"))
    added = sum(1 for i in items if i.id not in before)
    changed = sum(1 for i in items if i.id in before and before[i.id].status != i.status)
    return save_qa_run(
        items,
        corpus_id,
        name=name or f"Reviewed: {source.manifest.name}"[:120],
        config={
            "source": "review",
            "reviewed_run": source.id,
            "split": split_cfg.to_dict(),
            "edits": {
                "edited": edited,
                "added": added,
                "status_changed": changed,
                "removed": len(set(before) - {i.id for i in items}),
            },
        },
        gate_report={"notes": [f"reviewed from {source.id}; reviewer decisions are final"]},
        source_run_id=source.id,
    )
