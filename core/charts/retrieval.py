"""Retrieval-eval figures: a metric by dimension with the random ranker, tuned-minus-base deltas with
intervals (solid = significant after the family's adjustment), the Matryoshka trade-off, general similarity. Every
figure carries the corpus size, the query count and the random ranker's score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from core.charts.style import (
    BM25_COLOR,
    RANDOM_COLOR,
    context_caption,
    empty_figure,
    hybrid_pattern,
    model_colors,
    rgba,
)
from core.formatting import questions_text

if TYPE_CHECKING:
    import plotly.graph_objects as go


def metric_vs_dim_figure(metrics: pd.DataFrame, metric: str) -> go.Figure:
    """One line per embedding model of `metric` against dimension, with a 95% CI band; BM25 and
    the random ranker as horizontal reference lines."""
    import plotly.graph_objects as go

    rows = metrics[metrics["metric"] == metric]
    fig = go.Figure()
    if rows.empty:
        return empty_figure(fig, f"No values for {metric}")
    embedded = rows[rows["dim"].notna()]
    models = list(dict.fromkeys(embedded["model"]))
    colors = model_colors(models)
    for model in models:
        part = embedded[embedded["model"] == model].sort_values("dim")
        x = part["dim"].astype(int).tolist()
        color = colors[model]
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=part["ci_high"].tolist() + part["ci_low"].tolist()[::-1],
                fill="toself",
                mode="lines",
                fillcolor=rgba(color, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                name=f"{model} 95% CI",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["value"],
                mode="lines+markers",
                name=model,
                line={"color": color, "dash": "dot" if hybrid_pattern(model) else "solid"},
                marker={"symbol": "diamond" if hybrid_pattern(model) else "circle", "size": 9},
                customdata=part[["ci_low", "ci_high"]].to_numpy(),
                hovertemplate="dim %{x}: %{y:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})<extra>"
                + model
                + "</extra>",
            )
        )
    for _, row in rows[rows["dim"].isna()].iterrows():
        fig.add_hline(
            y=row["value"],
            line={"color": BM25_COLOR, "dash": "dash"},
            annotation_text=f"{row['model']} {row['value']:.3f}",
            annotation_position="top left",
        )
    baseline = float(rows["random_baseline"].iloc[0])
    fig.add_hline(
        y=baseline,
        line={"color": RANDOM_COLOR, "dash": "dot"},
        annotation_text=f"random ranker {baseline:.3f}",
        annotation_position="bottom right",
    )
    dims = sorted(embedded["dim"].dropna().astype(int).unique())
    fig.update_layout(
        title={
            "text": f"{metric} by dimension<br><sup>"
            + context_caption(
                int(rows["corpus_size"].iloc[0]),
                int(rows["n_queries"].iloc[0]),
                n_clusters=_clusters(rows),
            )
            + "</sup>"
        },
        xaxis={
            "title": "dimension",
            "type": "log",
            "tickvals": dims,
            "ticktext": [str(d) for d in dims],
        },
        yaxis={"title": metric, "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 70},
    )
    return fig


def _clusters(rows: pd.DataFrame) -> int | None:
    return int(rows["n_clusters"].iloc[0]) if "n_clusters" in rows else None


def delta_bars_figure(deltas: pd.DataFrame, metric: str) -> go.Figure:
    """Bars of model-minus-base `metric` per dimension with CI error bars; solid bars are
    significant after the family's adjustment (core.evaluation.verdict), pale bars are not."""
    import plotly.graph_objects as go

    rows = deltas[deltas["metric"] == metric]
    fig = go.Figure()
    if rows.empty:
        return empty_figure(fig, f"No deltas for {metric} (evaluate a tuned model with the base)")
    models = list(dict.fromkeys(rows["model"]))
    colors = model_colors([str(rows["base_model"].iloc[0]), *models])
    for model in models:
        part = rows[rows["model"] == model].sort_values("dim", ascending=False)
        sig = part["significant"].astype(bool).tolist()
        fig.add_trace(
            go.Bar(
                x=[str(int(d)) for d in part["dim"]],
                y=part["delta"],
                name=model,
                marker={
                    "color": [rgba(colors[model], 0.9 if s else 0.3) for s in sig],
                    "line": {"color": colors[model], "width": 1},
                    "pattern": {"shape": hybrid_pattern(model)},
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["delta"]).tolist(),
                    "arrayminus": (part["delta"] - part["ci_low"]).tolist(),
                },
                customdata=part[["ci_low", "ci_high", "p_adj", "verdict"]].to_numpy(),
                hovertemplate="dim %{x}: Δ %{y:+.3f} (CI %{customdata[0]:+.3f}–"
                "%{customdata[1]:+.3f}, adjusted p=%{customdata[2]:.3g}): %{customdata[3]}"
                "<extra>" + model + "</extra>",
            )
        )
    base = rows["base_model"].iloc[0]
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title={
            "text": f"Δ {metric} vs {base} (solid = significant, family-adjusted)<br><sup>"
            f"{questions_text(int(rows['n_queries'].iloc[0]), _clusters(rows))}, paired; "
            "cluster bootstrap intervals</sup>"
        },
        barmode="group",
        xaxis={"title": "dimension", "type": "category"},
        yaxis={"title": f"Δ {metric}", "zeroline": True},
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 70},
    )
    return fig


