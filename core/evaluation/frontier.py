"""What to ship: every (model, dimension, precision) cell, its quality against the bytes it costs,
the Pareto frontier, and one recommendation with its evidence.

How it works:
1. Each embedding model's one native encoding gives every cell: the dims by truncation, and at
   each dim float32, int8, int8 with rescoring, binary and binary with rescoring
   (core.evaluation.quantization), all searched against the full corpus and scored with the
   same metrics as the main table.
2. Each cell's primary metric is compared with the reference, the base model at its largest
   evaluated dim in float32: a paired bootstrap interval of the difference and a paired test, Holm-adjusted over
   all the cells (one family).
3. A cell is on the frontier when no other cell is at least as good for at most as many bytes.
4. The recommendation is the smallest cell that loses at most `tolerance` of the primary metric
   against the reference, read from a one-sided lower bound that is simultaneous over all the
   cells (Bonferroni: the difference minus t(1 - alpha / m) cluster-robust standard errors, m
   cells, Student's t with clusters - 1 degrees of freedom, since a few dozen questions make
   the normal quantile too small), so picking the best-looking of many cells does not inflate
   the confidence. Intervals and tests resample and flip clusters of questions that share a
   chunk (core.evaluation.statistics). It is a non-inferiority reading:
   "not significant" alone would reward too few questions. With too few questions nothing
   qualifies, and it says so.
5. Latency (core.evaluation.latency) is measured, per query, by exact numpy search over a
   synthetic corpus of the size the user names, on this machine, whose cores and numpy are
   recorded beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from core.embeddings import truncate_normalize
from core.evaluation.latency import synthetic_latency
from core.evaluation.metrics import KS, SEARCH_DEPTH, relevance_from_indices, score_relevance
from core.evaluation.quantization import (
    CELLS,
    RESCORE_DEPTH,
    RESCORE_MULTIPLIER,
    bytes_per_vector,
    cell_name,
    search_quantized_both,
)
from core.evaluation.statistics import (
    bootstrap_ci,
    clustered_se,
    compare_paired,
    holm_adjust,
    n_clusters,
)
from core.formatting import signed

DEFAULT_TOLERANCE = 0.02  # of the primary metric: what a team may lose for less memory
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
    "delta_bound",
    "p_value",
    "p_holm",
    "reference",
    "pareto",
]


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
        searched: dict[tuple[str, bool], np.ndarray] = {}
        for precision, rescore in CELLS:
            if precision == "float32" and float32 and dim in float32:
                per_query = float32[dim]
            else:
                if (precision, rescore) not in searched:  # one pass gives plain and rescored
                    plain, rescored = search_quantized_both(
                        query_d, corpus_d, precision, SEARCH_DEPTH, tie_ranks
                    )
                    searched[(precision, False)], searched[(precision, True)] = (
                        plain[0],
                        rescored[0],
                    )
                top = searched[(precision, rescore)]
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
    clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per cell: the primary metric with its interval, the paired difference from the
    reference cell (model, dim at float32) with its interval and Holm-adjusted p, bytes, and
    whether the cell is on the frontier. `clusters` (n,) groups questions that share a chunk."""
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
            clusters=clusters,
        )
        _, low, high = bootstrap_ci(c.per_query[metric], n_resamples, confidence, seed, clusters)
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
    n = len(ref.per_query[metric])
    t = simultaneous_t(int(others.sum()), n_clusters(clusters, n), confidence)
    frame["delta_bound"] = [
        0.0 if c is ref else d - t * se
        for c, d, se in zip(
            cells, frame["delta"], _standard_errors(cells, ref, metric, clusters), strict=True
        )
    ]
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
    clusters: np.ndarray | None = None,
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
        clusters=clusters,
    )
    if frame.empty:
        return frame
    latency = synthetic_latency(sorted(set(frame["dim"])), latency_size, seed=seed)
    return frame.merge(
        latency[["dim", "cell", "latency_ms", "n_vectors", "machine"]],
        on=["dim", "cell"],
        how="left",
    )


