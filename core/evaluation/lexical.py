"""BM25 and the hybrids beside the question asked: the headline leads with each tuned model
against the base, a hybrid whose weight left one side out is named for what it is, BM25 alone
gets its own line, and what to ship says when a lexical or hybrid retriever scored higher than
every embedding cell it weighs.

How it works:
1. Headlines (core.evaluation.verdict) come tuned models first, in the evaluation's order, then
   the hybrids. A weighted hybrid whose weight, chosen on the validation split, is 0.0 is BM25
   alone (1.0: the dense model alone); its headline says so before its verdict.
2. BM25 has no dimension, so it is in no paired family of the verdict: its line gives its
   primary metric with its interval beside the base's at the base's largest dimension, and the
   difference of the two means.
3. What to ship weighs embedding cells only (core.evaluation.frontier). When BM25 or a hybrid
   has a higher primary metric than the best of those cells, the recommendation says which,
   by how much, and whether the hybrid's paired test against the base called it better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from core.evaluation.verdict import Headline
from core.formatting import fmt_ci, signed

LEXICAL_KINDS = ("bm25", "hybrid")


def degenerate_side(model: dict[str, Any]) -> str | None:
    """'BM25' when a weighted hybrid's weight puts nothing on the dense model, 'dense' when it
    puts nothing on BM25, None for any other retriever."""
    if model.get("kind") != "hybrid" or model.get("fusion") != "weighted":
        return None
    weight = model.get("weight")
    if weight is None or (isinstance(weight, float) and math.isnan(weight)):
        return None
    if math.isclose(float(weight), 0.0):
        return "BM25"
    if math.isclose(float(weight), 1.0):
        return "dense"
    return None


def degenerate_note(model: dict[str, Any]) -> str:
    """'… is BM25 alone (weight 0.0 × dense + 1.0 × BM25, chosen on the validation split)'
    for a hybrid that is one of its sides; '' otherwise."""
    side = degenerate_side(model)
    if side is None:
        return ""
    alone = (
        "BM25 alone" if side == "BM25" else f"{str(model.get('ref') or 'the dense model')} alone"
    )
    weight = float(model["weight"])
    return (
        f"{model['label']} is {alone}: its weight, {weight:.1f} × dense + {1 - weight:.1f} × "
        "BM25, was chosen on the validation split"
    )


def order_headlines(
    headlines: Sequence[Headline], models: Sequence[dict[str, Any]]
) -> list[Headline]:
    """Tuned models' headlines first, then the hybrids' (each in the evaluation's order); a
    hybrid that is one of its sides says so first."""
    by_label = {m.get("label"): m for m in models}
    place = {m.get("label"): n for n, m in enumerate(models)}

    def key(h: Headline) -> tuple[bool, int]:
        lexical = str(by_label.get(h.model, {}).get("kind", "tuned")) in LEXICAL_KINDS
        return lexical, place.get(h.model, len(place))

    ordered = sorted(headlines, key=key)
    out = []
    for h in ordered:
        note = degenerate_note(by_label.get(h.model, {}))
        out.append(replace(h, text=f"{note}. {h.text}") if note else h)
    return out


def tuned_first(frame: pd.DataFrame, models: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """A table with a `model` column reordered as the headlines are: tuned models first, then
    the hybrids, each in the evaluation's order (rows of one model keep their order)."""
    if frame.empty or "model" not in frame:
        return frame
    return frame.iloc[tuned_first_order(list(frame["model"]), models)].reset_index(drop=True)


def tuned_first_order(labels: Sequence[str], models: Sequence[dict[str, Any]]) -> list[int]:
    """Positions of `labels` (model labels) in the headlines' order: tuned models first, then the
    hybrids, each in the evaluation's order; equal labels keep their order."""
    kind = {m.get("label"): m.get("kind") for m in models}
    place = {m.get("label"): n for n, m in enumerate(models)}
    key = [
        (kind.get(m) in LEXICAL_KINDS, place.get(m, len(place)), n) for n, m in enumerate(labels)
    ]
    return sorted(range(len(labels)), key=key.__getitem__)


def bm25_line(metrics: pd.DataFrame, base_label: str, metric: str) -> str:
    """BM25 alone in one sentence beside the base at its largest dim ('' without BM25)."""
    if metrics.empty or "kind" not in metrics:
        return ""
    bm25 = metrics[(metrics["kind"] == "bm25") & (metrics["metric"] == metric)]
    base = metrics[(metrics["model"] == base_label) & (metrics["metric"] == metric)]
    if bm25.empty or base.empty:
        return ""
    b = bm25.iloc[0]
    ref = base.sort_values("dim", ascending=False).iloc[0]
    delta = float(b["value"]) - float(ref["value"])
    word = "higher" if delta > 0 else "lower" if delta < 0 else "the same"
    return (
        f"{b['model']} alone (lexical, no embedding): {metric} "
        f"{fmt_ci(b['value'], b['ci_low'], b['ci_high'])} against "
        f"{fmt_ci(ref['value'], ref['ci_low'], ref['ci_high'])} for {base_label} at "
        f"{int(ref['dim'])}d, {signed(delta)} ({word}; a difference of means, outside the "
        "verdict's paired family: BM25 has no dimension to pair)."
    )


def _verdict_of(deltas: pd.DataFrame, model: str, dim: Any, metric: str) -> pd.Series | None:
    """The primary-metric delta row of `model` at `dim` (None without one)."""
    if deltas.empty or "verdict" not in deltas:
        return None
    rows = deltas[(deltas["model"] == model) & (deltas["metric"] == metric)]
    rows = rows[rows["dim"] == dim] if dim is not None else rows
    return None if rows.empty else rows.iloc[0]


def ship_caution(
    metrics: pd.DataFrame,
    frontier: pd.DataFrame,
    deltas: pd.DataFrame,
    models: Sequence[dict[str, Any]],
    metric: str,
) -> str:
    """What to ship's caution when BM25 or a hybrid scored higher than the best embedding cell
    of the frontier ('' when none did, or there is nothing to compare)."""
    if metrics.empty or frontier is None or frontier.empty or "kind" not in metrics:
        return ""
    lexical = metrics[metrics["kind"].isin(LEXICAL_KINDS) & (metrics["metric"] == metric)]
    if lexical.empty:
        return ""
    top = lexical.sort_values("value", ascending=False).iloc[0]
    best = frontier.sort_values(["value", "bytes_per_vector"], ascending=[False, True]).iloc[0]
    gap = float(top["value"]) - float(best["value"])
    if gap <= 0:
        return ""
    by_label = {m.get("label"): m for m in models}
    model = by_label.get(top["model"], {})
    dim = None if pd.isna(top["dim"]) else int(top["dim"])
    name = str(top["model"]) + (f" at {dim}d" if dim else "")
    note = degenerate_note(model)
    what = f"{name} ({note})" if note else name
    row = _verdict_of(deltas, str(top["model"]), dim, metric)
    tested = (
        f"; against the base at {dim}d its paired test is {row['verdict']}"
        if row is not None
        else ""
    )
    needs = (
        "no vectors, only a BM25 index of the chunks' text"
        if top["kind"] == "bm25"
        else f"the {dim}d float32 vectors and a BM25 index of the chunks' text"
    )
    advice = (
        "that difference could be chance: weigh it against the cells above"
        if row is not None and not bool(row["significant"])
        else f"the cells weigh embeddings only, so consider shipping it ({needs})"
    )
    return (
        f"A lexical or hybrid retriever scored higher than every cell above: {what} has "
        f"{metric} {fmt_ci(top['value'], top['ci_low'], top['ci_high'])}, {signed(gap)} over "
        f"the best cell ({best['model']} at {int(best['dim'])}d {best['cell']}, "
        f"{float(best['value']):.3f}){tested}; {advice}."
    )
