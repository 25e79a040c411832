"""The interval of a cross-fitted difference: K fold models, each scoring its own fold.

The pooled cluster interval (core.evaluation.statistics) treats the K fold models as fixed: it
answers "are these K models better on the questions they never saw?". The recipe's question ("is
fine-tuning this way better?") must also allow for how much fold models differ from each other,
and with five folds that is estimated from five numbers. `fold_interval` is the random-effects
interval meta-analysis uses for few studies (Hartung–Knapp–Sidik–Jonkman); the cross-fitted
verdict requires both it and the cluster test to agree (core.crossfit.evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.evaluation.statistics import clustered_se


@dataclass(frozen=True)
class FoldInterval:
    """A difference's interval from its fold means, when K models each scored one fold."""

    mean: float
    low: float
    high: float
    se: float
    df: int
    tau2: float  # the between-fold variance (DerSimonian–Laird): how much fold models differ


def fold_interval(
    diffs: np.ndarray,
    folds: Sequence[int] | np.ndarray,
    clusters: Sequence[int] | np.ndarray | None = None,
    confidence: float = 0.95,
) -> FoldInterval:
    """The random-effects interval of the mean difference over K folds whose questions were each
    scored by a different model (a cross-fit): fold means weighted by the inverse of their
    within-fold (cluster-robust) variance plus the between-fold variance, with the
    Hartung–Knapp–Sidik–Jonkman standard error and Student's t with K - 1 degrees of freedom.
    With few folds this keeps its coverage even when the fold models differ, which the pooled
    cluster interval does not (it treats the K models as fixed)."""
    from scipy.stats import t

    d = np.asarray(diffs, dtype=np.float64)
    f = np.asarray(folds)
    groups = np.arange(len(d)) if clusters is None else np.asarray(clusters)
    ks = sorted(set(f.tolist()))
    means = np.array([d[f == k].mean() for k in ks])
    within = np.array([clustered_se(d[f == k], groups[f == k]) ** 2 for k in ks])
    within = np.where(np.isfinite(within) & (within > 0), within, np.nanmax([*within, 1e-12]))
    k = len(ks)
    if k < 2:
        return FoldInterval(float(d.mean()), -math.inf, math.inf, math.inf, 0, 0.0)
    w = 1.0 / within
    fixed = float(np.sum(w * means) / np.sum(w))
    q = float(np.sum(w * (means - fixed) ** 2))
    tau2 = max(0.0, (q - (k - 1)) / float(np.sum(w) - np.sum(w**2) / np.sum(w)))
    w_star = 1.0 / (within + tau2)
    mean = float(np.sum(w_star * means) / np.sum(w_star))
    se = math.sqrt(float(np.sum(w_star * (means - mean) ** 2)) / ((k - 1) * np.sum(w_star)))
    half = float(t.ppf(1 - (1 - confidence) / 2, k - 1)) * se
    return FoldInterval(mean, mean - half, mean + half, se, k - 1, tau2)
