"""The verdict: which base-vs-tuned differences count. One home for the page, the CLI, the report,
the charts and the model card.

How it works:
1. Families. In one evaluation, one metric across every compared (model, dim) — each tuned
   model and each hybrid against the base at that dim — is one family of tests. The *primary*
   metric's family (nDCG@10 unless chosen otherwise) decides the headline verdict; every other
   metric is exploratory, adjusted within its own family.
2. Adjustment. Within a family the p-values are adjusted by a Westfall–Young step-down max-T
   over the same cluster sign-flip draws (core.evaluation.statistics.maxt_adjust), so the chance
   of any false "significant" in the family stays below alpha while the strong correlation
   between Matryoshka dims is used, not ignored. A deltas table saved before families spanned
   an evaluation (no `p_adj` column) keeps its Holm adjustment within one model's metric.
3. A difference is significant when its adjusted p is below alpha AND its bootstrap interval
   excludes zero (conservative: both must agree). Its direction is the sign of the delta.
4. Power. Beside every delta: the smallest difference these clusters detect with 80% power at
   the level the family's adjustment effectively gives that comparison (max-T's critical value;
   alpha / family size under Holm), from the cluster-robust spread of the per-query differences
   (Student's t, clusters - 1 degrees of freedom), and roughly how many questions would detect
   the observed delta at that level.
5. What a headline must say besides the tests (queries copied from the documents, what a
   cross-fit judges) is core.evaluation.cautions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.evaluation.statistics import (
    detectable_from_se,
    format_p,
    holm_adjust,
    questions_needed_from_se,
)
from core.formatting import questions_text, signed

PRIMARY_METRIC = "ndcg@10"
POWER = 0.8
PRIMARY = "primary"
EXPLORATORY = "exploratory"
MAXT = "max-T"
HOLM = "Holm"
VERDICT_COLUMNS = (
    "family",
    "family_size",
    "p_adj",
    "adjustment",
    "alpha_level",
    "significant",
    "direction",
    "mde",
    "n_needed",
    "verdict",
)


def alpha_of(confidence: float) -> float:
    """The test level that goes with an interval's confidence (0.95 -> 0.05)."""
    return 1.0 - float(confidence)


def is_significant(p_adjusted: float, ci_low: float, ci_high: float, alpha: float) -> bool:
    """Significant when the adjusted p is below alpha and the interval excludes zero."""
    if p_adjusted is None or pd.isna(p_adjusted):
        return False
    return bool(p_adjusted < alpha and (ci_low > 0 or ci_high < 0))


def verdict_text(significant: bool, p_adjusted: float | None, method: str = HOLM) -> str:
    """'significant (max-T p=0.012)' or 'not significant (Holm p=0.41)'."""
    if p_adjusted is None or pd.isna(p_adjusted):
        return "not tested"
    word = "significant" if significant else "not significant"
    return f"{word} ({method} p={format_p(float(p_adjusted))})"


def _direction(significant: bool, delta: float) -> str:
    if not significant:
        return "no difference"
    return "better" if delta > 0 else "worse"


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(math.nan, index=frame.index)


def upgrade_deltas(frame: pd.DataFrame) -> pd.DataFrame:
    """A deltas table saved before cluster statistics and evaluation-wide families, in today's
    columns: `p_holm` becomes `p_adj` (adjusted by Holm within one model's metric)."""
    if "p_holm" in frame and "p_adj" not in frame:
        frame = frame.rename(columns={"p_holm": "p_adj"})
        frame["adjustment"] = HOLM
    return frame


