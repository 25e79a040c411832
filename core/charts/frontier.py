"""The what-to-ship figure: quality against bytes per vector for every (model, dim, precision) cell."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

from core.charts.style import empty_figure, model_colors

if TYPE_CHECKING:
    import plotly.graph_objects as go


_CELL_SYMBOLS = {
    "float32": "circle",
    "int8": "square",
    "int8 + rescoring": "square-open",
    "binary": "diamond",
    "binary + rescoring": "diamond-open",
}


def frontier_figure(
    frontier: pd.DataFrame, metric: str, recommended: tuple[str, int, str] | None = None
) -> go.Figure:
    """What to ship: `metric` against bytes per vector (log scale) for every (model, dim,
    precision) cell, with 95% CI error bars; the frontier joined by a line, the reference and
    the recommended cell marked. Marker shapes are precisions, colours models."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if frontier.empty:
        return empty_figure(fig, "No frontier in this run")
    _cells(fig, frontier)
    _marks(fig, frontier, recommended)
    fig.update_layout(
        title={
            "text": f"What to ship: {metric} against bytes per vector<br><sup>"
            "every model, dim and precision · dotted: the frontier · diamond: reference · ring: "
            "recommended</sup>"
        },
        # Powers of ten only: plotly's minor log ticks read '6 7 8 9 10 2 3'.
        xaxis={"title": "bytes per vector (log)", "type": "log", "dtick": 1},
        yaxis={"title": metric},
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 70},
        height=560,
    )
    return fig


def _cells(fig: go.Figure, frontier: pd.DataFrame) -> None:
    """One trace per (model, precision): the cells with their intervals."""
    import plotly.graph_objects as go

    colors = model_colors(list(dict.fromkeys(frontier["model"])))
    for (model, cell), part in frontier.groupby(["model", "cell"], sort=False):
        fig.add_trace(
            go.Scatter(
                x=part["bytes_per_vector"],
                y=part["value"],
                mode="markers",
                name=f"{model} · {cell}",
                marker={
                    "color": colors[model],
                    "symbol": _CELL_SYMBOLS.get(cell, "circle"),
                    "size": 10,
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["value"]).tolist(),
                    "arrayminus": (part["value"] - part["ci_low"]).tolist(),
                    "thickness": 1,
                },
                customdata=part[["dim", "delta"]].to_numpy(),
                hovertemplate="%{customdata[0]}d, "
                + html.escape(str(cell))
                + ": %{y:.3f}, Δ %{customdata[1]:+.3f} · %{x} bytes<extra>"
                + html.escape(str(model))
                + "</extra>",
            )
        )


def _marks(
    fig: go.Figure, frontier: pd.DataFrame, recommended: tuple[str, int, str] | None
) -> None:
    """The frontier line, the reference's diamond and the recommended cell's ring."""
    import plotly.graph_objects as go

    best = frontier[frontier["pareto"]].sort_values("bytes_per_vector")
    fig.add_trace(
        go.Scatter(
            x=best["bytes_per_vector"],
            y=best["value"],
            mode="lines",
            name="frontier",
            line={"color": "black", "dash": "dot", "width": 1},
            hoverinfo="skip",
        )
    )
    ref = frontier[frontier["reference"]]
    fig.add_trace(
        go.Scatter(
            x=ref["bytes_per_vector"],
            y=ref["value"],
            mode="markers",
            name="reference",
            marker={"symbol": "diamond-open", "size": 16, "line": {"width": 2}},
            hoverinfo="skip",
        )
    )
    if recommended is not None:
        model, dim, cell = recommended
        pick = frontier[
            (frontier["model"] == model) & (frontier["dim"] == dim) & (frontier["cell"] == cell)
        ]
        fig.add_trace(
            go.Scatter(
                x=pick["bytes_per_vector"],
                y=pick["value"],
                mode="markers",
                name="recommended",
                marker={
                    "symbol": "circle-open",
                    "size": 24,
                    "color": "#d62728",
                    "line": {"width": 3},
                },
                hoverinfo="skip",
            )
        )
