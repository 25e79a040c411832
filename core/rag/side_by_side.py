"""Base and tuned answers side by side: per question, each retriever's answer, contexts, gold rank
and scores, the questions whose retrieval flipped, and the judge's reasons for one sample."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import RunError
from core.rag.metrics import BASE_LABEL
from core.runs.folders import list_runs

if TYPE_CHECKING:
    from core.rag.results import RagasEvalResult


@dataclass(frozen=True)
class RetrievalFlips:
    """Questions whose retrieval hit@k flipped between base and tuned, from a retrieval_eval run."""

    run_id: str
    k: int | None
    model: str
    by_question: dict[str, str]  # query id -> "gained" (base miss, tuned hit) or "lost"
    dim: int | None = None


def _tuned_label(models: list[dict[str, Any]], wanted: Mapping[str, Any] | None) -> str | None:
    """The label a retrieval eval gave the tuned model `wanted` (its spec: source and ref), or
    its first tuned model when none is wanted; never a hybrid, BM25 or the base."""
    tuned = [m for m in models if m.get("kind") == "tuned"]
    if wanted:
        tuned = [
            m
            for m in tuned
            if (m.get("source"), m.get("ref")) == (wanted.get("source"), wanted.get("ref"))
        ]
    return str(tuned[0]["label"]) if tuned else None


def retrieval_flips(
    qa_run_id: str, model: Mapping[str, Any] | None = None, dim: int | None = None
) -> RetrievalFlips | None:
    """The flips of the tuned model `model` (a ModelSpec's dict; any tuned model when None)
    against the base, from the newest finished retrieval_eval run of this qa run that compared
    them: at `dim` when it was evaluated there, else at the largest dim. None when no run did."""
    for run in list_runs("retrieval_eval"):
        if run.manifest.status != "done" or run.manifest.parents.get("qa") != qa_run_id:
            continue
        try:
            flips = run.read_json("flips.json")
            models = run.read_json("result.json").get("models") or []
        except (RunError, ValueError):
            continue
        label = _tuned_label(models, model)
        comparisons = [c for c in flips.get("comparisons") or [] if c.get("model") == label]
        if label is None or not comparisons:
            continue
        at_dim = [c for c in comparisons if dim is not None and c.get("dim") == dim]
        comp = (at_dim or sorted(comparisons, key=lambda c: -(c.get("dim") or 0)))[0]
        by_question = {str(r["query_id"]): "gained" for r in comp.get("gained", [])}
        by_question.update({str(r["query_id"]): "lost" for r in comp.get("lost", [])})
        k = comp.get("k", flips.get("k"))
        found_dim = comp.get("dim")
        return RetrievalFlips(
            run.id,
            None if k is None else int(k),
            label,
            by_question,
            None if found_dim is None else int(found_dim),
        )
    return None


def rag_retrieval_flips(result: RagasEvalResult) -> RetrievalFlips | None:
    """retrieval_flips for the tuned retriever a RAG evaluation answered with (its model and
    dimension, from its rag run); None without a tuned retriever or a retrieval eval of it."""
    from core.runs.folders import load_run

    rag_id = (result.summary.get("rag_runs") or {}).get("tuned")
    if not rag_id:
        return None
    try:
        config = load_run(rag_id).manifest.config
    except RunError:
        return None
    return retrieval_flips(
        str(result.summary.get("qa_run_id") or ""), config.get("model"), config.get("dim")
    )


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


def sample_means(scores: pd.DataFrame, sample_id: str) -> dict[str, dict[str, float]]:
    """retriever -> metric -> the mean of one sample's successful scores (over repeats)."""
    ok = scores[(scores["sample_id"] == sample_id) & (scores["status"] == "ok")]
    means = ok.groupby(["retriever", "metric"])["value"].mean()
    out: dict[str, dict[str, float]] = {}
    for (retriever, metric), value in means.items():
        out.setdefault(str(retriever), {})[str(metric)] = float(value)
    return out
