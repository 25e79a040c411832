"""A fine-tune's live charts: training loss by step and validation ndcg@10 per dim by epoch;
each says what it waits for instead of drawing empty axes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.charts.style import empty_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from core.runs.jobs import JobStatus


def loss_figure(status: JobStatus) -> go.Figure:
    """The training loss by step, from a fine-tune job's progress."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if not status.losses:
        return empty_figure(fig, "Training loss: shows from the first logged step")
    steps, losses = zip(*status.losses, strict=True)
    mode = "lines+markers" if len(steps) > 1 else "markers"  # one point drawn as a line: nothing
    fig.add_trace(go.Scatter(x=list(steps), y=list(losses), mode=mode, name="train loss"))
    fig.update_layout(
        title="Training loss (MatryoshkaLoss, summed over dims)",
        xaxis_title="step",
        yaxis_title="loss",
        height=300,
        margin={"t": 40, "b": 30},
    )
    return fig


def ndcg_figure(status: JobStatus) -> go.Figure:
    """Validation ndcg@10 per dim by epoch (epoch 0: the base model)."""
    import plotly.graph_objects as go

    points: dict[str, list[tuple[float, float]]] = {}
    for ev in status.evals:
        for dim, value in (ev.get("ndcg@10") or {}).items():
            points.setdefault(dim, []).append((float(ev.get("epoch", 0)), float(value)))
    fig = go.Figure()
    if not points:
        return empty_figure(fig, "Validation ndcg@10: shows once the base model is evaluated")
    for dim in sorted(points, key=int, reverse=True):
        xs, ys = zip(*points[dim], strict=True)
        fig.add_trace(
            go.Scatter(
                x=list(xs), y=list(ys), mode="lines+markers", name=f"dim {dim}", cliponaxis=False
            )
        )
    last = max(x for xy in points.values() for x, _ in xy)
    fig.update_layout(
        title="Validation ndcg@10 per dim (epoch 0 = base model)",
        # Whole epochs from 0: one point at epoch 0 drew an axis from -1 to 1 ticked every 0.5.
        xaxis={"title": "epoch", "range": [0, max(1.0, last)], "tick0": 0, "dtick": 1},
        yaxis_title="ndcg@10",
        height=300,
        margin={"t": 40, "b": 30},
    )
    return fig
