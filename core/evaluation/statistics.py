"""Can we trust the number? Bootstrap intervals, paired tests and the random-ranker baseline.

How it works:
0. Clusters. Questions that share a gold or linked chunk (core.questions.splits.question_clusters)
   are not independent: two questions about one passage succeed or fail together. Every method
   below takes the cluster of each query and resamples, flips and counts whole clusters; with one
   question per cluster (or no clusters given) it is the per-question method, draw for draw.
1. Bootstrap CIs resample clusters with replacement. Resamples are drawn as multinomial count
   weights (n_resamples, M clusters), so one matrix product gives every metric of every model at
   once (the mean of a resample is its questions' total over its questions' count), and the same
   seed gives the same resamples for every column (which also makes them paired).
2. A tuned-vs-base delta gets a paired bootstrap CI (resampling clusters of per-query
   differences) and a p-value: a sign-flip permutation test that flips each cluster's total
   difference (exact enumeration for up to 16 clusters, seeded Monte Carlo above); for hit@k
   with one question per cluster, McNemar's exact test (the same test, exactly). Whether a delta
   counts is decided in core.evaluation.verdict, after its family's adjustment: `maxt_adjust`, a
   Westfall–Young step-down max-T over the same sign-flip draws, which uses the strong
   correlation between Matryoshka dims (and models) instead of ignoring it as Holm does.
3. A warning says when the queries are too few to tell the models apart; power figures say how
   small a difference these clusters could detect (the cluster-robust standard error, Student's
   t with clusters - 1 degrees of freedom), and about how many questions would detect the
   observed one.
The random ranker's expected score, which sits beside every figure, is core.evaluation.random_ranker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.evaluation.metrics import parse_metric
from core.evaluation.resampling import (
    one_blas_thread,
    resample_weights,
    sign_patterns,
)

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10000
MIN_QUERIES = 30


def _as_2d(values: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim != 2:
        raise ValueError(f"expected (n,) or (n, m) values, got shape {arr.shape}")
    return arr, False


def cluster_codes(clusters: Sequence[int] | np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Each query's cluster as 0..M-1 in order of first appearance, and M. None: every query is
    its own cluster (0..n-1), the per-question methods."""
    if clusters is None:
        return np.arange(n), n
    raw = np.asarray(clusters)
    if raw.shape != (n,):
        raise ValueError(f"expected one cluster per query ({n}), got shape {raw.shape}")
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # unique value -> rank of its first appearance
    return order[inverse].astype(np.int64), len(first)


def cluster_sums(arr: np.ndarray, codes: np.ndarray, m: int) -> np.ndarray:
    """Per cluster, the sum of each column of arr (n, k): (m, k)."""
    out = np.zeros((m, arr.shape[1]))
    np.add.at(out, codes, arr)
    return out


def n_clusters(clusters: Sequence[int] | np.ndarray | None, n: int) -> int:
    """How many clusters n queries fall in (n when no clusters are given)."""
    return cluster_codes(clusters, n)[1]


