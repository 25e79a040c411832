"""Figures comparing several evaluation runs (the Runs page and the report)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

from core.charts.rag import ragas_bars_figure
from core.charts.style import PALETTE, RANDOM_COLOR, empty_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go


# Figures comparing several evaluation runs (the Runs page and the report).


def comparison_figure(retrieval: pd.DataFrame, metric: str = "ndcg@10") -> go.Figure:
    """`metric` per dimension for every (run, model), with 95% CI error bars; BM25 at its own
    x position and each run's random ranker as a dotted line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rows = retrieval[retrieval["metric"] == metric] if not retrieval.empty else retrieval
    if rows.empty:
        return empty_figure(fig, f"No retrieval values for {metric}")
    several = rows["run_id"].nunique() > 1
    scored = rows[rows["kind"] != "random"]
    series = list(
        dict.fromkeys(zip(scored["run_id"], scored["run_label"], scored["model"], strict=True))
    )
    for i, (run_id, run_label, model) in enumerate(series):
        part = scored[(scored["run_id"] == run_id) & (scored["model"] == model)].sort_values(
            "dim", ascending=False
        )
        x = ["lexical" if pd.isna(d) else f"{int(d)}d" for d in part["dim"]]
        name = f"{model} · {run_label}" if several else model
        fig.add_trace(
            go.Bar(
                x=x,
                y=part["value"],
                name=name,
                marker={"color": PALETTE[i % len(PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["value"]).tolist(),
                    "arrayminus": (part["value"] - part["ci_low"]).tolist(),
                },
                customdata=part[["ci_low", "ci_high"]].to_numpy(),
                hovertemplate="%{x}: %{y:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                "<extra>" + html.escape(name) + "</extra>",
            )
        )
    captions = []
    lines: dict[str, list[str]] = {}  # one dotted line per distinct random score
    for run_id, group in rows.groupby("run_id", sort=False):
        baseline = float(group["random_baseline"].iloc[0])
        lines.setdefault(f"{baseline:.3f}", []).append(_run_tail(run_id))
        captions.append(
            (f"{group['run_label'].iloc[0]}: " if several else "")
            + f"corpus {int(group['corpus_size'].iloc[0]):,} chunks · "
            f"{int(group['n_queries'].iloc[0]):,} queries · random {baseline:.3f}"
        )
    for value, owners in lines.items():
        which = f" ({', '.join(owners)})" if len(lines) > 1 else ""
        fig.add_hline(
            y=float(value),
            line={"color": RANDOM_COLOR, "dash": "dot"},
            annotation_text=f"random ranker {value}{which}",
            annotation_position="top right",
        )
    fig.update_layout(
        barmode="group",
        title={"text": f"{metric} side by side<br><sup>{' | '.join(captions)}</sup>"},
        xaxis={"title": "dimension", "type": "category"},
        yaxis={"title": metric, "range": [0, 1.05]},
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 80},
    )
    return fig


def ragas_comparison_figure(ragas: pd.DataFrame) -> go.Figure:
    """RAGAS means per metric with CIs for every (run, retriever); failure counts in the ticks."""

    table = ragas.copy()
    if not table.empty and table["run_id"].nunique() > 1:
        table["retriever"] = table["retriever"] + " · " + table["run_id"].map(_run_tail)
    return ragas_bars_figure(
        table, title="RAGAS metrics side by side (mean over scored samples, 95% CI)"
    )


def _run_tail(run_id: str) -> str:
    """The distinctive end of a run id, to tell runs apart in a legend."""
    return run_id.rsplit("-", 1)[-1]
