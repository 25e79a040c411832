"""Summaries of RAGAS scores: per retriever and metric the mean over the samples that scored, a
bootstrap interval, the failures by reason and the spread of repeats; paired deltas against the
base retriever; and the summary as a table (one column list for the page and the report)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.formatting import fmt_interval
from core.rag.metrics import BASE_LABEL

if TYPE_CHECKING:
    from core.rag.metrics import RagasConfig

SUMMARY_COLUMNS = (
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
)
DISPLAY_COLUMNS = ("retriever", "metric", "mean", "95% CI", *SUMMARY_COLUMNS[5:])


def summary_display(table: pd.DataFrame) -> pd.DataFrame:
    """The summary table for people: the interval as one '[low, high]' column."""
    shown = table.copy()
    shown["95% CI"] = [
        fmt_interval(lo, hi) for lo, hi in zip(shown["ci_low"], shown["ci_high"], strict=True)
    ]
    return shown[list(DISPLAY_COLUMNS)]


def summarize_scores(
    scores: pd.DataFrame, config: RagasConfig, clusters: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Per retriever per metric: mean over successful samples with a bootstrap CI, counts of
    ok/failed/skipped samples, failures by reason (per judgement), and the spread over repeats;
    plus paired deltas of every retriever against base. `clusters` maps a sample (question) id
    to its cluster (questions sharing a chunk): intervals and tests resample whole clusters."""
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
                    arr,
                    config.n_resamples,
                    config.confidence,
                    config.seed,
                    _clusters_of(values.index, clusters),
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
    out["comparisons"] = _compare(per_sample, config, clusters)
    return out


def _clusters_of(ids: Any, clusters: Mapping[str, int] | None) -> np.ndarray | None:
    """The cluster of each sample id (a sample unknown to `clusters` is its own); None without."""
    if not clusters:
        return None
    return np.array([clusters.get(str(i), -1 - n) for n, i in enumerate(ids)])


def _compare(
    per_sample: Mapping[tuple[str, str], pd.Series],
    config: RagasConfig,
    clusters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Paired deltas (other minus base) over samples both retrievers scored, by cluster."""
    from core.evaluation.statistics import bootstrap_ci, n_clusters, sign_flip_pvalue

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
                groups = _clusters_of(joined.index, clusters)
                delta, low, high = (
                    float(x[0])
                    for x in bootstrap_ci(
                        diffs, config.n_resamples, config.confidence, config.seed, groups
                    )
                )
                entry.update(
                    delta=delta,
                    ci_low=low,
                    ci_high=high,
                    p_value=float(sign_flip_pvalue(diffs, seed=config.seed, clusters=groups)[0]),
                    n_clusters=n_clusters(groups, len(diffs)),
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
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def scoring_status(table: pd.DataFrame, scores: pd.DataFrame, judged: bool) -> tuple[str, str]:
    """How the scoring went, for the page: ('error' | 'warning' | 'success', one sentence).
    Failed judgements come first; a metric every sample of which was skipped has no score and
    says why (its rows' detail); success names whether a judge was called at all."""
    failed = table[table["n_failed"].fillna(0) > 0]
    if not failed.empty:
        return "error", (
            f"{int(failed['n_failed'].sum())} sample score(s) failed and are left out of their "
            "means (shown below by reason). Retry them alone, or read the reasons in the table."
        )
    empty = table[(table["n_ok"].fillna(0) == 0) & (table["n_skipped"].fillna(0) > 0)]
    if not empty.empty:
        skipped = scores[scores["status"] == "skipped"]
        parts = []
        for metric in dict.fromkeys(empty["metric"]):
            why = skipped.loc[skipped["metric"] == metric, "detail"]
            parts.append(f"{metric} ({why.iloc[0]})" if len(why) else str(metric))
        return "warning", (
            f"No score for {', '.join(parts)}: every sample was skipped, so these metrics say "
            "nothing about the retrievers."
        )
    partial = int(table["n_skipped"].fillna(0).sum())
    tail = (
        f" ({partial} sample score(s) skipped as not applicable, shown in the table)"
        if partial
        else ""
    )
    if judged:
        return "success", f"Every judgement succeeded{tail}."
    return (
        "success",
        f"Every score was computed; no judge was called (judge-free metrics only){tail}.",
    )
