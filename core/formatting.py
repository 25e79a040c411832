"""How figures are written for people, everywhere (pages, CLI, report, model card): three
decimals, signed deltas that never read as zero, intervals as [low, high]."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def fmt(value: Any, signed: bool = False) -> str:
    """A figure as shown everywhere: 3 decimals ('—' when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"


def fmt_ci(value: Any, low: Any, high: Any, signed: bool = False) -> str:
    """'0.812 [0.750, 0.870]' (just the value when there is no interval)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return fmt(value, signed)
    return f"{fmt(value, signed)} [{fmt(low, signed)}, {fmt(high, signed)}]"


def fmt_interval(low: Any, high: Any, signed: bool = False) -> str:
    """'[0.750, 0.870]' ('—' when there is no interval)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "—"
    return f"[{fmt(low, signed)}, {fmt(high, signed)}]"


def signed(delta: Any) -> str:
    """A delta for people: '+0.052'; a tiny non-zero one keeps two significant digits
    ('+0.00031') so it never reads as '+0.000'."""
    if delta is None or pd.isna(delta):
        return "—"
    d = float(delta)
    return f"{d:+.2g}" if d != 0 and abs(d) < 0.0005 else f"{d:+.3f}"


def questions_text(n_queries: int, n_clusters: Any) -> str:
    """'23 questions' or '23 questions in 20 clusters' (questions sharing a gold or linked chunk
    are one cluster: the statistics count clusters, not questions)."""
    text = f"{int(n_queries):,} question{'' if int(n_queries) == 1 else 's'}"
    if n_clusters is not None and n_clusters == n_clusters and 0 < int(n_clusters) != n_queries:
        text += f" in {int(n_clusters):,} cluster{'' if int(n_clusters) == 1 else 's'}"
    return text


def duration_text(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 1 h 20 min': never 'about 0 min'."""
    seconds = max(1.0, float(seconds))
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def count_text(n: int, noun: str, plural: str | None = None) -> str:
    """'1 file', '3 files': the noun agrees with the number; `plural` for nouns that do not
    just take an 's'."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