def assign_families(
    deltas: pd.DataFrame,
    primary_metric: str = PRIMARY_METRIC,
    alpha: float = 0.05,
    power: float = POWER,
    groups: Sequence[str] = ("model", "metric"),
) -> pd.DataFrame:
    """Add the family, adjusted p, significance, direction, power and verdict columns to a
    deltas table (one row per model, dim and metric with p_value, delta, ci_low, ci_high,
    n_queries and, when known, n_clusters, se_diff or sd_diff). Rows that carry a max-T `p_adj`
    (core.evaluation.scoring) keep it, with the whole evaluation's metric as their family; rows
    without one are Holm-adjusted within `groups` (one model's metric across its dims)."""
    frame = deltas.copy()
    if frame.empty:
        for column in VERDICT_COLUMNS:
            frame[column] = pd.Series(dtype=object)
        return frame
    frame["family"] = np.where(frame["metric"] == primary_metric, PRIMARY, EXPLORATORY)
    given = "p_adj" in frame and frame["p_adj"].notna().all()
    if given:
        frame["family_size"] = frame.groupby("metric")["p_value"].transform("size").astype(int)
        frame["adjustment"] = _column(frame, "adjustment").fillna(MAXT)
        levels = _column(frame, "alpha_level")
        frame["alpha_level"] = levels.fillna(alpha / frame["family_size"])
    else:
        keys = list(groups)
        frame["family_size"] = frame.groupby(keys)["p_value"].transform("size").astype(int)
        frame["p_adj"] = frame.groupby(keys)["p_value"].transform(
            lambda p: holm_adjust(p.to_numpy(dtype=np.float64))
        )
        frame["adjustment"] = HOLM
        frame["alpha_level"] = alpha / frame["family_size"]
    frame["significant"] = [
        is_significant(p, lo, hi, alpha)
        for p, lo, hi in zip(frame["p_adj"], frame["ci_low"], frame["ci_high"], strict=True)
    ]
    frame["direction"] = [
        _direction(s, d) for s, d in zip(frame["significant"], frame["delta"], strict=True)
    ]
    n = frame["n_queries"].astype(int)
    clusters = _column(frame, "n_clusters").fillna(n).astype(int).where(lambda c: c > 0, n)
    frame["n_clusters"] = clusters
    se = _column(frame, "se_diff")
    se = se.fillna(_column(frame, "sd_diff") / np.sqrt(n))
    dfs = _column(frame, "df")
    frame["mde"] = [
        detectable_from_se(float(e), int(m), float(a), power, None if pd.isna(f) else float(f))
        for e, m, a, f in zip(se, clusters, frame["alpha_level"], dfs, strict=True)
    ]
    frame["n_needed"] = [
        questions_needed_from_se(float(e), int(q), int(m), float(d), float(a), power)
        for e, q, m, d, a in zip(se, n, clusters, frame["delta"], frame["alpha_level"], strict=True)
    ]
    frame["verdict"] = [
        verdict_text(s, p, str(m))
        for s, p, m in zip(frame["significant"], frame["p_adj"], frame["adjustment"], strict=True)
    ]
    return frame


def method_text(primary_metric: str, confidence: float = 0.95) -> str:
    """How to read the verdict, the same on the page, in the report, the CLI and the card."""
    alpha = alpha_of(confidence)
    return (
        f"{primary_metric} is the primary metric: its paired tests over every model and dim of "
        "this evaluation are one family, adjusted by a Westfall–Young step-down max-T over the "
        "same sign-flip draws (which uses the correlation between dims); every other metric is "
        "exploratory, adjusted within its own family. Questions that share a gold or linked "
        "chunk are one cluster and count as one piece of evidence: intervals resample clusters, "
        "the tests flip whole clusters (McNemar for a hit rate when every cluster is one "
        f"question). Significant means the adjusted p is below {alpha:.2f} and the "
        f"{confidence:.0%} bootstrap interval of the difference excludes zero. The detectable Δ "
        f"is the smallest difference these clusters find with {POWER:.0%} power at the level "
        "the adjustment gives each test (Student's t, clusters - 1 degrees of freedom)."
    )


def _dim(dim: Any) -> str:
    return "—" if dim is None or pd.isna(dim) else f"{int(dim)}d"


def _count(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def _level_text(row: pd.Series | dict[str, Any]) -> str:
    size = int(row.get("family_size", 1) or 1)
    if str(row.get("adjustment", HOLM)) == MAXT:
        level = row.get("alpha_level")
        shown = "" if level is None or pd.isna(level) else f", α={float(level):.4g}"
        return f"at the level max-T gives each of the {size} tests of its family{shown}"
    return f"at Holm's strictest level, α/{size}"


def power_text(row: pd.Series | dict[str, Any], power: float = POWER) -> str:
    """For a delta that is not significant: the smallest detectable delta and the questions
    that would detect the observed one ('' when significant or unknown)."""
    if bool(row.get("significant")):
        return ""
    mde = row.get("mde")
    if mde is None or pd.isna(mde):
        return ""
    who = questions_text(int(row["n_queries"]), row.get("n_clusters"))
    text = f"{who} detect |Δ| ≥ {float(mde):.3f} with {power:.0%} power ({_level_text(row)})"
    needed = row.get("n_needed")
    if needed is not None and not pd.isna(needed):
        text += f"; about {_count(needed)} would be needed to detect Δ {signed(row['delta'])}"
    return text


def row_sentence(row: pd.Series | dict[str, Any], confidence: float = 0.95) -> str:
    """One plain sentence for one delta: values, delta, interval, verdict, and power."""
    level = f"{confidence:.0%}"
    text = (
        f"{row['model']} vs {row['base_model']} at {_dim(row['dim'])}: {row['metric']} "
        f"{float(row['base_value']):.3f} → {float(row['value']):.3f}, Δ {signed(row['delta'])} "
        f"({level} CI {float(row['ci_low']):+.3f} to {float(row['ci_high']):+.3f}, "
        f"{questions_text(int(row['n_queries']), row.get('n_clusters'))}, paired): "
        f"{row['verdict']}."
    )
    power = power_text(row)
    return f"{text} {power[0].upper()}{power[1:]}." if power else text


@dataclass(frozen=True)
class Headline:
    """The headline verdict of one tuned model on the primary metric, across its dims."""

    model: str
    base_model: str
    metric: str
    dims: list[int]
    better: list[int] = field(default_factory=list)
    worse: list[int] = field(default_factory=list)
    n_queries: int = 0
    text: str = ""
    n_clusters: int = 0

    @property
    def decided(self) -> bool:
        """Whether any dim differs significantly."""
        return bool(self.better or self.worse)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_model": self.base_model,
            "metric": self.metric,
            "dims": self.dims,
            "better": self.better,
            "worse": self.worse,
            "n_queries": self.n_queries,
            "n_clusters": self.n_clusters,
            "text": self.text,
        }


