"""Results split by what a tuned model saw in training: the questions whose passages (gold
chunks) or text it trained on, and the ones it did not.

A model tuned on pairs made from the corpus itself (headings, cloze sentences) has seen the
passages most questions point at, though never the questions: the realistic case when a team
tunes on its own documents and queries them. Its gain there can differ from its gain on passages
it never saw, so both are shown when a question set has both. The split is exploratory: the
paired tests (cluster sign-flip, or McNemar for hit rates; core.evaluation.statistics) are
Holm-adjusted over the dims and the two groups of one model, and the headline verdict does not
use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.evaluation.metrics import score_rankings
from core.evaluation.statistics import compare_paired, holm_adjust
from core.evaluation.verdict import alpha_of, is_significant, verdict_text
from core.formatting import fmt, fmt_ci, questions_text

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult

GROUPS = ("passages it trained on", "passages it never trained on")
SHALLOW_METRICS = ("ndcg@10", "mrr@10", "hit_rate@1", "hit_rate@3", "hit_rate@5", "hit_rate@10")


def _per_query(result: RetrievalEvalResult, model: str, dim: int, metric: str) -> dict[str, float]:
    """Query id -> the metric's value for one model at one dim, from the saved top 10."""
    rows = result.per_query[(result.per_query["model"] == model) & (result.per_query["dim"] == dim)]
    if rows.empty:
        return {}
    values = score_rankings(list(rows["top_ids"]), [list(g) for g in rows["gold_ids"]])[metric]
    return dict(zip(rows["query_id"], values, strict=True))


def seen_rows(result: RetrievalEvalResult, metric: str | None = None) -> list[dict[str, Any]]:
    """Per tuned model that saw some but not all of the evaluated questions' passages or text,
    per dim and group: the questions, base and tuned means, Δ with its interval, Holm p and the
    verdict. [] when no model is in that case, or the metric needs more than the saved top 10."""
    metric = metric or result.primary_metric
    if metric not in SHALLOW_METRICS or result.per_query.empty:
        return []
    rows: list[dict[str, Any]] = []
    for model in result.models:
        overlap = (model.get("training") or {}).get("overlap") or {}
        seen = set(overlap.get("seen_ids") or [])
        if not seen or len(seen) >= int(overlap.get("n_queries", 0)):
            continue
        rows += _model_rows(result, model, seen, metric)
    return rows


def _model_rows(
    result: RetrievalEvalResult, model: dict[str, Any], seen: set[str], metric: str
) -> list[dict[str, Any]]:
    found = []
    frame = result.per_query
    cluster_of = (
        dict(zip(frame["query_id"], frame["cluster"], strict=True)) if "cluster" in frame else {}
    )
    for dim in model.get("dims", []):
        base = _per_query(result, result.base_label, dim, metric)
        tuned = _per_query(result, model["label"], dim, metric)
        for group in GROUPS:
            ids = [q for q in tuned if (q in seen) == (group == GROUPS[0]) and q in base]
            if len(ids) < 2:
                continue
            b = np.array([base[q] for q in ids])
            t = np.array([tuned[q] for q in ids])
            clusters = np.array([cluster_of.get(q, n) for n, q in enumerate(ids)])
            cmp = compare_paired(
                b, t, metric, clusters=clusters, confidence=result.confidence, seed=0
            )
            found.append((dim, group, ids, b, t, cmp))
    adjusted = holm_adjust([c.p_value for *_, c in found]) if found else []
    alpha = alpha_of(result.confidence)
    rows = []
    for (dim, group, ids, b, t, cmp), p_holm in zip(found, adjusted, strict=True):
        significant = is_significant(float(p_holm), cmp.ci_low, cmp.ci_high, alpha)
        rows.append(
            {
                "model": model["label"],
                "dim": dim,
                "questions on": group,
                "questions": len(ids),
                "clusters": cmp.clusters,
                "base": float(b.mean()),
                "tuned": float(t.mean()),
                "delta": cmp.delta,
                "ci_low": cmp.ci_low,
                "ci_high": cmp.ci_high,
                "p_holm": float(p_holm),
                "verdict": verdict_text(significant, float(p_holm)),
            }
        )
    return rows


def seen_display(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as the page, the report and the CLI show them."""
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(
        [
            {
                "model": r["model"],
                "dim": r["dim"],
                "questions on": r["questions on"],
                "questions": questions_text(r["questions"], r.get("clusters")),
                "base": fmt(r["base"]),
                "tuned": fmt(r["tuned"]),
                "Δ (95% CI)": fmt_ci(r["delta"], r["ci_low"], r["ci_high"], signed=True),
                "verdict": r["verdict"],
            }
            for r in rows
        ]
    )
