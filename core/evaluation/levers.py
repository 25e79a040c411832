"""Which lever helps: fine-tuning the embedder, fusing BM25, reranking, or a combination, in one
sentence from the evaluation's own paired tests.

Each arm evaluated against the base is named for the levers it pulls: a fine-tuned model (a
model run) is fine-tuning, any other second model "another embedding model"; a hybrid is fusion
(plus its dense side's lever), except a weighted hybrid whose validation weight left one side
out, which is that side alone; a reranked arm is reranking on top of its retriever's levers.
Levers are compared at one dim, the largest evaluated (where hybrids and reranked arms live:
a truncated dim's delta is a different question, answered by the headline). For each lever (or
combination) its best arm on the primary metric at that dim (highest delta against the base,
from the evaluation's max-T family) speaks for it, with its interval, its verdict and, for
reranking, the measured time to rerank one question's candidates. The sentence exists only when
at least two different levers were evaluated: otherwise the headline already answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.formatting import fmt_ci

FINETUNE, FUSION, RERANK = "fine-tuning", "fusion with BM25", "reranking"
OTHER_MODEL = "another embedding model"
_ORDER = (FINETUNE, OTHER_MODEL, FUSION, RERANK)


@dataclass(frozen=True)
class Lever:
    """One lever (or combination) and the arm that speaks for it."""

    name: str  # 'fine-tuning', 'fusion with BM25 + reranking', ...
    model: str  # the arm's label
    dim: int | None
    value: float
    base_value: float
    delta: float
    ci_low: float
    ci_high: float
    significant: bool
    verdict: str  # the paired test's words, e.g. 'significant (max-T p=0.002)'
    rerank_ms: float | None  # measured time to rerank one question's candidates
    rerank_top: int | None

    @property
    def better(self) -> bool:
        """Significantly better than the base."""
        return self.significant and self.delta > 0

    @property
    def worse(self) -> bool:
        """Significantly worse than the base."""
        return self.significant and self.delta < 0


def levers_of(model: dict[str, Any], by_label: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """The levers an arm pulls, in a fixed order; () for the base and for BM25 alone."""
    from core.evaluation.lexical import degenerate_side

    kind = model.get("kind")
    if kind == "tuned":
        return (FINETUNE,) if model.get("source") == "run" else (OTHER_MODEL,)
    if kind == "hybrid":
        dense = by_label.get(str(model.get("ref")), {})
        side = degenerate_side(model)
        if side == "BM25":
            return ()  # BM25 alone: a baseline, no lever
        inner = levers_of(dense, by_label) if dense else ()
        return inner if side == "dense" else (*inner, FUSION)
    if kind == "reranked":
        retriever = by_label.get(str(model.get("retriever")), {})
        inner = levers_of(retriever, by_label) if retriever else ()
        return (*inner, RERANK)
    return ()


def _name(levers: tuple[str, ...]) -> str:
    """'fine-tuning + reranking': the levers in a fixed order."""
    return " + ".join(sorted(levers, key=_ORDER.index))


def best_levers(
    deltas: pd.DataFrame, models: Sequence[dict[str, Any]], metric: str, base_label: str
) -> list[Lever]:
    """Each lever (or combination) evaluated, best first: the arm with the highest delta
    against the base on `metric` at the largest evaluated dim (rows of the evaluation's deltas
    table; an arm with no dim, such as BM25 reranked, is compared there too)."""
    if deltas is None or deltas.empty or "verdict" not in deltas:
        return []
    by_label = {str(m.get("label")): m for m in models}
    rows = deltas[(deltas["metric"] == metric) & (deltas["base_model"] == base_label)]
    if rows["dim"].notna().any():
        rows = rows[(rows["dim"] == rows["dim"].max()) | rows["dim"].isna()]
    best: dict[str, Lever] = {}
    for _, row in rows.iterrows():
        model = by_label.get(str(row["model"]))
        levers = levers_of(model, by_label) if model else ()
        if not levers:
            continue
        name = _name(levers)
        lever = Lever(
            name=name,
            model=str(row["model"]),
            dim=None if pd.isna(row["dim"]) else int(row["dim"]),
            value=float(row["value"]),
            base_value=float(row["base_value"]),
            delta=float(row["delta"]),
            ci_low=float(row["ci_low"]),
            ci_high=float(row["ci_high"]),
            significant=bool(row.get("significant", False)),
            verdict=str(row["verdict"]),
            rerank_ms=model.get("rerank_latency_ms") if RERANK in levers else None,
            rerank_top=model.get("rerank_top") if RERANK in levers else None,
        )
        if name not in best or lever.delta > best[name].delta:
            best[name] = lever
    return sorted(best.values(), key=lambda lv: -lv.delta)


def _lever_text(lever: Lever) -> str:
    """'reranking (base + reranker) −0.879 [−0.962, −0.778]: worse, significant (…), at 5,477 ms
    per question to rerank the top 50'."""
    word = "better, " if lever.better else "worse, " if lever.worse else ""
    cost = (
        f", at {lever.rerank_ms:,.0f} ms per question to rerank the top {lever.rerank_top}"
        if lever.rerank_ms is not None
        else ""
    )
    return (
        f"{lever.name} ({lever.model}) {fmt_ci(lever.delta, lever.ci_low, lever.ci_high, True)}"
        f": {word}{lever.verdict}{cost}"
    )


def levers_text(
    deltas: pd.DataFrame, models: Sequence[dict[str, Any]], metric: str, base_label: str
) -> str:
    """'Which lever helps here …' in one paragraph, best lever first, ending with the answer;
    '' when fewer than two different levers were evaluated."""
    levers = best_levers(deltas, models, metric, base_label)
    pulled = {part for lever in levers for part in lever.name.split(" + ")}
    if len(pulled) < 2:
        return ""
    parts = "; ".join(_lever_text(lever) for lever in levers)
    dims = {lever.dim for lever in levers if lever.dim}
    at = f" at {dims.pop()}d" if len(dims) == 1 else ""
    winners = [lever for lever in levers if lever.better]
    if winners:
        top = winners[0]
        answer = (
            f"Here {top.name} helps most: {metric} {top.base_value:.3f} → {top.value:.3f} "
            f"({top.model})."
        )
        if top.rerank_ms is not None:
            answer += f" It costs {top.rerank_ms:,.0f} ms per question to rerank, measured here."
    else:
        answer = (
            f"None of them is shown to raise {metric} over {base_label} on these questions; "
            "keep the base unless a cost or a larger test set says otherwise."
        )
    return (
        f"Which lever helps here ({metric} against {base_label}{at}, each lever's best arm, Δ "
        f"with its interval, in the evaluation's max-T family): {parts}. {answer}"
    )