def bootstrap_means(
    values: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    clusters: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of the rows of values (n,) or (n, m), drawing
    whole clusters (each query its own cluster when `clusters` is None).

    Returns (n_resamples, m) (or (n_resamples,) for 1-D input). Same seed, same resamples."""
    arr, flat = _as_2d(values)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap zero queries")
    codes, m = cluster_codes(clusters, n)
    sums = cluster_sums(arr, codes, m)  # (m, k)
    sizes = np.bincount(codes, minlength=m).astype(np.float64)  # (m,)
    out = np.empty((n_resamples, arr.shape[1]))
    start = 0
    with one_blas_thread():
        for weights in resample_weights(m, n_resamples, seed):  # (size, m) counts
            size = len(weights)
            out[start : start + size] = (weights @ sums) / (weights @ sizes)[:, None]  # (size, k)
            start += size
    return out[:, 0] if flat else out


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile bootstrap CI of each column of values (n,) or (n, m), resampling
    clusters: (mean, low, high)."""
    arr, flat = _as_2d(values)
    means = bootstrap_means(arr, n_resamples, seed, clusters)  # (B, m)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    mean = arr.mean(axis=0)
    # Floating-point sums can put a CI bound a hair outside the mean (e.g. all values equal).
    low, high = np.minimum(low, mean), np.maximum(high, mean)
    if flat:
        return mean[:1], low[:1], high[:1]
    return mean, low, high


def _null_statistics(
    diffs: np.ndarray, clusters: Sequence[int] | np.ndarray | None, n_permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Studentised sign-flip statistics of each column of diffs (n, k): the observed ones (k,),
    the null ones under every sign pattern of the clusters (B, k), and whether B enumerates every
    pattern. T = |sum of s_j D_j| / sqrt(sum of D_j^2) over cluster totals D_j: for one column a
    monotone function of |mean|, so its p-value is the plain sign-flip test's; across columns
    comparable, so the max-T adjustment weighs every comparison alike."""
    n = diffs.shape[0]
    codes, m = cluster_codes(clusters, n)
    totals = cluster_sums(diffs, codes, m)  # (m, k)
    scale = np.sqrt((totals**2).sum(axis=0))  # (k,)
    scale = np.where(scale > 0, scale, 1.0)
    observed = np.abs(totals.sum(axis=0)) / scale
    exact, patterns = sign_patterns(m, n_permutations, seed)
    with one_blas_thread():
        null = np.concatenate([np.abs(signs @ totals) / scale for signs in patterns])  # (B, k)
    return observed, null, exact


def _tolerance(arr: np.ndarray) -> float:
    return 1e-12 * max(1.0, float(np.abs(arr).max()) if arr.size else 1.0)


def _raw_pvalues(
    arr: np.ndarray, observed: np.ndarray, null: np.ndarray, exact: bool
) -> np.ndarray:
    """Each column's own sign-flip p-value from the null statistics (B, k): every tolerance is
    the column's own, so a column gets the same p tested alone or beside others (the max-T
    family's raw p is then the paired comparison's p, and is computed once)."""
    tol = 1e-9 * np.maximum(1.0, observed)  # (k,)
    count = (null >= observed - tol).sum(axis=0)
    p = count / len(null) if exact else (count + 1.0) / (len(null) + 1.0)
    quiet = 1e-12 * np.maximum(1.0, np.abs(arr).max(axis=0)) if arr.size else 1e-12
    return np.where(np.all(np.abs(arr) <= quiet, axis=0), 1.0, p)  # nothing to test


def sign_flip_pvalue(
    diffs: np.ndarray,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    clusters: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Two-sided p-value that the mean paired difference is zero, per column of diffs (n,) or (n, m).

    Under the null each cluster's total difference is equally likely to have either sign (each
    query its own cluster when `clusters` is None). Exact enumeration of all 2^M sign patterns
    for M <= 16 clusters, else `n_permutations` seeded random patterns with the (b+1)/(B+1)
    correction so a p-value is never 0."""
    arr, flat = _as_2d(diffs)
    if arr.shape[0] == 0:
        raise ValueError("cannot test zero queries")
    p = _raw_pvalues(arr, *_null_statistics(arr, clusters, n_permutations, seed))
    return p[:1] if flat else p


@dataclass(frozen=True)
class FamilyAdjustment:
    """A family's raw and max-T adjusted p-values, and the single-test level each comparison
    effectively gets (what its power is computed at)."""

    p_raw: np.ndarray  # (k,)
    p_adjusted: np.ndarray  # (k,)
    levels: np.ndarray  # (k,) P(T_k >= the family's critical value) under the null


def maxt_adjust(
    diffs: np.ndarray,
    clusters: Sequence[int] | np.ndarray | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
) -> FamilyAdjustment:
    """Westfall–Young step-down max-T adjusted p-values for the k comparisons of a family, one
    column of paired differences each (n, k), over the same cluster sign-flip draws.

    Order the comparisons by their observed statistic, largest first; the r-th one's adjusted p
    is the share of draws whose largest statistic among the r-th and every smaller comparison
    reaches its observed one, made monotone. The family-wise error stays at alpha under any
    dependence between the comparisons; when they are correlated (Matryoshka dims of one model
    are) it rejects more than Holm, which assumes the worst."""
    arr, _ = _as_2d(diffs)
    k = arr.shape[1]
    observed, null, exact = _null_statistics(arr, clusters, n_permutations, seed)
    tol = 1e-9 * max(1.0, float(observed.max()) if k else 1.0)
    b = len(null)
    order = np.argsort(-observed, kind="stable")
    # successive maxima from the smallest observed comparison up: (B, k) in `order`
    tail_max = np.maximum.accumulate(null[:, order][:, ::-1], axis=1)[:, ::-1]
    counts = (tail_max >= observed[order] - tol).sum(axis=0)
    stepped = counts / b if exact else (counts + 1.0) / (b + 1.0)
    stepped = np.maximum.accumulate(stepped)
    adjusted = np.empty(k)
    adjusted[order] = np.minimum(1.0, stepped)
    p_raw = _raw_pvalues(arr, observed, null, exact)
    nothing = np.all(np.abs(arr) <= _tolerance(arr), axis=0)
    adjusted = np.where(nothing, 1.0, adjusted)
    critical = np.quantile(null.max(axis=1), 1.0 - alpha) if k else 0.0
    levels = (null >= critical - tol).mean(axis=0) if k else np.zeros(0)
    return FamilyAdjustment(p_raw, np.maximum(adjusted, p_raw), np.clip(levels, 1e-12, alpha))


@dataclass(frozen=True)
class McNemarResult:
    """Discordant counts and the exact two-sided p-value."""

    gained: int  # base miss -> tuned hit
    lost: int  # base hit -> tuned miss
    p_value: float


def mcnemar_exact(base_hits: np.ndarray, tuned_hits: np.ndarray) -> McNemarResult:
    """McNemar's exact test on paired binary outcomes (a binomial test on the discordant pairs)."""
    from scipy.stats import binomtest

    base = np.asarray(base_hits).astype(bool)
    tuned = np.asarray(tuned_hits).astype(bool)
    if base.shape != tuned.shape:
        raise ValueError(f"paired outcomes differ in shape: {base.shape} vs {tuned.shape}")
    gained = int(np.sum(~base & tuned))
    lost = int(np.sum(base & ~tuned))
    if gained + lost == 0:
        return McNemarResult(0, 0, 1.0)
    p = float(binomtest(min(gained, lost), gained + lost, 0.5).pvalue)
    return McNemarResult(gained, lost, min(1.0, p))


@dataclass(frozen=True)
class PairedComparison:
    """A tuned-minus-base delta with its paired CI and raw p-value. Whether it counts is decided
    by core.evaluation.verdict once the p-values of its family are adjusted."""

    metric: str
    base: float
    other: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    n_queries: int
    sd_diff: float  # sample standard deviation of the per-query differences (ddof=1)
    warning: str | None = None
    n_clusters: int = 0  # 0: not recorded (each query its own cluster)
    se_diff: float = math.nan  # cluster-robust standard error of the mean difference

    @property
    def clusters(self) -> int:
        return self.n_clusters or self.n_queries


def format_p(p: float) -> str:
    """A p-value for people: 0.041, 0.0003, <0.0001."""
    if p < 1e-4:
        return "<0.0001"
    if p < 0.001:
        return f"{p:.4f}"
    return f"{p:.3f}"


def power_warning(
    n_queries: int,
    delta: float,
    ci_low: float,
    ci_high: float,
    min_queries: int = MIN_QUERIES,
    confidence: float = 0.95,
) -> str | None:
    """A warning when the queries are too few to tell two models apart, else None."""
    half_width = (ci_high - ci_low) / 2.0
    level = f"{confidence:.0%}"
    if n_queries < min_queries:
        return (
            f"Only {n_queries} queries (fewer than {min_queries}): the {level} interval of the "
            f"difference is ±{half_width:.3f} wide, too few to tell the models apart reliably."
        )
    if half_width > abs(delta):
        return (
            f"The {level} interval of the difference (±{half_width:.3f}) is wider than the difference "
            f"itself ({delta:+.3f}): {n_queries} queries are too few to tell these models apart."
        )
    return None


def clustered_se(diffs: np.ndarray, clusters: Sequence[int] | np.ndarray | None = None) -> float:
    """The cluster-robust standard error of the mean of diffs (n,): with cluster totals D_j and
    sizes n_j, sqrt(M / (M - 1) * sum (D_j - mean * n_j)^2) / n. With one query per cluster it is
    the usual sd / sqrt(n). NaN for fewer than 2 clusters."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    codes, m = cluster_codes(clusters, n)
    if m < 2:
        return math.nan
    totals = np.bincount(codes, weights=d, minlength=m)
    sizes = np.bincount(codes, minlength=m)
    residual = totals - d.mean() * sizes
    return float(math.sqrt(m / (m - 1) * float(np.sum(residual**2))) / n)


def _t_sum(alpha: float, power: float, df: float) -> float:
    """t_{1-alpha/2, df} + t_{power, df}: the multiplier of the standard error a two-sided test
    at `alpha` needs to detect a difference with `power` (Student's t; the normal for df = inf)."""
    from scipy.stats import t

    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    return float(t.ppf(1.0 - alpha / 2.0, df) + t.ppf(power, df))


def detectable_from_se(
    se: float,
    n_clusters: int,
    alpha: float = 0.05,
    power: float = 0.8,
    df: float | None = None,
) -> float:
    """The smallest mean paired difference a two-sided test at `alpha` detects with `power`,
    from the standard error of the mean difference over `n_clusters` clusters: (t_{1-alpha/2} +
    t_power) * se with n_clusters - 1 degrees of freedom (or `df`). NaN when it cannot be told."""
    if n_clusters < 2 or not math.isfinite(se) or se <= 0:
        return math.nan
    return _t_sum(alpha, power, df if df and df > 0 else n_clusters - 1) * se


def questions_needed_from_se(
    se: float,
    n_queries: int,
    n_clusters: int,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Roughly how many questions (in clusters of today's average size) a two-sided test at
    `alpha` needs to detect a mean difference `delta` with `power`: the standard error shrinks
    with the square root of the number of clusters. NaN when delta is 0 or the spread unknown."""
    if not math.isfinite(se) or se <= 0 or not math.isfinite(delta) or delta == 0:
        return math.nan
    if n_queries < 1 or n_clusters < 2:
        return math.nan
    per_cluster = n_queries / n_clusters
    clusters = float(n_clusters)
    for _ in range(8):  # the t quantiles depend on the clusters sought: settle them
        clusters = n_clusters * (_t_sum(alpha, power, max(1.0, clusters - 1)) * se / delta) ** 2
    return float(math.ceil(clusters * per_cluster))


def detectable_delta(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """detectable_from_se for n independent queries whose differences have standard deviation
    `sd` (se = sd / sqrt(n), n - 1 degrees of freedom)."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    return detectable_from_se(sd / math.sqrt(n), n, alpha, power)


def queries_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Roughly how many independent paired queries with per-query spread `sd` a two-sided test
    at `alpha` needs to detect `delta` with `power` (the inverse of detectable_delta, rounded
    up). NaN when the difference is zero or the spread is unknown."""
    if not math.isfinite(sd) or sd <= 0 or not math.isfinite(delta) or delta == 0:
        return math.nan
    n = (_t_sum(alpha, power, math.inf) * sd / abs(delta)) ** 2
    for _ in range(8):  # the t quantiles depend on the n sought: settle it
        n = (_t_sum(alpha, power, max(1.0, n - 1)) * sd / abs(delta)) ** 2
    needed = max(2, math.ceil(n))
    for _ in range(5):  # the fixed point is approximate: step to the exact boundary
        if detectable_delta(sd, needed, alpha, power) > abs(delta):
            needed += 1
        elif needed > 2 and detectable_delta(sd, needed - 1, alpha, power) <= abs(delta):
            needed -= 1
        else:
            break
    return float(needed)


def minimum_detectable_delta(
    diffs: np.ndarray,
    alpha: float = 0.05,
    power: float = 0.8,
    clusters: Sequence[int] | np.ndarray | None = None,
) -> float:
    """detectable_from_se from observed per-query differences (their cluster-robust spread)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return float("inf")
    return detectable_from_se(clustered_se(d, clusters), n_clusters(clusters, len(d)), alpha, power)


def compare_paired(
    base: np.ndarray,
    other: np.ndarray,
    metric: str,
    *,
    clusters: Sequence[int] | np.ndarray | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    confidence: float = 0.95,
    seed: int = 0,
    sign_flip_p: float | None = None,
) -> PairedComparison:
    """Compare per-query values of two models on the same queries (other minus base), whole
    clusters at a time.

    hit_rate@k with one question per cluster uses McNemar's exact test, every other case a
    cluster sign-flip permutation test. The p-value is raw: core.evaluation.verdict adjusts it
    within its family and decides. `sign_flip_p` is that sign-flip p already computed over the
    same draws (maxt_adjust's p_raw for this column), so it is not computed twice."""
    b = np.asarray(base, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    if b.shape != o.shape or b.ndim != 1:
        raise ValueError(f"paired values must be two (n,) arrays, got {b.shape} and {o.shape}")
    diffs = o - b
    n_cl = n_clusters(clusters, len(b))
    delta, low, high = (
        float(x[0]) for x in bootstrap_ci(diffs, n_resamples, confidence, seed, clusters)
    )
    family, _ = parse_metric(metric)
    if family == "hit_rate" and n_cl == len(b):
        p_value, test = mcnemar_exact(b > 0, o > 0).p_value, "mcnemar-exact"
    else:
        p_value = (
            float(sign_flip_p)
            if sign_flip_p is not None
            else float(sign_flip_pvalue(diffs, n_permutations, seed, clusters)[0])
        )
        test = "sign-flip" if n_cl == len(b) else "cluster sign-flip"
    return PairedComparison(
        metric=metric,
        base=float(b.mean()),
        other=float(o.mean()),
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        test=test,
        n_queries=len(b),
        sd_diff=float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
        warning=power_warning(len(b), delta, low, high, confidence=confidence),
        n_clusters=n_cl,
        se_diff=clustered_se(diffs, clusters),
    )


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error), same order as given."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted
