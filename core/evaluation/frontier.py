"""What to ship: every (model, dimension, precision) cell, its quality against the bytes it costs,
the Pareto frontier, and one recommendation with its evidence.

How it works:
1. Each embedding model's one native encoding gives every cell: the dims by truncation, and at
   each dim float32, int8, int8 with rescoring, binary and binary with rescoring
   (core.evaluation.quantization), all searched against the full corpus and scored with the
   same metrics as the main table.
2. Each cell's primary metric is compared with the reference, the base model at its native dim in
   float32: a paired bootstrap interval of the difference and a paired test, Holm-adjusted over
   all the cells (one family).
3. A cell is on the frontier when no other cell is at least as good for at most as many bytes.
4. The recommendation is the smallest cell whose interval says it loses at most `tolerance` of the
   primary metric against the reference (a non-inferiority reading: "not significant" alone would
   reward too few questions). With too few questions nothing qualifies, and it says so.
5. Latency is measured, per query, by exact numpy search over a synthetic corpus of the size the
   user names (random vectors: the timing depends on the size, not the values), on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.embeddings import truncate_normalize
from core.evaluation.metrics import KS, SEARCH_DEPTH, relevance_from_indices, score_relevance
from core.evaluation.quantization import (
    RESCORE_DEPTH,
    RESCORE_MULTIPLIER,
    bytes_per_vector,
    calibration_ranges,
    quantize,
    search_quantized,
)
from core.evaluation.statistics import bootstrap_ci, compare_paired, holm_adjust
from core.formatting import signed

CELLS: tuple[tuple[str, bool], ...] = (
    ("float32", False),
    ("int8", False),
    ("int8", True),
    ("binary", False),
    ("binary", True),
)
DEFAULT_TOLERANCE = 0.02  # of the primary metric: what a team may lose for less memory
LATENCY_QUERIES = 10
FRONTIER_COLUMNS = [
    "model",
    "kind",
    "dim",
    "precision",
    "rescore",
    "cell",
    "bytes_per_vector",
    "value",
    "ci_low",
    "ci_high",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "p_value",
    "p_holm",
    "reference",
    "pareto",
]


def cell_name(precision: str, rescore: bool) -> str:
    """'int8 + rescoring', 'binary', 'float32'."""
    return f"{precision} + rescoring" if rescore else precision


@dataclass
class Cell:
    """One (model, dim, precision) cell and its per-query metrics."""

    model: str
    kind: str
    dim: int
    precision: str
    rescore: bool
    per_query: dict[str, np.ndarray]  # metric -> (n,)

    @property
    def bytes(self) -> int:
        return bytes_per_vector(self.dim, self.precision)


def score_cells(
    label: str,
    kind: str,
    corpus_native: np.ndarray,
    query_native: np.ndarray,
    gold: Sequence[Sequence[int]],
    dims: Sequence[int],
    tie_ranks: np.ndarray,
    float32: dict[int, dict[str, np.ndarray]] | None = None,
) -> list[Cell]:
    """Every precision cell of one model at every dim. `float32` passes the per-query metrics of
    the float cells already scored (core.evaluation.scoring), so they are not searched again."""
    out = []
    for dim in dims:
        corpus_d = truncate_normalize(corpus_native, dim)  # (N, dim)
        query_d = truncate_normalize(query_native, dim)  # (n, dim)
        for precision, rescore in CELLS:
            if precision == "float32" and float32 and dim in float32:
                per_query = float32[dim]
            else:
                top, _ = search_quantized(
                    query_d, corpus_d, precision, SEARCH_DEPTH, tie_ranks, rescore=rescore
                )
                rel, n_rel = relevance_from_indices(top, list(gold))
                per_query = score_relevance(rel, n_rel, KS)
            out.append(Cell(label, kind, dim, precision, rescore, per_query))
    return out


def pareto_mask(bytes_: Sequence[float], values: Sequence[float]) -> list[bool]:
    """True for cells no other cell beats: at most as many bytes and at least as good, one of
    the two strictly."""
    b, v = np.asarray(bytes_, dtype=float), np.asarray(values, dtype=float)
    out = []
    for i in range(len(b)):
        dominated = np.any((b <= b[i]) & (v >= v[i]) & ((b < b[i]) | (v > v[i])))
        out.append(not bool(dominated))
    return out


def frontier_frame(
    cells: Sequence[Cell],
    reference: tuple[str, int],
    metric: str,
    *,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per cell: the primary metric with its interval, the paired difference from the
    reference cell (model, dim at float32) with its interval and Holm-adjusted p, bytes, and
    whether the cell is on the frontier."""
    ref = next(
        (c for c in cells if (c.model, c.dim) == reference and c.precision == "float32"), None
    )
    if ref is None:
        return pd.DataFrame(columns=FRONTIER_COLUMNS)
    rows = []
    for c in cells:
        cmp = compare_paired(
            ref.per_query[metric],
            c.per_query[metric],
            metric,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            confidence=confidence,
            seed=seed,
        )
        _, low, high = bootstrap_ci(c.per_query[metric], n_resamples, confidence, seed)
        is_ref = c is ref
        rows.append(
            {
                "model": c.model,
                "kind": c.kind,
                "dim": c.dim,
                "precision": c.precision,
                "rescore": c.rescore,
                "cell": cell_name(c.precision, c.rescore),
                "bytes_per_vector": c.bytes,
                "value": cmp.other,
                "ci_low": float(low[0]),
                "ci_high": float(high[0]),
                "delta": 0.0 if is_ref else cmp.delta,
                "delta_ci_low": 0.0 if is_ref else cmp.ci_low,
                "delta_ci_high": 0.0 if is_ref else cmp.ci_high,
                "p_value": 1.0 if is_ref else cmp.p_value,
                "reference": is_ref,
            }
        )
    frame = pd.DataFrame(rows)
    others = ~frame["reference"]
    frame["p_holm"] = 1.0
    frame.loc[others, "p_holm"] = holm_adjust(frame.loc[others, "p_value"].to_numpy())
    frame["pareto"] = pareto_mask(frame["bytes_per_vector"], frame["value"])
    return frame[FRONTIER_COLUMNS]


