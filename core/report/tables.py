"""The comparison's tables formatted for people (the Runs page and the report): values with their
intervals, the deltas with their verdicts (core.evaluation.verdict), the RAGAS means and deltas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.formatting import fmt, fmt_ci, questions_text
from core.report.comparison import ALPHA, HEADLINE_METRICS

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult
    from core.rag.results import RagasEvalResult


def _dim_text(dim: Any) -> str:
    return "—" if dim is None or pd.isna(dim) else str(int(dim))


def headline_table(retrieval: pd.DataFrame) -> pd.DataFrame:
    """The long retrieval comparison as one row per (run, model, dim) with 'value [low, high]'
    per headline metric, and the corpus size and query count."""
    if retrieval.empty:
        return pd.DataFrame()
    frame = retrieval.copy()
    frame["cell"] = [
        fmt_ci(v, lo, hi)
        for v, lo, hi in zip(frame["value"], frame["ci_low"], frame["ci_high"], strict=True)
    ]
    frame["dim_key"] = [_dim_text(d) for d in frame["dim"]]
    order = {
        (r, m): i
        for i, (r, m) in enumerate(dict.fromkeys(zip(frame["run_id"], frame["model"], strict=True)))
    }
    wide = frame.pivot_table(
        index=["run_id", "run_label", "model", "kind", "dim_key", "corpus_size", "n_queries"],
        columns="metric",
        values="cell",
        aggfunc="first",
        observed=True,
    ).reset_index()
    wide["_order"] = [order[(r, m)] for r, m in zip(wide["run_id"], wide["model"], strict=True)]
    wide["_dim"] = pd.to_numeric(wide["dim_key"], errors="coerce").fillna(-1)
    wide = wide.sort_values(["_order", "_dim"], ascending=[True, False])
    metrics = [m for m in HEADLINE_METRICS if m in wide.columns]
    wide = wide.rename(columns={"dim_key": "dim", "run_label": "run", "corpus_size": "corpus"})
    wide = wide.rename(columns={"n_queries": "queries"})
    columns = ["run", "model", "kind", "dim", *metrics, "corpus", "queries"]
    return wide[columns].reset_index(drop=True)


def deltas_table(
    result: RetrievalEvalResult, metrics: Sequence[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """Tuned-minus-base deltas of the headline metrics, formatted (core.evaluation.verdict.deltas_display):
    the primary family first, adjusted p, verdict and power."""
    from core.evaluation.lexical import tuned_first
    from core.evaluation.verdict import deltas_display

    shown = deltas_display(result.deltas, metrics, confidence=result.confidence)
    return tuned_first(shown, result.models)


def delta_sentences(result: RetrievalEvalResult, metric: str | None = None) -> list[str]:
    """One plain sentence per tuned model and dim for `metric` (the primary metric by default),
    from core.evaluation.verdict.row_sentence: tuned models first, then the hybrids."""
    from core.evaluation.lexical import tuned_first
    from core.evaluation.verdict import row_sentence

    if result.deltas.empty:
        return []
    metric = metric or result.primary_metric
    rows = result.deltas[result.deltas["metric"] == metric].sort_values(
        ["model", "dim"], ascending=[True, False]
    )
    rows = tuned_first(rows, result.models)
    return [row_sentence(r, result.confidence) for _, r in rows.iterrows()]


def ragas_display_table(ragas: pd.DataFrame) -> pd.DataFrame:
    """RAGAS comparison rows formatted: mean [CI], scored, failed, failures by reason."""
    columns = [
        "run",
        "retriever",
        "metric",
        "mean [95% CI]",
        "scored",
        "failed",
        "failures",
        "samples",
    ]
    if ragas.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "run": ragas["run_label"],
            "retriever": ragas["retriever"],
            "metric": ragas["metric"],
            "mean [95% CI]": [
                fmt_ci(m, lo, hi)
                for m, lo, hi in zip(ragas["mean"], ragas["ci_low"], ragas["ci_high"], strict=True)
            ],
            "scored": ragas["n_ok"],
            "failed": ragas["n_failed"],
            "failures": ragas["failures"].replace("", "—"),
            "samples": ragas["n_samples"],
        },
        columns=columns,
    ).reset_index(drop=True)


def ragas_deltas_table(result: RagasEvalResult) -> pd.DataFrame:
    """Each retriever minus base per RAGAS metric: Δ, CI, sign-flip p, Holm p and the verdict
    (core.evaluation.verdict; the metrics of one retriever are one exploratory family)."""
    from core.evaluation.statistics import format_p, holm_adjust
    from core.evaluation.verdict import is_significant, verdict_text

    rows = []
    for other, metrics in result.summary.get("comparisons", {}).items():
        tested = [m for m, e in metrics.items() if e.get("p_value") is not None]
        adjusted = dict(
            zip(tested, holm_adjust([metrics[m]["p_value"] for m in tested]), strict=True)
        )
        for metric, e in metrics.items():
            delta, low, high, p = (e.get(x) for x in ("delta", "ci_low", "ci_high", "p_value"))
            p_holm = adjusted.get(metric)
            significant = p_holm is not None and is_significant(p_holm, low, high, ALPHA)
            rows.append(
                {
                    "retriever": other,
                    "metric": metric,
                    "pairs": questions_text(int(e.get("n_pairs", 0)), e.get("n_clusters")),
                    "delta": fmt(delta, True),
                    "95% CI": "—" if low is None else f"[{fmt(low, True)}, {fmt(high, True)}]",
                    "p": "—" if p is None else format_p(float(p)),
                    "Holm p": "—" if p_holm is None else format_p(float(p_holm)),
                    "better / worse": f"{e.get('n_better', 0)} / {e.get('n_worse', 0)}",
                    "verdict": "too few pairs" if p is None else verdict_text(significant, p_holm),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "retriever",
            "metric",
            "pairs",
            "delta",
            "95% CI",
            "p",
            "Holm p",
            "better / worse",
            "verdict",
        ],
    )
