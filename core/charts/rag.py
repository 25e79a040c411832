"""RAG-eval figures: RAGAS means per retriever with intervals (from core.rag.summary.summary_table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from core.charts.style import empty_figure, model_colors

if TYPE_CHECKING:
    import plotly.graph_objects as go


# Appended by the RAG-eval stage (core.rag.scoring); figures take `core.rag.summary.summary_table`.


def ragas_bars_figure(
    summary: pd.DataFrame, retrievers: list[str] | None = None, title: str = ""
) -> go.Figure:
    """Grouped bars per RAGAS metric, one bar per retriever, with 95% bootstrap CIs as error bars.
    The x labels carry each retriever's failure count, so a mean over fewer samples is visible."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if summary is None or summary.empty:
        return empty_figure(fig, "No RAGAS scores")
    labels = retrievers or list(dict.fromkeys(summary["retriever"]))
    colors = model_colors(labels)
    metrics = list(dict.fromkeys(summary["metric"]))
    for label in labels:
        part = summary[summary["retriever"] == label].set_index("metric").reindex(metrics)
        mean = part["mean"].astype(float)
        fig.add_trace(
            go.Bar(
                name=label,
                x=metrics,
                y=mean,
                marker={"color": colors[label]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"].astype(float) - mean).fillna(0).tolist(),
                    "arrayminus": (mean - part["ci_low"].astype(float)).fillna(0).tolist(),
                },
                customdata=part[["ci_low", "ci_high", "n_ok", "n_failed"]].to_numpy(),
                hovertemplate="%{x}: %{y:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                "<br>%{customdata[2]} scored · %{customdata[3]} failed<extra>" + label + "</extra>",
            )
        )
    failed = summary.groupby("metric")["n_failed"].sum().reindex(metrics).fillna(0).astype(int)
    ticks = [f"{m}<br>⚠ {failed[m]} failed" if failed[m] else m for m in metrics]
    lowest = pd.to_numeric(summary["ci_low"], errors="coerce").min()
    bottom = min(0.0, float(lowest)) if pd.notna(lowest) else 0.0  # cosine can be negative
    fig.update_layout(
        barmode="group",
        title={"text": title or "RAGAS metrics (mean over scored samples, 95% CI)"},
        xaxis={"tickmode": "array", "tickvals": metrics, "ticktext": ticks},
        yaxis={"title": "score", "range": [bottom, 1.05]},
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 60, "b": 120},
    )
    return fig