def tradeoff_figure(metrics: pd.DataFrame, tradeoff: pd.DataFrame, metric: str) -> go.Figure:
    """Matryoshka trade-off: `metric` against bytes per vector (float32) and against measured
    exact-search latency per query, one line per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = metrics[(metrics["metric"] == metric) & metrics["dim"].notna()]
    joined = rows.merge(tradeoff, on=["model", "dim"], how="inner") if not tradeoff.empty else rows
    if tradeoff.empty or joined.empty:
        return empty_figure(go.Figure(), "No trade-off in this run")
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "quality vs bytes per vector (float32)",
            "quality vs query latency (exact search)",
        ),
        shared_yaxes=True,
    )
    models = list(dict.fromkeys(joined["model"]))
    colors = model_colors(models)
    for model in models:
        part = joined[joined["model"] == model].sort_values("dim")
        text = [f"{int(d)}d" for d in part["dim"]]
        error = {
            "type": "data",
            "symmetric": False,
            "array": (part["ci_high"] - part["value"]).tolist(),
            "arrayminus": (part["value"] - part["ci_low"]).tolist(),
        }
        # The dims are named once, beside the first model: the others' labels would overlap.
        labelled = model == models[0]
        for col, x, unit in ((1, part["bytes_per_vector"], "bytes"), (2, part["latency_ms"], "ms")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=part["value"],
                    mode="lines+markers+text" if labelled else "lines+markers",
                    text=text,
                    textposition="top center",
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    line={"color": colors[model]},
                    error_y=error,
                    hovertemplate="%{text}: %{y:.3f} at %{x:.3g} "
                    + unit
                    + "<extra>"
                    + model
                    + "</extra>",
                ),
                row=1,
                col=col,
            )
    if not rows.empty:
        caption = context_caption(
            int(rows["corpus_size"].iloc[0]),
            int(rows["n_queries"].iloc[0]),
            float(rows["random_baseline"].iloc[0]),
            metric,
        )
    else:
        caption = "no embedding model"
    fig.update_xaxes(title_text="bytes per vector", type="log", dtick=1, row=1, col=1)
    fig.update_xaxes(title_text="ms per query (median)", row=1, col=2)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(
        title={"text": f"Matryoshka trade-off: {metric}<br><sup>{caption}</sup>"},
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 90},
    )
    return fig


def similarity_figure(similarity: pd.DataFrame) -> go.Figure:
    """General similarity (Spearman or AP) per model with 95% CIs."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if similarity is None or similarity.empty:
        return empty_figure(fig, "No general-similarity result")
    colors = model_colors(list(similarity["model"]))
    fig.add_trace(
        go.Bar(
            x=similarity["model"],
            y=similarity["value"],
            marker={"color": [colors[m] for m in similarity["model"]]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (similarity["ci_high"] - similarity["value"]).tolist(),
                "arrayminus": (similarity["value"] - similarity["ci_low"]).tolist(),
            },
        )
    )
    metric = similarity["metric"].iloc[0]
    fig.update_layout(
        title={
            "text": f"General similarity: {metric}<br><sup>{int(similarity['n_pairs'].iloc[0])} pairs · "
            f"{similarity['source'].iloc[0]}</sup>"
        },
        yaxis={"title": metric, "range": [min(0.0, float(similarity["ci_low"].min())), 1.0]},
        margin={"t": 70},
    )
    return fig