def _span(values: Sequence[float], fmt: Any) -> str:
    """'0.091' or '0.091 to 0.140'; `fmt` is a format spec or a function."""
    show = fmt if callable(fmt) else (lambda v: format(v, fmt))
    lo, hi = min(values), max(values)
    return show(lo) if math.isclose(lo, hi) else f"{show(lo)} to {show(hi)}"


def family_text(rows: pd.DataFrame, metric: str) -> str:
    """What the headline's family is, in words."""
    first = rows.iloc[0]
    size = int(first.get("family_size", len(rows)) or len(rows))
    if str(first.get("adjustment", HOLM)) == MAXT:
        if size == 1:
            return f"{metric}, primary metric, one test"
        return (
            f"{metric}, primary metric; one family of {size} tests, every model and dim of this "
            "evaluation, Westfall–Young max-T adjusted"
        )
    m = len(rows)
    return (
        f"{metric}, primary metric, Holm-adjusted over {m} dims"
        if m > 1
        else f"{metric}, primary metric, one test"
    )


def _headline_text(
    part: pd.DataFrame, model: str, base: str, metric: str
) -> tuple[str, list, list]:
    rows = part.sort_values("dim", ascending=False)
    m = len(rows)
    family = family_text(rows, metric)
    method = str(rows["adjustment"].iloc[0]) if "adjustment" in rows else HOLM
    better = [int(d) for d, s in zip(rows["dim"], rows["direction"], strict=True) if s == "better"]
    worse = [int(d) for d, s in zip(rows["dim"], rows["direction"], strict=True) if s == "worse"]
    sentences = []
    for word, dims in (("better than", better), ("worse than", worse)):
        if not dims:
            continue
        cells = [
            f"{int(r['dim'])}d (Δ {signed(r['delta'])}, {method} p={format_p(float(r['p_adj']))})"
            for _, r in rows.iterrows()
            if int(r["dim"]) in dims
        ]
        sentences.append(f"{model} is significantly {word} {base} at {', '.join(cells)}")
    undecided = rows[~rows["significant"].astype(bool)]
    if not sentences:
        where = f"at {int(rows['dim'].iloc[0])}d" if m == 1 else f"at any of the {m} dims"
        sentences.append(f"No significant difference between {model} and {base} {where}")
    elif not undecided.empty:
        dims = ", ".join(f"{int(d)}d" for d in undecided["dim"])
        sentences.append(f"not significant at {dims}")
    text = f"{'; '.join(sentences)} ({family})."
    mdes = [float(x) for x in undecided["mde"] if not pd.isna(x)]
    if mdes:
        who = questions_text(int(rows["n_queries"].iloc[0]), rows["n_clusters"].iloc[0])
        text += (
            f" With {who} the test detects only differences of {_span(mdes, '.3f')} or "
            f"more ({POWER:.0%} power); the observed Δ of {_span(list(undecided['delta']), signed)}"
        )
        needed = [float(x) for x in undecided["n_needed"] if not pd.isna(x)]
        text += (
            f" would need about {_span(needed, ',.0f')} questions to detect."
            if needed
            else " cannot be detected with any number of questions."
        )
    return text, better, worse


