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
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import ConfigError, LineageError, LLMError, RunError, StoppedError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.rag.answering import RagSample, load_samples
from core.runs.folders import Run, create_run, list_runs, load_run, write_text_atomic

if TYPE_CHECKING:
    from core.llm import LLM

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
USAGE_FILE = "usage.json"
BASE_LABEL = "base"
SCORE_COLUMNS = [
    "retriever",
    "sample_id",
    "metric",
    "repeat",
    "value",
    "status",
    "error",
    "detail",
    "reason",
    "reference_source",
    "calls",
    "cached",
    "prompt_tokens",
    "completion_tokens",
]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric needs. `reference_answer`: only scored when the question has one."""

    name: str
    label: str
    needs_llm: bool = False
    needs_embeddings: bool = False
    needs_response: bool = False
    needs_contexts: bool = True
    reference_answer: bool = False
    help: str = ""


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(
            "faithfulness",
            "Faithfulness",
            needs_llm=True,
            needs_response=True,
            help="share of the answer's statements the retrieved passages support",
        ),
        MetricSpec(
            "answer_relevancy",
            "Answer relevancy",
            needs_llm=True,
            needs_embeddings=True,
            needs_response=True,
            needs_contexts=False,
            help="similarity of questions the judge infers from the answer to the question",
        ),
        MetricSpec(
            "context_precision",
            "Context precision",
            needs_llm=True,
            help="judged usefulness of each retrieved passage, rank-weighted",
        ),
        MetricSpec(
            "context_recall",
            "Context recall",
            needs_llm=True,
            help="share of the reference's statements the retrieved passages support",
        ),
        MetricSpec(
            "factual_correctness",
            "Factual correctness",
            needs_llm=True,
            needs_response=True,
            needs_contexts=False,
            reference_answer=True,
            help="claim-level F1 of the answer against the reference answer",
        ),
        MetricSpec(
            "semantic_similarity",
            "Semantic similarity",
            needs_embeddings=True,
            needs_response=True,
            needs_contexts=False,
            reference_answer=True,
            help="cosine similarity of answer and reference answer (no judge)",
        ),
        MetricSpec(
            "non_llm_context_precision_with_reference",
            "Context precision (no judge)",
            help="rank-weighted share of retrieved passages that match the gold chunk's text",
        ),
        MetricSpec(
            "non_llm_context_recall",
            "Context recall (no judge)",
            help="whether a retrieved passage matches the gold chunk's text",
        ),
        MetricSpec(
            "id_based_context_precision",
            "Context precision (chunk ids)",
            help="share of distinct retrieved chunk ids that are the gold chunk",
        ),
        MetricSpec(
            "id_based_context_recall",
            "Context recall (chunk ids)",
            help="whether the gold chunk id was retrieved (hit rate at k)",
        ),
    )
}
LLM_METRICS = tuple(n for n, m in METRICS.items() if m.needs_llm)
NON_LLM_METRICS = tuple(n for n, m in METRICS.items() if not m.needs_llm)
DEFAULT_METRICS = tuple(METRICS)


@dataclass(frozen=True)
class RagasConfig:
    """How to score. `repeats` > 1 judges every judged metric that many times."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    repeats: int = 1
    strictness: int = 3  # answer relevancy: questions generated per answer (one call each)
    temperature: float = 0.0  # judge temperature (answer relevancy uses relevancy_temperature)
    relevancy_temperature: float = 0.3  # ragas' own temperature for several generations
    max_tokens: int = 1024
    parse_retries: int = 1
    string_threshold: float = 0.5  # non-LLM metrics: similarity at which a passage "matches"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(
                f"Unknown RAGAS metric(s): {', '.join(unknown)}.",
                fix=f"use some of {', '.join(METRICS)}",
            )
        if not self.metrics:
            raise ConfigError("No metric chosen.", fix="pick at least one metric")
        if not 1 <= self.repeats <= 20:
            raise ConfigError(f"Repeats must be between 1 and 20, got {self.repeats}.")
        if not 1 <= self.strictness <= 10:
            raise ConfigError(f"Strictness must be between 1 and 10, got {self.strictness}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": list(self.metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RagasConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(
            **{k: (tuple(v) if k == "metrics" else v) for k, v in data.items() if k in known}
        )


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


@dataclass(frozen=True)
class RagasEvalResult:
    """A loaded ragas_eval run."""

    run_id: str
    scores: pd.DataFrame
    summary: dict[str, Any]
    usage: dict[str, Any]
    samples: dict[str, list[RagSample]] = field(default_factory=dict)  # retriever -> samples


# --------------------------------------------------------------------------- checks


def check_components(config: RagasConfig, judge: LLM | None, embeddings: Any) -> None:
    """Refuse, with the fix, when a chosen metric needs a judge or embeddings that were not given."""
    needs_llm = [m for m in config.metrics if METRICS[m].needs_llm]
    needs_emb = [m for m in config.metrics if METRICS[m].needs_embeddings]
    if needs_llm and judge is None:
        raise ConfigError(
            f"The judged metrics {', '.join(needs_llm)} need a judge LLM and none was given.",
            fix="pass the judge explicitly (the sidebar's LLM), or choose only the judge-free metrics "
            f"({', '.join(NON_LLM_METRICS)}); nothing falls back to a cloud model",
        )
    if needs_emb and embeddings is None:
        raise ConfigError(
            f"The metrics {', '.join(needs_emb)} need embeddings and none were given.",
            fix="pass a sentence-transformers model explicitly; nothing falls back to a cloud model",
        )


def is_low_confidence_judge(judge: LLM | None) -> bool:
    """True when the judge is the embedded 135M model (scores are a demo, not evidence)."""
    return judge is not None and str(judge.backend.identity).startswith("embedded")


def _as_embeddings(embeddings: Any) -> Any:
    from core.rag.judges import SentenceTransformerEmbeddings

    if embeddings is None:
        return None
    from ragas.embeddings.base import BaseRagasEmbedding

    if isinstance(embeddings, BaseRagasEmbedding):
        return embeddings
    return SentenceTransformerEmbeddings(embeddings)


# --------------------------------------------------------------------------- scoring one job


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
            tracker.advance(1, f"scoring: {tracker.done + 1}/{len(jobs)}")
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


# --------------------------------------------------------------------------- summaries


def rows_frame(rows: Sequence[ScoreRow]) -> pd.DataFrame:
    """Score rows as a table with SCORE_COLUMNS."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=SCORE_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["repeat"] = frame["repeat"].astype(int)
    return frame


def summarize_scores(scores: pd.DataFrame, config: RagasConfig) -> dict[str, Any]:
    """Per retriever per metric: mean over successful samples with a bootstrap CI, counts of
    ok/failed/skipped samples, failures by reason (per judgement), and the spread over repeats;
    plus paired deltas of every retriever against base."""
    from core.evaluation.statistics import bootstrap_ci

    out: dict[str, Any] = {"retrievers": {}, "comparisons": {}}
    per_sample: dict[tuple[str, str], pd.Series] = {}
    for (retriever, metric), group in scores.groupby(["retriever", "metric"], sort=False):
        ok = group[group["status"] == "ok"]
        values = ok.groupby("sample_id")["value"].mean()  # mean over successful repeats
        per_sample[(retriever, metric)] = values
        statuses = group.groupby("sample_id")["status"].agg(set)
        n_failed = int(sum(("ok" not in s) and ("failed" in s) for s in statuses))
        n_skipped = int(sum(s == {"skipped"} for s in statuses))
        failed = group[group["status"] == "failed"]
        entry: dict[str, Any] = {
            "n_samples": int(len(statuses)),
            "n_ok": int(len(values)),
            "n_failed": n_failed,
            "n_skipped": n_skipped,
            "n_judgements": int(len(group)),
            "n_failed_judgements": int(len(failed)),
            "failures": {str(k): int(v) for k, v in Counter(failed["error"]).items()},
            "mean": None,
            "ci_low": None,
            "ci_high": None,
        }
        if len(values):
            arr = values.to_numpy(dtype=np.float64)
            if len(arr) >= 2:
                mean, low, high = bootstrap_ci(
                    arr, config.n_resamples, config.confidence, config.seed
                )
                entry.update(mean=float(mean[0]), ci_low=float(low[0]), ci_high=float(high[0]))
            else:
                entry.update(mean=float(arr[0]), ci_low=float(arr[0]), ci_high=float(arr[0]))
        repeats = sorted(group["repeat"].unique())
        if len(repeats) > 1:
            means = [float(ok[ok["repeat"] == r]["value"].mean()) for r in repeats]
            finite = [m for m in means if math.isfinite(m)]
            within = ok.groupby("sample_id")["value"].std(ddof=0)
            entry["repeats"] = {
                "n": len(repeats),
                "means": [None if not math.isfinite(m) else m for m in means],
                "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
                "min": min(finite) if finite else None,
                "max": max(finite) if finite else None,
                "mean_within_sample_std": float(within.mean()) if len(within) else None,
            }
        out["retrievers"].setdefault(str(retriever), {})[str(metric)] = entry
    out["comparisons"] = _compare(per_sample, config)
    return out


def _compare(
    per_sample: Mapping[tuple[str, str], pd.Series], config: RagasConfig
) -> dict[str, Any]:
    """Paired deltas (other minus base) over samples both retrievers scored."""
    from core.evaluation.statistics import bootstrap_ci, sign_flip_pvalue

    retrievers = {r for r, _ in per_sample}
    if BASE_LABEL not in retrievers:
        return {}
    out: dict[str, Any] = {}
    for other in sorted(retrievers - {BASE_LABEL}):
        for (r, metric), base_values in per_sample.items():
            if r != BASE_LABEL or (other, metric) not in per_sample:
                continue
            joined = pd.concat(
                [base_values, per_sample[(other, metric)]], axis=1, join="inner"
            ).dropna()
            entry: dict[str, Any] = {"n_pairs": int(len(joined))}
            if len(joined) >= 2:
                diffs = (joined.iloc[:, 1] - joined.iloc[:, 0]).to_numpy(dtype=np.float64)
                delta, low, high = (
                    float(x[0])
                    for x in bootstrap_ci(diffs, config.n_resamples, config.confidence, config.seed)
                )
                entry.update(
                    delta=delta,
                    ci_low=low,
                    ci_high=high,
                    p_value=float(sign_flip_pvalue(diffs, seed=config.seed)[0]),
                    n_better=int((diffs > 0).sum()),
                    n_worse=int((diffs < 0).sum()),
                )
            out.setdefault(other, {})[str(metric)] = entry
    return out


def summary_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """summary.json as one row per (retriever, metric), for display and CSV download."""
    rows = []
    for retriever, metrics in summary.get("retrievers", {}).items():
        for metric, e in metrics.items():
            rep = e.get("repeats") or {}
            rows.append(
                {
                    "retriever": retriever,
                    "metric": metric,
                    "mean": e.get("mean"),
                    "ci_low": e.get("ci_low"),
                    "ci_high": e.get("ci_high"),
                    "n_ok": e.get("n_ok"),
                    "n_failed": e.get("n_failed"),
                    "n_skipped": e.get("n_skipped"),
                    "failures": ", ".join(
                        f"{k}: {v}" for k, v in sorted(e.get("failures", {}).items())
                    ),
                    "repeat_std": rep.get("std"),
                    "repeat_min": rep.get("min"),
                    "repeat_max": rep.get("max"),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "retriever",
            "metric",
            "mean",
            "ci_low",
            "ci_high",
            "n_ok",
            "n_failed",
            "n_skipped",
            "failures",
            "repeat_std",
            "repeat_min",
            "repeat_max",
        ],
    )


# --------------------------------------------------------------------------- runs


def _rag_runs(rag_runs: Mapping[str, str]) -> tuple[dict[str, Run], str]:
    if not rag_runs:
        raise ConfigError("No rag run to score.", fix="generate answers first")
    runs = {label: load_run(rid) for label, rid in rag_runs.items()}
    qa_ids = set()
    for label, run in runs.items():
        if run.kind != "rag":
            raise ConfigError(f"Run {run.id} ({label}) is a {run.kind} run, not a rag run.")
        qa_ids.add(run.manifest.parents.get("qa"))
    if len(qa_ids) != 1:
        raise LineageError(
            "The rag runs answer different qa runs, so their scores cannot be compared.",
            found=", ".join(
                f"{label}: {r.manifest.parents.get('qa')}" for label, r in runs.items()
            ),
            fix="generate both retrievers' answers for the same qa run",
        )
    return runs, str(next(iter(qa_ids)))


def _judge_info(judge: LLM | None, embeddings: Any) -> dict[str, Any]:
    return {
        "judge": None
        if judge is None
        else {"label": judge.label, "identity": judge.backend.identity},
        "low_confidence_judge": is_low_confidence_judge(judge),
        "embeddings": None
        if embeddings is None
        else getattr(embeddings, "label", type(embeddings).__name__),
    }


def evaluate_rag(
    rag_runs: Mapping[str, str],
    *,
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig | None = None,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """Score rag runs (retriever label -> rag run id, e.g. {"base": ..., "tuned": ...}) and save
    a ragas_eval run. The judge LLM and the embeddings are explicit: a chosen metric that needs
    one that is missing raises ConfigError before any work."""
    config = config or RagasConfig()
    check_components(config, judge, embeddings)
    runs, qa_id = _rag_runs(rag_runs)
    samples = {label: load_samples(run) for label, run in runs.items()}
    run = create_run(
        "ragas_eval",
        name=name
        or f"RAGAS: {' vs '.join(runs)} · {sum(len(s) for s in samples.values())} samples",
        config={
            **config.to_dict(),
            "retrievers": dict(rag_runs),
            "qa_run_id": qa_id,
            **_judge_info(judge, embeddings),
        },
        parents={f"rag_{label}": r.id for label, r in runs.items()},
    )
    jobs = plan_jobs(samples, config)
    return _score_into(
        run, jobs, [], judge, embeddings, config, runs, on_progress, should_stop, jobs
    )


def _score_into(
    run: Run,
    jobs: list[Job],
    kept: list[ScoreRow],
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig,
    rag_runs: Mapping[str, Run],
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
    plan: Sequence[Job],
) -> Run:
    """Score `jobs`, merge them with `kept` rows in the order of `plan`, and save everything."""
    run.set_status("running")
    try:
        rows, usage = score_jobs(
            jobs,
            judge=judge,
            embeddings=embeddings,
            config=config,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    except StoppedError as exc:
        run.set_status("stopped", error=str(exc))
        raise
    except BaseException as exc:
        run.set_status("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    order = {(j.retriever, j.sample.id, j.metric, j.repeat): i for i, j in enumerate(plan)}
    all_rows = sorted(
        [*kept, *rows],
        key=lambda r: order.get((r.retriever, r.sample_id, r.metric, r.repeat), len(order)),
    )
    frame = rows_frame(all_rows)
    save_scores(run, frame)
    summary = summarize_scores(frame, config)
    summary.update(
        metrics=list(config.metrics),
        retrievers_order=list(rag_runs),
        rag_runs={label: r.id for label, r in rag_runs.items()},
        qa_run_id=run.manifest.config.get("qa_run_id"),
        string_similarity=usage["string_similarity"],
        **_judge_info(judge, embeddings),
        n_rescored=len(rows),
    )
    run.write_json(SUMMARY_FILE, summary)
    run.write_json(USAGE_FILE, {"scoring": usage, "generation": _generation_usage(rag_runs)})
    n_failed = int((frame["status"] == "failed").sum())
    run.set_status(
        "done",
        n_samples=int(frame["sample_id"].nunique()),
        n_judgements=int(len(frame)),
        n_failed=n_failed,
        low_confidence_judge=summary["low_confidence_judge"],
    )
    return run


def _generation_usage(rag_runs: Mapping[str, Run]) -> dict[str, Any]:
    out = {}
    for label, run in rag_runs.items():
        try:
            out[label] = run.read_json("usage.json").get("generation", {})
        except RunError:
            out[label] = {}
    return out


def save_scores(run: Run, scores: pd.DataFrame) -> None:
    """Write scores.csv atomically."""
    write_text_atomic(run.artifact(SCORES_FILE), scores.to_csv(index=False))


def load_scores(run: Run | str) -> pd.DataFrame:
    """A ragas_eval run's scores.csv as a table (empty text cells as '')."""
    run = _ragas_run(run)
    path = run.artifact(SCORES_FILE)
    if not path.exists():
        raise RunError(f"Run {run.id} has no {SCORES_FILE}.", fix="re-run the scoring")
    frame = pd.read_csv(path, dtype={"sample_id": str, "retriever": str, "metric": str})
    for col in ("status", "error", "detail", "reason", "reference_source"):
        frame[col] = frame[col].fillna("").astype(str)
    return frame


def _ragas_run(run: Run | str) -> Run:
    run = load_run(run) if isinstance(run, str) else run
    if run.kind != "ragas_eval":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a ragas_eval run.")
    return run


def load_ragas_eval(run: Run | str, with_samples: bool = True) -> RagasEvalResult:
    """Read a finished ragas_eval run (and its rag runs' samples)."""
    run = _ragas_run(run)
    summary = run.read_json(SUMMARY_FILE)
    samples: dict[str, list[RagSample]] = {}
    if with_samples:
        for label, rid in summary.get("rag_runs", {}).items():
            try:
                samples[label] = load_samples(rid)
            except RunError:
                samples[label] = []
    usage_path = run.artifact(USAGE_FILE)
    usage = json.loads(usage_path.read_text(encoding="utf-8")) if usage_path.exists() else {}
    return RagasEvalResult(run.id, load_scores(run), summary, usage, samples)


def retry_failed(
    ragas_eval_run_id: str,
    *,
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """A new ragas_eval run that re-scores only the failed judgements of an earlier one and keeps
    every other row (parents: the same rag runs plus `retry_of`). Judgements that succeeded
    before are not asked again; a failed one was never cached, so it is really asked again."""
    old = _ragas_run(ragas_eval_run_id)
    config = config or RagasConfig.from_dict(old.manifest.config)
    summary = old.read_json(SUMMARY_FILE)
    scores = load_scores(old)
    rag_ids = summary.get("rag_runs") or old.manifest.config.get("retrievers", {})
    runs, qa_id = _rag_runs(rag_ids)
    samples = {label: {s.id: s for s in load_samples(r)} for label, r in runs.items()}
    failed_mask = scores["status"] == "failed"
    failed = scores[failed_mask]
    needed = RagasConfig.from_dict(
        {**config.to_dict(), "metrics": sorted(set(failed["metric"])) or list(config.metrics)}
    )
    check_components(needed, judge, embeddings)
    jobs = []
    for rec in failed.itertuples(index=False):
        sample = samples.get(rec.retriever, {}).get(str(rec.sample_id))
        if sample is None:
            raise RunError(
                f"Sample {rec.sample_id} of {rec.retriever} is no longer in its rag run."
            )
        jobs.append(Job(rec.retriever, sample, rec.metric, int(rec.repeat)))
    kept = [_row_of(rec) for rec in scores[~failed_mask].to_dict(orient="records")]
    run = create_run(
        "ragas_eval",
        name=f"{old.manifest.name} · retried {len(jobs)} failed",
        config={
            **old.manifest.config,
            **config.to_dict(),
            "retry_of": old.id,
            "retrievers": dict(rag_ids),
            "qa_run_id": qa_id,
            **_judge_info(judge, embeddings),
        },
        parents={**{f"rag_{label}": r.id for label, r in runs.items()}, "retry_of": old.id},
    )
    plan = plan_jobs({label: list(s.values()) for label, s in samples.items()}, config)
    return _score_into(
        run, jobs, kept, judge, embeddings, config, runs, on_progress, should_stop, plan
    )


def _row_of(rec: Mapping[str, Any]) -> ScoreRow:
    def num(key: str) -> int:
        value = rec.get(key)
        return (
            0 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)
        )

    value = rec.get("value")
    return ScoreRow(
        retriever=str(rec["retriever"]),
        sample_id=str(rec["sample_id"]),
        metric=str(rec["metric"]),
        repeat=num("repeat"),
        value=math.nan if value is None else float(value),
        status=str(rec.get("status") or "ok"),
        error=str(rec.get("error") or ""),
        detail=str(rec.get("detail") or ""),
        reason=str(rec.get("reason") or ""),
        reference_source=str(rec.get("reference_source") or ""),
        # Rows carried over cost nothing in this run.
        calls=0,
        cached=0,
        prompt_tokens=0,
        completion_tokens=0,
    )


# --------------------------------------------------------------------------- the whole stage


@dataclass(frozen=True)
class RetrieverChoice:
    """One retriever to compare: a label ("base", "tuned"), its loaded model and its spec."""

    label: str
    model: Any
    spec: Any  # core.embeddings.ModelSpec


def estimate_judge_calls(n_samples: int, config: RagasConfig, k: int) -> dict[str, int]:
    """Judge requests per metric before caching (an upper bound for factual correctness and
    faithfulness, which skip their second step when the first finds nothing)."""
    per_sample = {
        "faithfulness": 2,
        "answer_relevancy": config.strictness,
        "context_precision": k,
        "context_recall": 1,
        "factual_correctness": 4,
    }
    return {
        m: n_samples * per_sample[m] * config.repeats for m in config.metrics if m in per_sample
    }


def compare_retrievers(
    qa_run_id: str,
    retrievers: Sequence[RetrieverChoice],
    *,
    llm: LLM,
    judge: LLM | None,
    embeddings: Any,
    rag_config: Any,
    ragas_config: RagasConfig | None = None,
    chroma: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """The whole stage: answer the qa run's questions with each retriever (rag runs), then score
    them together (a ragas_eval run). Missing judge or embeddings fail before any work."""
    from core.rag.answering import run_rag

    ragas_config = ragas_config or RagasConfig()
    check_components(ragas_config, judge, embeddings)
    labels = [r.label for r in retrievers]
    if not retrievers or len(set(labels)) != len(labels):
        raise ConfigError(f"Retriever labels must be unique and non-empty, got {labels}.")
    rag_ids = {}
    for choice in retrievers:
        run = run_rag(
            qa_run_id,
            model=choice.model,
            model_spec=choice.spec,
            llm=llm,
            config=rag_config,
            chroma=chroma,
            retriever_label=choice.label,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        rag_ids[choice.label] = run.id
    return evaluate_rag(
        rag_ids,
        judge=judge,
        embeddings=embeddings,
        config=ragas_config,
        on_progress=on_progress,
        should_stop=should_stop,
    )


# --------------------------------------------------------------------------- side by side


@dataclass(frozen=True)
class RetrievalFlips:
    """Questions whose retrieval hit@k flipped between base and tuned, from a retrieval_eval run."""

    run_id: str
    k: int | None
    model: str
    by_question: dict[str, str]  # query id -> "gained" (base miss, tuned hit) or "lost"


def retrieval_flips(qa_run_id: str) -> RetrievalFlips | None:
    """The flips of the newest finished retrieval_eval run of this qa run (its first tuned model
    at native dimension when there, else its first comparison), or None when there is none."""
    for run in list_runs("retrieval_eval"):
        if run.manifest.status != "done" or run.manifest.parents.get("qa") != qa_run_id:
            continue
        try:
            flips = run.read_json("flips.json")
        except (RunError, ValueError):
            continue
        comparisons = flips.get("comparisons") or []
        native = [c for c in comparisons if c.get("dim") is None] or comparisons
        if not native:
            return None
        comp = native[0]
        by_question = {str(r["query_id"]): "gained" for r in comp.get("gained", [])}
        by_question.update({str(r["query_id"]): "lost" for r in comp.get("lost", [])})
        k = comp.get("k", flips.get("k"))
        return RetrievalFlips(
            run.id, None if k is None else int(k), str(comp.get("model", "")), by_question
        )
    return None


def per_question_table(
    result: RagasEvalResult,
    *,
    other: str = "tuned",
    worse_metric: str | None = None,
    flips: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per question: question, each retriever's answer and passages, each metric's value
    (mean over repeats) and the judge's reasons; `tuned_worse` is true when `other` scored below
    base on `worse_metric` (any metric when None); `retrieval_flip` from a retrieval_eval run."""
    scores = result.scores
    ok = scores[scores["status"] == "ok"]
    values = ok.groupby(["sample_id", "retriever", "metric"])["value"].mean()
    reasons = (
        scores[scores["reason"] != ""]
        .groupby(["sample_id", "retriever", "metric"])["reason"]
        .first()
    )
    errors = (
        scores[scores["status"] == "failed"]
        .groupby(["sample_id", "retriever", "metric"])["error"]
        .first()
    )
    labels = list(result.summary.get("retrievers_order") or result.samples)
    metrics = list(result.summary.get("metrics") or sorted(scores["metric"].unique()))
    by_label = {label: {s.id: s for s in result.samples.get(label, [])} for label in labels}
    ids = list(dict.fromkeys(sid for label in labels for sid in by_label[label]))
    if not ids:
        ids = list(dict.fromkeys(scores["sample_id"]))
    rows = []
    for sid in ids:
        first = next((by_label[label][sid] for label in labels if sid in by_label[label]), None)
        row: dict[str, Any] = {"sample_id": sid, "question": first.user_input if first else ""}
        row["reference"] = (first.reference or "") if first else ""
        for label in labels:
            s = by_label[label].get(sid)
            row[f"{label}_answer"] = s.response if s else ""
            row[f"{label}_contexts"] = "\n---\n".join(s.retrieved_contexts) if s else ""
            row[f"{label}_gold_rank"] = s.gold_rank if s else None
            for metric in metrics:
                key = (sid, label, metric)
                row[f"{label}_{metric}"] = float(values[key]) if key in values.index else math.nan
                if key in errors.index:
                    row[f"{label}_{metric}_error"] = errors[key]
                if key in reasons.index:
                    row[f"{label}_{metric}_reason"] = reasons[key]
        if other in labels and BASE_LABEL in labels:
            chosen = [worse_metric] if worse_metric else metrics
            row["tuned_worse"] = any(
                row.get(f"{other}_{m}", math.nan) < row.get(f"{BASE_LABEL}_{m}", math.nan)
                for m in chosen
            )
        if flips:
            row["retrieval_flip"] = flips.get(sid, "")
        rows.append(row)
    return pd.DataFrame(rows)


def export_json(result: RagasEvalResult) -> str:
    """The whole result as JSON: summary, usage, scores and samples."""
    return json.dumps(
        {
            "run_id": result.run_id,
            "summary": result.summary,
            "usage": result.usage,
            "scores": json.loads(result.scores.to_json(orient="records")),
            "samples": {k: [s.model_dump() for s in v] for k, v in result.samples.items()},
        },
        ensure_ascii=False,
        indent=1,
        default=str,
    )


def sample_reasons(scores: pd.DataFrame, sample_id: str) -> dict[str, dict[str, str]]:
    """retriever -> metric -> the judge's reasons (or the failure) for one sample."""
    out: dict[str, dict[str, str]] = {}
    for rec in scores[scores["sample_id"] == sample_id].to_dict(orient="records"):
        text = rec["reason"] or (
            f"failed: {rec['error']} — {rec['detail']}" if rec["status"] == "failed" else ""
        )
        if text:
            out.setdefault(rec["retriever"], {})[rec["metric"]] = text
    return out