def simultaneous_t(m: int, n_clusters: int, confidence: float = 0.95) -> float:
    """Student's t quantile (n_clusters - 1 degrees of freedom) of a one-sided bound that holds
    for all `m` cells at once (Bonferroni: each at alpha / m); inf below 2 clusters."""
    from scipy.stats import t

    if n_clusters < 2:
        return math.inf
    return float(t.ppf(1 - (1 - confidence) / max(1, m), n_clusters - 1))


def _standard_errors(
    cells: Sequence[Cell], ref: Cell, metric: str, clusters: np.ndarray | None
) -> list[float]:
    """Cluster-robust standard error of each cell's mean paired difference from the reference."""
    out = []
    for c in cells:
        se = clustered_se(c.per_query[metric] - ref.per_query[metric], clusters)
        out.append(se if math.isfinite(se) else math.inf)
    return out


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
    caution: str = ""  # the end of `text` that weighs what the cells leave out (BM25, hybrids)

    @property
    def advice(self) -> str:
        """`text` without its caution (the page shows the caution apart)."""
        return self.text.removesuffix(self.caution).strip() if self.caution else self.text

    def with_caution(self, caution: str) -> Recommendation:
        """The same recommendation with `caution` appended to its text."""
        if not caution:
            return self
        return replace(self, text=f"{self.text} {caution}", caution=caution)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "dim": self.dim,
            "cell": self.cell,
            "qualified": self.qualified,
            "caution": self.caution,
        }


def _ratio_text(ref_bytes: float, bytes_: float) -> str:
    ratio = ref_bytes / bytes_
    if math.isclose(ratio, 1.0):
        return "the same memory"
    whole = abs(ratio - round(ratio)) < 0.05
    return f"{round(ratio)}x less memory" if whole or ratio >= 10 else f"{ratio:.1f}x less memory"


def _worse_text(bound: float) -> str:
    """'could be 0.042 worse', or why no bound exists (too few clusters: never 'inf')."""
    if not math.isfinite(float(bound)):
        return "no bound on how much worse it could be (fewer than 2 clusters of questions)"
    return f"could be {-float(bound):.3f} worse"


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
    """The smallest cell whose simultaneous lower bound (frontier_frame's `delta_bound`) loses at
    most `tolerance` of `metric` against the reference, with its evidence in one sentence. With
    the evaluated `corpus_size`, a rescored cell says how much of that corpus its candidate pool
    covered (a pool that covers much of a small corpus flatters rescoring)."""
    if frontier.empty:
        return None
    ref = frontier[frontier["reference"]].iloc[0]
    m = int((~frontier["reference"]).sum())
    ok = frontier[frontier["reference"] | (frontier["delta_bound"] >= -tolerance)]
    best = ok.sort_values(["bytes_per_vector", "value"], ascending=[True, False]).iloc[0]
    ref_name = f"{ref['model']} at {int(ref['dim'])}d float32"
    level = f"{confidence:.0%} confidence over all {m} cells"
    if bool(best["reference"]):
        smaller = frontier[frontier["bytes_per_vector"] < ref["bytes_per_vector"]]
        text = (
            f"Keep {ref_name} ({metric} {ref['value']:.3f}): with {n_queries} questions no smaller "
            f"cell is shown to lose at most {tolerance:.3f} {metric} ({level})"
        )
        if len(smaller):
            closest = smaller.sort_values("delta_bound", ascending=False).iloc[0]
            text += (
                f"; the closest, {closest['model']} at {int(closest['dim'])}d {closest['cell']}, "
                f"has Δ {signed(closest['delta'])} and {_worse_text(closest['delta_bound'])}"
            )
        return Recommendation(text + ".", str(ref["model"]), int(ref["dim"]), "float32", False)
    bound = float(best["delta_bound"])
    loss = (
        f"at least as good with {level}"
        if bound >= 0
        else f"at most {-bound:.3f} worse with {level} (a bound over every cell at once, so "
        "wider than this cell's own interval)"
    )
    memory = (
        f" ({memory_text(best['bytes_per_vector'] * n_vectors)} instead of "
        f"{memory_text(ref['bytes_per_vector'] * n_vectors)} for {n_vectors:,} chunks)"
        if n_vectors
        else ""
    )
    text = (
        f"Ship {best['model']} at {int(best['dim'])}d, {best['cell']}: {metric} "
        f"{best['value']:.3f} against {ref['value']:.3f} for {ref_name}, Δ {signed(best['delta'])} "
        f"(this cell's 95% interval [{best['delta_ci_low']:+.3f}, {best['delta_ci_high']:+.3f}]), "
        f"so {loss}; "
        f"{_ratio_text(ref['bytes_per_vector'], best['bytes_per_vector'])}{memory}."
    )
    if bool(best["rescore"]):
        text += " The float32 vectors stay on disk for the rescoring."
        pool = RESCORE_MULTIPLIER * RESCORE_DEPTH
        if corpus_size and n_vectors and n_vectors > corpus_size and pool / corpus_size > 0.01:
            text += (
                f" Caution: its {pool} rescored candidates were {pool / corpus_size:.1%} of the "
                f"{corpus_size:,} chunks evaluated, a far larger share than in {n_vectors:,}; "
                "check it at scale."
            )
    return Recommendation(text, str(best["model"]), int(best["dim"]), str(best["cell"]), True)


def ship_caption(frontier: pd.DataFrame, metric: str, tolerance: float) -> str:
    """How to read the frontier (page, report and CLI)."""
    machine = str(frontier["machine"].iloc[0]) if "machine" in frontier and len(frontier) else ""
    return (
        "Each cell is searched exactly against the whole corpus: int8 calibrated on it, binary one "
        f"bit a dimension; rescoring re-ranks the top {RESCORE_MULTIPLIER * RESCORE_DEPTH} by the "
        "float32 vectors a store keeps on disk (not counted in the memory). Δ and its interval "
        "are against the reference (the base model at its largest dim, float32); the Holm p is "
        "adjusted over all cells; 'could be worse by' is the lower end of a bound simultaneous "
        f"over all cells. The recommendation is the smallest cell that loses at most "
        f"{tolerance:.3f} {metric} by that bound. Latency: numpy exact search per query"
        + (f" on {machine}" if machine else "")
        + "; numpy has no int8 or popcount SIMD kernels, so int8 and binary look slower than "
        "float32 here, unlike in a vector store."
    )


DISPLAY_COLUMNS = [
    "model",
    "dim",
    "cell",
    "bytes / vector",
    "memory",
    "value [CI]",
    "Δ vs reference [CI]",
    "could be worse by",
    "Holm p",
    "frontier",
    "latency ms",
]


def frontier_display(frontier: pd.DataFrame, n_vectors: int, metric: str) -> pd.DataFrame:
    """The frontier for people (page, CLI, report): memory for `n_vectors` chunks, the metric
    and its difference from the reference with intervals, frontier cells marked 'on it'."""
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
            "could be worse by": [
                "—" if ref else f"{max(0.0, -b):.3f}" if math.isfinite(b) else "no bound"
                for ref, b in zip(frontier["reference"], frontier["delta_bound"], strict=True)
            ],
            "Holm p": [
                "—" if r else f"{p:.3f}"
                for r, p in zip(frontier["reference"], frontier["p_holm"], strict=True)
            ],
            # "on it", not a star: ★ marks a gold chunk everywhere else.
            "frontier": ["on it" if p else "" for p in frontier["pareto"]],
            "latency ms": [
                f"{x:.2f}" for x in frontier.get("latency_ms", pd.Series(0.0, index=frontier.index))
            ],
        }
    )
    out.columns = [c if c != "value [CI]" else f"{metric} [CI]" for c in out.columns]
    if latency_size:
        out = out.rename(columns={"latency ms": f"latency ms ({latency_size:,} vectors)"})
    return out