def headline_verdicts(
    deltas: pd.DataFrame, primary_metric: str | None = None, caution: str = ""
) -> list[Headline]:
    """The headline verdict of each tuned model: its primary-family rows, in words, with
    `caution` (copied_query_caution) appended when the questions call for it."""
    if deltas.empty or "family" not in deltas:
        return []
    rows = deltas[deltas["family"] == PRIMARY]
    if primary_metric is not None:
        rows = deltas[deltas["metric"] == primary_metric]
    out = []
    for model, part in rows.groupby("model", sort=False):
        part = part[part["dim"].notna()]
        if part.empty:
            continue
        base = str(part["base_model"].iloc[0])
        metric = str(part["metric"].iloc[0])
        text, better, worse = _headline_text(part, str(model), base, metric)
        clusters = part["n_clusters"].iloc[0] if "n_clusters" in part else None
        out.append(
            Headline(
                model=str(model),
                base_model=base,
                metric=metric,
                dims=sorted((int(d) for d in part["dim"]), reverse=True),
                better=better,
                worse=worse,
                n_queries=int(part["n_queries"].iloc[0]),
                text=f"{text} {caution}" if caution else text,
                n_clusters=0 if clusters is None or pd.isna(clusters) else int(clusters),
            )
        )
    return out


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or pd.isna(value):
        return "—"
    return format(float(value), spec)


DISPLAY_COLUMNS = [
    "model",
    "dim",
    "metric",
    "family",
    "base",
    "tuned",
    "delta",
    "CI",
    "questions",
    "p",
    "adjusted p",
    "test",
    "verdict",
    "detectable Δ (80% power)",
    "queries to detect Δ",
    "warning",
]


def deltas_display(
    deltas: pd.DataFrame, metrics: Sequence[str] | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """The deltas formatted for people (page, report, CLI): one row per model, metric and dim,
    the primary family first."""
    columns = [c if c != "CI" else f"{confidence:.0%} CI" for c in DISPLAY_COLUMNS]
    if deltas.empty:
        return pd.DataFrame(columns=columns)
    rows = deltas if metrics is None else deltas[deltas["metric"].isin(list(metrics))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    order = list(metrics) if metrics is not None else list(dict.fromkeys(rows["metric"]))
    rows = rows.assign(
        _primary=(rows["family"] != PRIMARY).astype(int),
        _metric=rows["metric"].map({m: i for i, m in enumerate(order)}),
        _dim=pd.to_numeric(rows["dim"], errors="coerce").fillna(-1),
    ).sort_values(["model", "_primary", "_metric", "_dim"], ascending=[True, True, True, False])
    out = pd.DataFrame(
        {
            "model": rows["model"],
            "dim": [_dim(d).removesuffix("d") for d in rows["dim"]],
            "metric": rows["metric"].astype(str),
            "family": rows["family"],
            "base": rows["base_value"].map(_fmt),
            "tuned": rows["value"].map(_fmt),
            "delta": rows["delta"].map(signed),
            f"{confidence:.0%} CI": [
                f"[{_fmt(lo, '+.3f')}, {_fmt(hi, '+.3f')}]"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "questions": [
                questions_text(int(n), c)
                for n, c in zip(rows["n_queries"], _column(rows, "n_clusters"), strict=True)
            ],
            "p": rows["p_value"].map(lambda p: format_p(float(p))),
            "adjusted p": [
                f"{format_p(float(p))} ({m})"
                for p, m in zip(rows["p_adj"], rows["adjustment"], strict=True)
            ],
            "test": rows["test"],
            "verdict": rows["verdict"],
            "detectable Δ (80% power)": [
                "" if s else _fmt(m) for s, m in zip(rows["significant"], rows["mde"], strict=True)
            ],
            "queries to detect Δ": [
                "" if s else _count(n)
                for s, n in zip(rows["significant"], rows["n_needed"], strict=True)
            ],
            "warning": rows["warning"].fillna("") if "warning" in rows else "",
        },
        columns=columns,
    )
    return out.reset_index(drop=True)


def weak_delta_warnings(
    deltas: pd.DataFrame, primary_metric: str, base: str, n_queries: int, confidence: float
) -> list[str]:
    """One line per model: the dims whose primary-metric interval is wider than the difference
    itself (used from 30 queries up; below that one warning covers every dim)."""
    if deltas.empty:
        return []
    weak = deltas[(deltas["metric"] == primary_metric) & (deltas["warning"] != "")]
    out = []
    for model, part in weak.groupby("model", sort=False):
        dims = ", ".join(str(int(d)) for d in part["dim"])
        out.append(
            f"{model} vs {base}: at dims {dims} the {confidence:.0%} interval of the "
            f"{primary_metric} difference is wider than the difference itself; {n_queries} "
            "queries cannot tell these models apart there."
        )
    return out
