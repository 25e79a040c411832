"""Plotly figure builders, one section per stage. Headless: figures are returned, pages show them.

Every retrieval figure carries the corpus size, the query count and the random ranker's score,
so a number is never read without its context.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
BM25_COLOR = "#7f7f7f"
RANDOM_COLOR = "#bbbbbb"


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _colors(models: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def context_caption(
    corpus_size: int, n_queries: int, random_score: float | None = None, metric: str = ""
) -> str:
    """'corpus 1,234 chunks · 120 queries · random ranker ndcg@10 = 0.004'."""
    parts = [f"corpus {corpus_size:,} chunks", f"{n_queries:,} queries"]
    if random_score is not None:
        parts.append(f"random ranker {metric} = {random_score:.3f}".replace("  ", " "))
    return " · ".join(parts)


# ------------------------------------------------------------------ retrieval eval


def metric_vs_dim_figure(metrics: pd.DataFrame, metric: str) -> go.Figure:
    """One line per embedding model of `metric` against dimension, with a 95% CI band; BM25 and
    the random ranker as horizontal reference lines."""
    import plotly.graph_objects as go

    rows = metrics[metrics["metric"] == metric]
    fig = go.Figure()
    if rows.empty:
        fig.update_layout(title=f"No values for {metric}")
        return fig
    embedded = rows[rows["dim"].notna()]
    models = list(dict.fromkeys(embedded["model"]))
    colors = _colors(models)
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
                fillcolor=_rgba(color, 0.15),
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
                line={"color": color},
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
            + context_caption(int(rows["corpus_size"].iloc[0]), int(rows["n_queries"].iloc[0]))
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


def delta_bars_figure(deltas: pd.DataFrame, metric: str) -> go.Figure:
    """Bars of model-minus-base `metric` per dimension with CI error bars; solid bars are
    significant after the Holm adjustment (core.evaluation.verdict), pale bars are not."""
    import plotly.graph_objects as go

    rows = deltas[deltas["metric"] == metric]
    fig = go.Figure()
    if rows.empty:
        fig.update_layout(title=f"No deltas for {metric} (evaluate a tuned model with the base)")
        return fig
    models = list(dict.fromkeys(rows["model"]))
    colors = _colors(["__base__", *models])
    for model in models:
        part = rows[rows["model"] == model].sort_values("dim", ascending=False)
        sig = part["significant"].astype(bool).tolist()
        fig.add_trace(
            go.Bar(
                x=[str(int(d)) for d in part["dim"]],
                y=part["delta"],
                name=model,
                marker={
                    "color": [_rgba(colors[model], 0.9 if s else 0.3) for s in sig],
                    "line": {"color": colors[model], "width": 1},
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["delta"]).tolist(),
                    "arrayminus": (part["delta"] - part["ci_low"]).tolist(),
                },
                customdata=part[["ci_low", "ci_high", "p_holm", "verdict"]].to_numpy(),
                hovertemplate="dim %{x}: Δ %{y:+.3f} (CI %{customdata[0]:+.3f}–"
                "%{customdata[1]:+.3f}, Holm p=%{customdata[2]:.3g}): %{customdata[3]}"
                "<extra>" + model + "</extra>",
            )
        )
    base = rows["base_model"].iloc[0]
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title={
            "text": f"Δ {metric} vs {base} (solid = significant, Holm-adjusted)<br><sup>"
            f"{int(rows['n_queries'].iloc[0]):,} paired queries, bootstrap intervals</sup>"
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
    joined = rows.merge(tradeoff, on=["model", "dim"], how="inner")
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
    colors = _colors(models)
    for model in models:
        part = joined[joined["model"] == model].sort_values("dim")
        text = [f"{int(d)}d" for d in part["dim"]]
        error = {
            "type": "data",
            "symmetric": False,
            "array": (part["ci_high"] - part["value"]).tolist(),
            "arrayminus": (part["value"] - part["ci_low"]).tolist(),
        }
        for col, x, unit in ((1, part["bytes_per_vector"], "bytes"), (2, part["latency_ms"], "ms")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=part["value"],
                    mode="lines+markers+text",
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
    fig.update_xaxes(title_text="bytes per vector", type="log", row=1, col=1)
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
        fig.update_layout(title="No general-similarity result")
        return fig
    colors = _colors(list(similarity["model"]))
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


# ------------------------------------------------------------------ RAG eval (RAGAS)
# Appended by the RAG-eval stage (core.rag.scoring); figures take `core.rag.summary.summary_table`.


def ragas_bars_figure(
    summary: pd.DataFrame, retrievers: list[str] | None = None, title: str = ""
) -> go.Figure:
    """Grouped bars per RAGAS metric, one bar per retriever, with 95% bootstrap CIs as error bars.
    The x labels carry each retriever's failure count, so a mean over fewer samples is visible."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if summary is None or summary.empty:
        fig.update_layout(title="No RAGAS scores")
        return fig
    labels = retrievers or list(dict.fromkeys(summary["retriever"]))
    colors = _colors(labels)
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


# Figures comparing several evaluation runs (the Runs page and the report).


def comparison_figure(retrieval: pd.DataFrame, metric: str = "ndcg@10") -> go.Figure:
    """`metric` per dimension for every (run, model), with 95% CI error bars; BM25 at its own
    x position and each run's random ranker as a dotted line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rows = retrieval[retrieval["metric"] == metric] if not retrieval.empty else retrieval
    if rows.empty:
        fig.update_layout(title=f"No retrieval values for {metric}")
        return fig
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