def frontier_with_latency(
    cells: Sequence[Cell],
    reference: tuple[str, int],
    metric: str,
    *,
    latency_size: int,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """frontier_frame with each cell's latency measured on `latency_size` synthetic vectors."""
    frame = frontier_frame(
        cells,
        reference,
        metric,
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        confidence=confidence,
        seed=seed,
    )
    if frame.empty:
        return frame
    latency = synthetic_latency(sorted(set(frame["dim"])), latency_size, seed=seed)
    return frame.merge(
        latency[["dim", "cell", "latency_ms", "n_vectors"]], on=["dim", "cell"], how="left"
    )


def memory_text(n_bytes: float) -> str:
    """'1.5 GB', '384 kB' (decimal units, as storage is sold)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} B"


@dataclass(frozen=True)
class Recommendation:
    """What to deploy, and the sentence that says why."""

    text: str
    model: str
    dim: int
    cell: str
    qualified: bool  # a smaller cell was shown to lose at most `tolerance`

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "dim": self.dim,
            "cell": self.cell,
            "qualified": self.qualified,
        }


def recommend(
    frontier: pd.DataFrame,
    metric: str,
    n_queries: int,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    n_vectors: int | None = None,
    confidence: float = 0.95,
    corpus_size: int | None = None,
) -> Recommendation | None:
    """The smallest cell that loses at most `tolerance` of `metric` against the reference with
    `confidence` (its interval's lower bound), with its evidence in one sentence. With the
    evaluated `corpus_size`, a rescored cell says how much of that corpus its candidate pool
    covered (a pool that covers much of a small corpus flatters rescoring)."""
    if frontier.empty:
        return None
    ref = frontier[frontier["reference"]].iloc[0]
    ok = frontier[frontier["reference"] | (frontier["delta_ci_low"] >= -tolerance)]
    best = ok.sort_values(["bytes_per_vector", "value"], ascending=[True, False]).iloc[0]
    ref_name = f"{ref['model']} at {int(ref['dim'])}d float32"
    level = f"{confidence:.0%}"
    if bool(best["reference"]):
        others = frontier[~frontier["reference"]]
        closest = (
            others.sort_values("delta_ci_low", ascending=False).iloc[0] if len(others) else None
        )
        text = (
            f"Keep {ref_name} ({metric} {ref['value']:.3f}): with {n_queries} questions no smaller "
            f"cell is shown to lose at most {tolerance:.3f} {metric} ({level} interval)"
        )
        if closest is not None:
            text += (
                f"; the closest, {closest['model']} at {int(closest['dim'])}d {closest['cell']}, "
                f"has Δ {signed(closest['delta'])} [{closest['delta_ci_low']:+.3f}, "
                f"{closest['delta_ci_high']:+.3f}]"
            )
        return Recommendation(text + ".", str(ref["model"]), int(ref["dim"]), "float32", False)
    ratio = ref["bytes_per_vector"] / best["bytes_per_vector"]
    memory = (
        f" ({memory_text(best['bytes_per_vector'] * n_vectors)} instead of "
        f"{memory_text(ref['bytes_per_vector'] * n_vectors)} for {n_vectors:,} chunks)"
        if n_vectors
        else ""
    )
    low = float(best["delta_ci_low"])
    loss = (
        f"at least as good with {level} confidence"
        if low >= 0
        else f"at most {-low:.3f} worse with {level} confidence"
    )
    text = (
        f"Ship {best['model']} at {int(best['dim'])}d, {best['cell']}: {metric} "
        f"{best['value']:.3f} against {ref['value']:.3f} for {ref_name}, Δ {signed(best['delta'])} "
        f"[{low:+.3f}, {best['delta_ci_high']:+.3f}], so {loss}; {ratio:.0f}x less "
        f"memory{memory}."
    )
    pool = RESCORE_MULTIPLIER * RESCORE_DEPTH
    if bool(best["rescore"]) and corpus_size and pool / corpus_size > 0.01:
        text += (
            f" Caution: its {pool} rescored candidates were {pool / corpus_size:.0%} of the "
            f"{corpus_size:,} chunks evaluated; in a corpus of "
            f"{(n_vectors or corpus_size):,} they are a far smaller share, so check it at scale."
        )
    return Recommendation(text, str(best["model"]), int(best["dim"]), str(best["cell"]), True)


# ------------------------------------------------------------------ latency at scale


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _one_search(stored: np.ndarray, query: np.ndarray, precision: str, k: int) -> np.ndarray:
    if precision == "float32":
        scores = stored @ query  # (N,)
    elif precision == "int8":
        scores = stored @ query.astype(np.int32)  # (N,) int32 accumulation of int8 values
    else:
        scores = -_POPCOUNT[np.bitwise_xor(stored, query)].sum(axis=1, dtype=np.int32)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def synthetic_latency(
    dims: Sequence[int], n_vectors: int, k: int = 10, seed: int = 0
) -> pd.DataFrame:
    """Median milliseconds of one exact single-query search per (dim, precision, rescoring)
    over `n_vectors` random unit vectors, with numpy on this machine."""
    rng = np.random.default_rng(seed)
    rows = []
    for dim in dims:
        corpus = rng.normal(size=(n_vectors, dim)).astype(np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = corpus[rng.integers(0, n_vectors, LATENCY_QUERIES)] + 0.01
        ranges = calibration_ranges(corpus)
        for precision, rescore in CELLS:
            stored = quantize(corpus, precision, ranges)
            if precision == "int8":
                stored = stored.astype(np.int32)  # the int8 values, accumulated in int32
            times = []
            for q in queries:
                qq = quantize(q[None, :], precision, ranges)[0]
                start = time.perf_counter()
                top = _one_search(stored, qq, precision, min(n_vectors, k * RESCORE_MULTIPLIER))
                if rescore:
                    _ = corpus[top] @ q  # float rescoring of the candidates
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "dim": dim,
                    "precision": precision,
                    "rescore": rescore,
                    "cell": cell_name(precision, rescore),
                    "latency_ms": float(np.median(times) * 1000),
                    "n_vectors": n_vectors,
                }
            )
        del corpus
    return pd.DataFrame(rows)


DISPLAY_COLUMNS = [
    "model",
    "dim",
    "cell",
    "bytes / vector",
    "memory",
    "value [CI]",
    "Δ vs reference [CI]",
    "Holm p",
    "frontier",
    "latency ms",
]


def frontier_display(frontier: pd.DataFrame, n_vectors: int, metric: str) -> pd.DataFrame:
    """The frontier for people (page, CLI, report): memory for `n_vectors` chunks, the metric
    and its difference from the reference with intervals, frontier cells starred."""
    from core.formatting import fmt_ci

    if frontier.empty:
        return pd.DataFrame(columns=DISPLAY_COLUMNS)
    latency_size = int(frontier["n_vectors"].iloc[0]) if "n_vectors" in frontier else 0
    out = pd.DataFrame(
        {
            "model": frontier["model"],
            "dim": frontier["dim"].astype(int),
            "cell": frontier["cell"],
            "bytes / vector": frontier["bytes_per_vector"].astype(int),
            "memory": [memory_text(b * n_vectors) for b in frontier["bytes_per_vector"]],
            "value [CI]": [
                fmt_ci(v, lo, hi)
                for v, lo, hi in zip(
                    frontier["value"], frontier["ci_low"], frontier["ci_high"], strict=True
                )
            ],
            "Δ vs reference [CI]": [
                "reference" if ref else fmt_ci(d, lo, hi, signed=True)
                for ref, d, lo, hi in zip(
                    frontier["reference"],
                    frontier["delta"],
                    frontier["delta_ci_low"],
                    frontier["delta_ci_high"],
                    strict=True,
                )
            ],
            "Holm p": [
                "—" if r else f"{p:.3f}"
                for r, p in zip(frontier["reference"], frontier["p_holm"], strict=True)
            ],
            "frontier": ["★" if p else "" for p in frontier["pareto"]],
            "latency ms": [
                f"{x:.2f}" for x in frontier.get("latency_ms", pd.Series(0.0, index=frontier.index))
            ],
        }
    )
    out.columns = [c if c != "value [CI]" else f"{metric} [CI]" for c in out.columns]
    if latency_size:
        out = out.rename(columns={"latency ms": f"latency ms ({latency_size:,} vectors)"})
    return out
