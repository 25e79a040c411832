"""Colours and captions every figure shares: one colour per model, the context line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.formatting import questions_text

if TYPE_CHECKING:
    pass


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


BM25_COLOR = "#7f7f7f"


RANDOM_COLOR = "#bbbbbb"


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def model_colors(models: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


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
