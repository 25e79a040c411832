"""Colours and captions every figure shares: one colour per model, the context line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.formatting import questions_text

if TYPE_CHECKING:
    import plotly.graph_objects as go


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


BM25_COLOR = "#7f7f7f"


RANDOM_COLOR = "#bbbbbb"


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


HYBRID_MARK = " + BM25"  # a hybrid's label: its dense model's, then this and its fusion


def dense_model_of(label: str) -> str | None:
    """The dense model a hybrid fuses with BM25 ('tuned + BM25 (RRF)' -> 'tuned'), else None."""
    return label.split(HYBRID_MARK)[0] if HYBRID_MARK in label else None


def model_colors(models: list[str]) -> dict[str, str]:
    """One colour per model, the same on every chart of an evaluation: the dense models take
    the palette in their order (base first), and a hybrid takes its dense model's colour (its
    marker or bar pattern tells it apart)."""
    dense = [m for m in dict.fromkeys(models) if dense_model_of(m) is None]
    out = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dense)}
    spare = len(dense)
    for m in models:
        if m not in out:
            own = out.get(str(dense_model_of(m)))
            out[m] = own or PALETTE[spare % len(PALETTE)]
            spare += own is None
    return out


def hybrid_pattern(label: str) -> str:
    """The bar pattern (plotly's pattern shapes) of a hybrid: '/' for RRF, 'x' for the weighted
    sum; '' for any other model."""
    if dense_model_of(label) is None:
        return ""
    return "x" if "weighted" in label else "/"


def empty_figure(fig: go.Figure, text: str) -> go.Figure:
    """A figure that has nothing to draw says so once (no title repeating it), without empty
    axes from -1 to 4."""
    fig.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[
            {
                "text": text,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
            }
        ],
        height=200,
    )
    return fig


def context_caption(
    corpus_size: int,
    n_queries: int,
    random_score: float | None = None,
    metric: str = "",
    n_clusters: int | None = None,
) -> str:
    """'corpus 1,234 chunks · 120 questions in 90 clusters · random ranker ndcg@10 = 0.004'."""
    parts = [f"corpus {corpus_size:,} chunks", questions_text(n_queries, n_clusters)]
    if random_score is not None:
        parts.append(f"random ranker {metric} = {random_score:.3f}".replace("  ", " "))
    return " · ".join(parts)
