"""Flipped questions: those whose hit@k differs between the base and a tuned model, with both rankings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from core.errors import ConfigError
from core.evaluation.config import TOP_SAVED

if TYPE_CHECKING:
    pass


def _same_dim(series: pd.Series, dim: int | None) -> pd.Series:
    return series.isna() if dim is None else (series == dim).fillna(False)


def compute_flips(
    per_query: pd.DataFrame, base: str, model: str, dim: int | None, k: int = 5
) -> dict[str, Any]:
    """Questions whose hit@k differs between base and model at one dim (k <= 10).

    Returns {"model", "dim", "k", "gained": [...], "lost": [...]} where gained are base misses
    that the model hits and lost the reverse; each row has both top-k lists and the gold ids."""
    if not 1 <= k <= TOP_SAVED:
        raise ConfigError(f"Flip k must be between 1 and {TOP_SAVED}, got {k}.")
    a = per_query[(per_query["model"] == base) & _same_dim(per_query["dim"], dim)].set_index(
        "query_id"
    )
    b = per_query[(per_query["model"] == model) & _same_dim(per_query["dim"], dim)].set_index(
        "query_id"
    )
    gained, lost = [], []
    for qid in a.index.intersection(b.index, sort=False):
        ra, rb = a.loc[qid], b.loc[qid]
        gold = set(ra["gold_ids"])
        hit_a = any(c in gold for c in list(ra["top_ids"])[:k])
        hit_b = any(c in gold for c in list(rb["top_ids"])[:k])
        if hit_a == hit_b:
            continue
        row = {
            "query_id": str(qid),
            "question": ra["question"],
            "gold_ids": list(ra["gold_ids"]),
            "base_rank": None if pd.isna(ra["gold_rank"]) else int(ra["gold_rank"]),
            "model_rank": None if pd.isna(rb["gold_rank"]) else int(rb["gold_rank"]),
            "base_top": list(ra["top_ids"])[:k],
            "model_top": list(rb["top_ids"])[:k],
        }
        (gained if hit_b else lost).append(row)
    return {
        "model": model,
        "dim": None if dim is None else int(dim),
        "k": k,
        "gained": gained,
        "lost": lost,
    }


def flip_rows(
    flip: dict[str, Any], texts: dict[str, str], side: Literal["gained", "lost"]
) -> pd.DataFrame:
    """One flip list as a table: rank, base chunk, model chunk (gold marked with ★)."""
    rows = []
    for item in flip[side]:
        gold = set(item["gold_ids"])
        for rank in range(max(len(item["base_top"]), len(item["model_top"]))):
            cells = {}
            for key, col in (("base_top", "base"), ("model_top", "model")):
                ids = item[key]
                cid = ids[rank] if rank < len(ids) else ""
                mark = "★ " if cid in gold else ""
                cells[col] = f"{mark}{cid}: {texts.get(cid, '')[:200]}" if cid else ""
            rows.append(
                {
                    "query_id": item["query_id"],
                    "question": item["question"],
                    "rank": rank + 1,
                    **cells,
                }
            )
    return pd.DataFrame(rows, columns=["query_id", "question", "rank", "base", "model"])


def collect_flips(
    per_query: pd.DataFrame,
    labels: Sequence[str],
    dims_of: dict[str, list[int]],
    texts: dict[str, str],
    k: int,
) -> dict[str, Any]:
    """flips.json: every tuned model's flips against the base (labels[0]) at every dim both were
    scored at, and the texts of every chunk those flips show."""
    base = labels[0]
    comparisons = [
        compute_flips(per_query, base, other, dim, k)
        for other in labels[1:]
        for dim in sorted(dims_of.get(other, []), reverse=True)
        if dim in dims_of.get(base, [])
    ]
    used = {
        cid
        for comp in comparisons
        for row in comp["gained"] + comp["lost"]
        for cid in row["base_top"] + row["model_top"] + row["gold_ids"]
    }
    return {
        "k": k,
        "base": base,
        "comparisons": comparisons,
        "texts": {cid: text for cid, text in texts.items() if cid in used},
    }
