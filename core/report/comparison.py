"""Evaluation runs side by side: finished retrieval_eval and ragas_eval runs lined up with their
headline figures (per model and dim ndcg@10, hit_rate@5, mrr@10 and map@100 with intervals, the
random ranker, the corpus size and the query count; per retriever the RAGAS means with intervals
and failure counts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import InputError, RunError
from core.runs.folders import Run, load_run, status_phrase
from core.runs.lineage import lineage_of

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult
    from core.rag.results import RagasEvalResult


HEADLINE_METRICS = ("ndcg@10", "hit_rate@5", "mrr@10", "map@100")


EVAL_KINDS = ("retrieval_eval", "ragas_eval")


RANDOM_LABEL = "random ranker"


ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """Evaluation runs side by side.

    `retrieval`: long table, one row per (run, model, dim, metric) plus the random ranker per run
    and metric: run_id, run_label, model, kind, dim, metric, value, ci_low, ci_high, corpus_size,
    n_queries, random_baseline. `ragas`: `core.rag.summary.summary_table` rows with run_id,
    run_label, n_samples, corpus_size and k."""

    run_ids: list[str]
    retrieval: pd.DataFrame
    ragas: pd.DataFrame
    retrieval_results: dict[str, RetrievalEvalResult] = field(default_factory=dict)
    ragas_results: dict[str, RagasEvalResult] = field(default_factory=dict)
    ragas_context: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _short(run_id: str) -> str:
    return run_id.rsplit("-", 1)[-1]


def _run_label(run: Run, several: bool) -> str:
    return f"{run.manifest.name} ({_short(run.id)})" if several else run.manifest.name


def _corpus_of(run: Run) -> Run | None:
    return next((r for r in lineage_of([run.id]) if r.kind == "corpus"), None)


def corpus_size_of(run: Run) -> int | None:
    """The number of chunks in the run's corpus (from its summary, else by counting lines)."""
    corpus = _corpus_of(run)
    if corpus is None:
        return None
    n = corpus.manifest.summary.get("n_chunks")
    if isinstance(n, int):
        return n
    path = corpus.artifact("chunks.jsonl")
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def load_eval_runs(run_ids: Sequence[str]) -> list[Run]:
    """Load finished evaluation runs; a clear InputError for any other kind or status."""
    if not run_ids:
        raise InputError("No evaluation run chosen.", fix="pick one or more evaluation runs")
    runs = []
    for run_id in dict.fromkeys(run_ids):
        run = load_run(run_id)
        if run.kind not in EVAL_KINDS:
            raise InputError(
                f"Run {run.id} is a {run.kind} run; only evaluation runs can be compared.",
                fix="pick retrieval_eval or ragas_eval runs",
            )
        if run.manifest.status != "done":
            raise InputError(
                f"Run {run.id} {status_phrase(run.manifest.status)}; only finished (done) "
                "runs can be reported.",
                found=run.manifest.error or "",
                fix="pick a finished evaluation run",
            )
        runs.append(run)
    return runs


def retrieval_headline(
    result: RetrievalEvalResult, label: str = "", metrics: Sequence[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """One evaluation's headline metrics per model and dim (long), plus the random ranker."""
    frame = result.metrics[result.metrics["metric"].isin(metrics)].copy()
    frame.insert(0, "run_id", result.run_id)
    frame.insert(1, "run_label", label or result.run_id)
    rows = [
        {
            "run_id": result.run_id,
            "run_label": label or result.run_id,
            "model": RANDOM_LABEL,
            "kind": "random",
            "dim": pd.NA,
            "metric": m,
            "value": result.random_baseline.get(m, math.nan),
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n_queries": result.n_queries,
            "corpus_size": result.corpus_size,
            "random_baseline": result.random_baseline.get(m, math.nan),
        }
        for m in metrics
    ]
    columns = [
        "run_id",
        "run_label",
        "model",
        "kind",
        "dim",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_queries",
        "corpus_size",
        "random_baseline",
    ]
    out = pd.concat([frame[columns], pd.DataFrame(rows, columns=columns)], ignore_index=True)
    out["metric"] = pd.Categorical(out["metric"], categories=list(metrics), ordered=True)
    out["dim"] = out["dim"].astype("Int64")
    return out


def compare_runs(run_ids: Sequence[str]) -> Comparison:
    """Load finished retrieval_eval and ragas_eval runs and line up their headline figures."""
    from core.evaluation.results import load_retrieval_eval
    from core.rag.results import load_ragas_eval
    from core.rag.summary import summary_table

    runs = load_eval_runs(run_ids)
    several = len(runs) > 1
    retrieval_parts, ragas_parts, warnings = [], [], []
    retrieval_results, ragas_results, contexts = {}, {}, {}
    for run in runs:
        label = _run_label(run, several)
        if run.kind == "retrieval_eval":
            result = load_retrieval_eval(run)
            retrieval_results[run.id] = result
            retrieval_parts.append(retrieval_headline(result, label))
            warnings.extend(f"{label}: {w}" for w in result.warnings)
            continue
        ragas = load_ragas_eval(run, with_samples=False)
        ragas_results[run.id] = ragas
        context = contexts[run.id] = ragas_context(run, ragas)
        table = summary_table(ragas.summary)
        table.insert(0, "run_id", run.id)
        table.insert(1, "run_label", label)
        table["n_samples"] = context["n_samples"]
        table["corpus_size"] = context["corpus_size"]
        table["k"] = context["k"]
        ragas_parts.append(table)
        if context["low_confidence_judge"]:
            warnings.append(
                f"{label}: the judge is a tiny local model; its judged scores are low-confidence."
            )
    return Comparison(
        run_ids=[r.id for r in runs],
        retrieval=pd.concat(retrieval_parts, ignore_index=True)
        if retrieval_parts
        else pd.DataFrame(),
        ragas=pd.concat(ragas_parts, ignore_index=True) if ragas_parts else pd.DataFrame(),
        retrieval_results=retrieval_results,
        ragas_results=ragas_results,
        ragas_context=contexts,
        warnings=warnings,
    )


def ragas_context(run: Run, result: RagasEvalResult) -> dict[str, Any]:
    """Corpus size, samples, top-k and the random retriever's id-based scores of a ragas_eval
    run (one gold chunk per question: recall k/N, precision 1/N)."""
    scores = result.scores
    k = None
    for rag_id in result.summary.get("rag_runs", {}).values():
        try:
            k = load_run(rag_id).manifest.config.get("k", k)
        except RunError:
            continue
    n = corpus_size_of(run)
    random = {}
    if n and k:
        random = {
            "id_based_context_recall": min(1.0, k / n),
            "id_based_context_precision": 1.0 / n,
        }
    return {
        "corpus_size": n,
        "n_samples": int(scores["sample_id"].nunique()) if not scores.empty else 0,
        "k": k,
        "random": random,
        "judge": (result.summary.get("judge") or {}).get("label", "none (judge-free metrics)"),
        "low_confidence_judge": bool(result.summary.get("low_confidence_judge")),
    }
