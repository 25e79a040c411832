"""Simulations of the verdict's tests through their real code: how often they call a difference
significant when there is none (and how often they find one that is there). The tests assert
these rates; `python -m bench.statistics` prints them for the README. The cross-fit's own simulation is core.crossfit.simulation.

How it works:
1. `clustered_null_rates`: paired per-question differences whose true mean is zero, drawn as
   `per_cluster` questions per cluster that share a cluster effect (questions about one chunk
   succeed or fail together). Each replicate is compared by `compare_paired` twice: once per
   question (every question its own cluster, the method before clusters) and once by cluster.
   The share of replicates with p < alpha is the false-positive rate of each.
2. `family_rates`: `dims` comparisons whose differences are correlated (`rho`, as Matryoshka
   dims of one model are), with a common true effect (0 under the null). Each replicate is
   adjusted by `maxt_adjust` and by Holm over the same raw sign-flip p-values; returned are the
   family-wise error (any rejection, under the null) or the power (the share of comparisons
   rejected, under an effect) of both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.evaluation.statistics import compare_paired, holm_adjust, maxt_adjust


@dataclass(frozen=True)
class Rates:
    """Rejection rates from `reps` replicates, with their Monte Carlo standard error."""

    reps: int
    rates: dict[str, float]

    def mc_se(self, name: str) -> float:
        """The Monte Carlo standard error of one rate."""
        p = self.rates[name]
        return math.sqrt(max(p * (1 - p), 1e-12) / self.reps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clustered_differences(
    rng: np.random.Generator, n_clusters: int, per_cluster: int, icc: float, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """Differences (n,) with intra-cluster correlation `icc` and mean `shift`, and clusters."""
    clusters = np.repeat(np.arange(n_clusters), per_cluster)
    common = rng.normal(0.0, math.sqrt(icc), n_clusters)[clusters]
    own = rng.normal(0.0, math.sqrt(1.0 - icc), len(clusters))
    return shift + common + own, clusters


def clustered_null_rates(
    n_clusters: int = 40,
    per_cluster: int = 3,
    icc: float = 0.8,
    reps: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 1000,
) -> Rates:
    """False-positive rates of compare_paired per question and by cluster under the null."""
    rng = np.random.default_rng(seed)
    hits = {"per question": 0, "by cluster": 0}
    for rep in range(reps):
        diffs, clusters = clustered_differences(rng, n_clusters, per_cluster, icc, 0.0)
        base = rng.random(len(diffs))
        for name, groups in (("per question", None), ("by cluster", clusters)):
            cmp = compare_paired(
                base,
                base + diffs,
                "ndcg@10",
                clusters=groups,
                n_resamples=50,
                n_permutations=n_permutations,
                seed=rep,
            )
            hits[name] += cmp.p_value < alpha
    return Rates(reps, {k: v / reps for k, v in hits.items()})


def family_rates(
    n_queries: int = 60,
    dims: int = 4,
    rho: float = 0.9,
    effect: float = 0.0,
    reps: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 1000,
    per_cluster: int = 1,
) -> Rates:
    """Family-wise error (effect 0) or per-comparison power (effect > 0) of max-T and Holm over
    `dims` comparisons with correlation `rho`, on the same sign-flip draws."""
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n_queries // per_cluster)
    any_rejected = {"max-T": 0, "Holm": 0}
    rejected = {"max-T": 0, "Holm": 0}
    for rep in range(reps):
        common, clusters = clustered_differences(rng, n_clusters, per_cluster, 0.5, 0.0)
        own = rng.normal(0.0, 1.0, (len(common), dims))
        diffs = effect + math.sqrt(rho) * common[:, None] + math.sqrt(1 - rho) * own  # (n, dims)
        family = maxt_adjust(diffs, clusters, n_permutations, seed=rep, alpha=alpha)
        for name, p in (("max-T", family.p_adjusted), ("Holm", holm_adjust(family.p_raw))):
            rejected[name] += int(np.sum(p < alpha))
            any_rejected[name] += bool(np.any(p < alpha))
    if effect == 0:
        return Rates(reps, {f"{k} family-wise error": v / reps for k, v in any_rejected.items()})
    return Rates(reps, {f"{k} power": v / (reps * dims) for k, v in rejected.items()})
