"""RAGAS scoring of rag runs: judged and judge-free metrics, with every failure counted.

How it works:
1. Each (retriever, sample, metric, repeat) is one job. Jobs run concurrently through the judge's
   `LLM.map` (its concurrency limit, progress and stop); each job runs one ragas 0.4 metric in its
   own event loop with a fresh `RagasJudge` scope (core.rag.judges), so its calls, tokens and
   the judge's reasons are recorded per job.
2. Metrics (ragas' own names and implementations):
   - judged: faithfulness, answer_relevancy, context_precision, context_recall and, when the
     question has a reference answer, factual_correctness;
   - judge-free: non_llm_context_precision_with_reference, non_llm_context_recall (string
     similarity of each retrieved chunk to the gold chunk), id_based_context_precision,
     id_based_context_recall (chunk ids), and, with a reference answer, semantic_similarity
     (embeddings only).
   context_precision / context_recall compare against the reference answer when there is one,
   else against the gold chunk's text (recorded per row in `reference_source`).
3. A job that fails (timeout, 429, unparseable or invalid JSON, refusal, NaN, no response) keeps
   its row with value NaN, status "failed" and the reason. Summaries report the mean over the
   successful samples *and* the failure count by reason, never a silently smaller average.
   `retry_failed` re-scores only the failed rows into a new run, merged with the rest.
4. `repeats` > 1 judges every judged metric k times with different `sample` indices (so the cache
   does not hand back the same reply) and reports the spread of the per-repeat means.
5. Saved as a `ragas_eval` run: scores.csv, summary.json (per retriever per metric: mean,
   bootstrap CI, n_ok, failures by reason, repeat spread; paired deltas vs base), usage.json.

ragas is imported inside functions so importing this module stays light.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, LLMError, StoppedError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.rag.answering import RagSample
from core.rag.metrics import METRICS, _as_embeddings, check_components

if TYPE_CHECKING:
    from core.llm.client import LLM
    from core.rag.metrics import RagasConfig


@dataclass(frozen=True)
class Job:
    retriever: str
    sample: RagSample
    metric: str
    repeat: int


@dataclass
class ScoreRow:
    """One judgement: a metric on one sample of one retriever (one repeat)."""

    retriever: str
    sample_id: str
    metric: str
    repeat: int = 0
    value: float = math.nan
    status: str = "ok"  # ok | failed | skipped
    error: str = ""  # the failure reason: timeout, rate_limit, parse, schema, refused, nan, ...
    detail: str = ""  # the error message
    reason: str = ""  # the judge's reasons, when it gave any
    reference_source: str = ""  # answer | gold_chunk (context precision/recall)
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _reference_for_context(sample: RagSample) -> tuple[str, str]:
    if sample.reference:
        return sample.reference, "answer"
    return (sample.reference_contexts[0] if sample.reference_contexts else ""), "gold_chunk"


class _Scorer:
    """Builds ragas metric objects and scores jobs (one instance per scoring pass)."""

    def __init__(self, judge: LLM | None, embeddings: Any, config: RagasConfig) -> None:
        from core.rag.judges import RagasJudge, string_similarity_measure

        self.config = config
        self.embeddings = _as_embeddings(embeddings)
        self.judge = (
            RagasJudge(
                judge,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                parse_retries=config.parse_retries,
            )
            if judge is not None
            else None
        )
        self.measure, self.measure_label = string_similarity_measure()

    def _metric(self, name: str, judge: Any) -> Any:
        from ragas.metrics.collections import (
            AnswerRelevancy,
            ContextPrecisionWithReference,
            ContextRecall,
            FactualCorrectness,
            Faithfulness,
            SemanticSimilarity,
        )

        if name == "faithfulness":
            return Faithfulness(llm=judge)
        if name == "answer_relevancy":
            return AnswerRelevancy(
                llm=judge, embeddings=self.embeddings, strictness=self.config.strictness
            )
        if name == "context_precision":
            return ContextPrecisionWithReference(llm=judge, name="context_precision")
        if name == "context_recall":
            return ContextRecall(llm=judge)
        if name == "factual_correctness":
            return FactualCorrectness(llm=judge)
        if name == "semantic_similarity":
            return SemanticSimilarity(embeddings=self.embeddings)
        return self._legacy_metric(name)

    def _legacy_metric(self, name: str) -> Any:
        # ragas 0.4.3 has these only in its single-turn (legacy) API; they need no LLM.
        from ragas.metrics._context_precision import (
            IDBasedContextPrecision,
            NonLLMContextPrecisionWithReference,
        )
        from ragas.metrics._context_recall import IDBasedContextRecall, NonLLMContextRecall

        threshold = self.config.string_threshold
        if name == "non_llm_context_precision_with_reference":
            return NonLLMContextPrecisionWithReference(
                distance_measure=self.measure, threshold=threshold
            )
        if name == "non_llm_context_recall":
            return NonLLMContextRecall(_distance_measure=self.measure, threshold=threshold)
        if name == "id_based_context_precision":
            return IDBasedContextPrecision()
        if name == "id_based_context_recall":
            return IDBasedContextRecall()
        raise ConfigError(f"Unknown RAGAS metric {name!r}.")

    async def _ascore(self, metric: Any, name: str, s: RagSample) -> float:
        from ragas.dataset_schema import SingleTurnSample

        reference, _ = _reference_for_context(s)
        if name == "faithfulness":
            result = await metric.ascore(
                user_input=s.user_input,
                response=s.response,
                retrieved_contexts=s.retrieved_contexts,
            )
        elif name == "answer_relevancy":
            result = await metric.ascore(user_input=s.user_input, response=s.response)
        elif name in ("context_precision", "context_recall"):
            result = await metric.ascore(
                user_input=s.user_input,
                reference=reference,
                retrieved_contexts=s.retrieved_contexts,
            )
        elif name in ("factual_correctness", "semantic_similarity"):
            result = await metric.ascore(response=s.response, reference=s.reference or "")
        else:
            sample = SingleTurnSample(
                user_input=s.user_input,
                retrieved_contexts=s.retrieved_contexts,
                reference_contexts=s.reference_contexts,
                retrieved_context_ids=s.retrieved_ids,
                reference_context_ids=s.gold_ids,
            )
            return float(await metric.single_turn_ascore(sample))
        return float(result.value)

    def score(self, job: Job) -> ScoreRow:
        """Score one job; failures become rows with a reason, never exceptions."""
        spec = METRICS[job.metric]
        s = job.sample
        row = ScoreRow(job.retriever, s.id, job.metric, job.repeat)
        if job.metric in ("context_precision", "context_recall"):
            row.reference_source = _reference_for_context(s)[1]
        if spec.reference_answer and not s.reference:
            return _skip(row, "no reference answer")
        if spec.needs_response and not s.response.strip():
            why = f"no answer was generated ({s.error_kind})" if s.error else "the answer is empty"
            return _fail(row, "no_response", why)
        if spec.needs_contexts and not s.retrieved_contexts:
            return _fail(row, "no_contexts", "the retriever returned no passages")
        if job.metric.startswith(("non_llm", "id_based")) and not s.reference_contexts:
            return _fail(row, "no_gold", f"the gold chunk {s.gold_chunk_id} is not in the corpus")
        judge = None
        if spec.needs_llm:
            from core.rag.judges import SAMPLE_STRIDE

            assert self.judge is not None
            temperature = (
                self.config.relevancy_temperature
                if job.metric == "answer_relevancy" and self.config.strictness > 1
                else None
            )
            judge = self.judge.scoped(
                sample_offset=job.repeat * SAMPLE_STRIDE, temperature=temperature
            )
        try:
            metric = self._metric(job.metric, judge)
            value = asyncio.run(self._ascore(metric, job.metric, s))
        except LLMError as exc:
            _fail(row, exc.kind or "llm_error", str(exc))
        except StoppedError:
            raise
        except (ValueError, AssertionError) as exc:
            _fail(row, "invalid_input", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any ragas failure is one failed judgement
            _fail(row, "error", f"{type(exc).__name__}: {exc}")
        else:
            if value is None or not math.isfinite(value):
                _fail(row, "nan", "the metric returned NaN (e.g. the judge found no statements)")
            else:
                row.value = float(value)
        if judge is not None:
            trace = judge.trace
            row.calls, row.cached = trace.calls, trace.cached
            row.prompt_tokens, row.completion_tokens = trace.prompt_tokens, trace.completion_tokens
            row.reason = " | ".join(trace.reasons)[:2000]
        return row


def _fail(row: ScoreRow, error: str, detail: str) -> ScoreRow:
    row.status, row.error, row.detail, row.value = "failed", error, detail[:1000], math.nan
    return row


def _skip(row: ScoreRow, detail: str) -> ScoreRow:
    row.status, row.error, row.detail, row.value = "skipped", "not_applicable", detail, math.nan
    return row


def plan_jobs(samples: Mapping[str, Sequence[RagSample]], config: RagasConfig) -> list[Job]:
    """Every (retriever, sample, metric, repeat) to score; judge-free metrics once."""
    jobs = []
    for retriever, items in samples.items():
        for sample in items:
            for metric in config.metrics:
                repeats = config.repeats if METRICS[metric].needs_llm else 1
                jobs.extend(Job(retriever, sample, metric, r) for r in range(repeats))
    return jobs


def score_jobs(
    jobs: Sequence[Job],
    *,
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[list[ScoreRow], dict[str, Any]]:
    """Score jobs concurrently (through the judge's concurrency limit); returns the rows and
    what the pass used (judge tokens per metric, embeddings, string measure)."""
    check_components(config, judge, embeddings)
    scorer = _Scorer(judge, embeddings, config)
    emb_before = getattr(scorer.embeddings, "texts_embedded", 0)
    started = time.monotonic()
    if judge is not None:
        results = judge.map(
            scorer.score, jobs, stage="judging", on_progress=on_progress, should_stop=should_stop
        )
    else:
        tracker = ProgressTracker("scoring", len(jobs), on_progress, should_stop)
        results = []
        for job in jobs:
            results.append(scorer.score(job))
            tracker.advance(1)  # the count travels in the event, not its text
    rows = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, StoppedError):
                raise result
            result = _fail(
                ScoreRow(job.retriever, job.sample.id, job.metric, job.repeat),
                "error",
                f"{type(result).__name__}: {result}",
            )
        rows.append(result)
    usage = _judge_usage(rows)
    usage["seconds"] = round(time.monotonic() - started, 3)
    usage["embeddings"] = {
        "label": getattr(scorer.embeddings, "label", None),
        "texts_embedded": getattr(scorer.embeddings, "texts_embedded", 0) - emb_before,
    }
    usage["string_similarity"] = scorer.measure_label
    return rows, usage


def _judge_usage(rows: Sequence[ScoreRow]) -> dict[str, Any]:
    by_metric: dict[str, Counter] = {}
    for r in rows:
        c = by_metric.setdefault(r.metric, Counter())
        for key in ("calls", "cached", "prompt_tokens", "completion_tokens"):
            c[key] += getattr(r, key)
    total: Counter = Counter()
    for c in by_metric.values():
        total.update(c)
    keys = ("calls", "cached", "prompt_tokens", "completion_tokens")
    return {
        "judge": {k: int(total[k]) for k in keys},
        "judge_by_metric": {m: {k: int(c[k]) for k in keys} for m, c in by_metric.items()},
    }
