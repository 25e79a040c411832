"""Can we trust the number? Bootstrap intervals, paired tests and the random-ranker baseline.

How it works:
1. Bootstrap CIs resample queries with replacement. Resamples are drawn as multinomial count
   weights (n_resamples, n), so one matrix product gives every metric of every model at once, and
   the same seed gives the same resamples for every column (which also makes them paired).
2. A tuned-vs-base delta gets a paired bootstrap CI (resampling per-query differences) and a p-value:
   McNemar's exact test for hit@k (only the discordant queries matter) and a sign-flip permutation
   test for the other metrics (exact enumeration for up to 16 queries, seeded Monte Carlo above).
   Whether a delta counts is decided in core.evaluation.verdict, after the Holm adjustment of its family.
3. A warning says when the queries are too few to tell the models apart; power figures say how
   small a difference this many queries could detect, and how many would detect the observed one.
4. The random ranker's expected score is exact (linearity of expectation plus hypergeometric
   probabilities), so it can sit beside every figure; a seeded simulation checks it in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.evaluation.metrics import KS, MAP_K, MRR_K, NDCG_K, metric_names, parse_metric

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10000
MIN_QUERIES = 30
EXACT_SIGN_FLIP_MAX_N = 16
_WEIGHT_BLOCK = 500  # resamples per block, to bound memory at (block, n) counts


def _as_2d(values: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim != 2:
        raise ValueError(f"expected (n,) or (n, m) values, got shape {arr.shape}")
    return arr, False


def bootstrap_means(
    values: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of the rows of values (n,) or (n, m).

    Returns (n_resamples, m) (or (n_resamples,) for 1-D input). Same seed, same resamples."""
    arr, flat = _as_2d(values)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap zero queries")
    rng = np.random.default_rng(seed)
    pvals = np.full(n, 1.0 / n)
    out = np.empty((n_resamples, arr.shape[1]))
    for start in range(0, n_resamples, _WEIGHT_BLOCK):
        size = min(_WEIGHT_BLOCK, n_resamples - start)
        weights = rng.multinomial(n, pvals, size=size).astype(np.float64)  # (size, n) counts
        out[start : start + size] = weights @ arr / n  # (size, m)
    return out[:, 0] if flat else out


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile bootstrap CI of each column of values (n,) or (n, m): (mean, low, high)."""
    arr, flat = _as_2d(values)
    means = bootstrap_means(arr, n_resamples, seed)  # (B, m)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    mean = arr.mean(axis=0)
    # Floating-point sums can put a CI bound a hair outside the mean (e.g. all values equal).
    low, high = np.minimum(low, mean), np.maximum(high, mean)
    if flat:
        return mean[:1], low[:1], high[:1]
    return mean, low, high


def sign_flip_pvalue(
    diffs: np.ndarray, n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> np.ndarray:
    """Two-sided p-value that the mean paired difference is zero, per column of diffs (n,) or (n, m).

    Under the null each difference is equally likely to have either sign. Exact enumeration of all
    2^n sign patterns for n <= 16, else `n_permutations` seeded random patterns with the (b+1)/(B+1)
    correction so a p-value is never 0."""
    arr, flat = _as_2d(diffs)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("cannot test zero queries")
    observed = np.abs(arr.mean(axis=0))  # (m,)
    tol = 1e-12 * max(1.0, float(np.abs(arr).max()))
    if n <= EXACT_SIGN_FLIP_MAX_N:
        codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :] & 1
        signs = 1.0 - 2.0 * codes  # (2^n, n)
        null = np.abs(signs @ arr / n)  # (2^n, m)
        p = (null >= observed - tol).mean(axis=0)
    else:
        rng = np.random.default_rng(seed)
        count = np.zeros(arr.shape[1])
        for start in range(0, n_permutations, _WEIGHT_BLOCK):
            size = min(_WEIGHT_BLOCK, n_permutations - start)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
            count += (np.abs(signs @ arr / n) >= observed - tol).sum(axis=0)
        p = (count + 1.0) / (n_permutations + 1.0)
    p = np.where(np.all(np.abs(arr) <= tol, axis=0), 1.0, p)  # identical results: nothing to test
    return p[:1] if flat else p


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
    by core.evaluation.verdict once the p-values of its family are Holm-adjusted."""

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


def _z_sum(alpha: float, power: float) -> float:
    from scipy.stats import norm

    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    return float(norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power))


def detectable_delta(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided test at `alpha` detects with `power`,
    given the standard deviation `sd` of the per-query differences and `n` queries (normal
    approximation: (z_{1-alpha/2} + z_power) * sd / sqrt(n)). NaN when it cannot be told
    (fewer than 2 queries, or no spread at all)."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def queries_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Roughly how many paired queries a two-sided test at `alpha` needs to detect a mean
    difference `delta` with `power` (the inverse of detectable_delta, rounded up). NaN when the
    difference is zero or the spread is unknown."""
    if not math.isfinite(sd) or sd <= 0 or not math.isfinite(delta) or delta == 0:
        return math.nan
    return float(math.ceil((_z_sum(alpha, power) * sd / abs(delta)) ** 2))


def minimum_detectable_delta(diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """detectable_delta from observed per-query differences (their spread and count)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return float("inf")
    return detectable_delta(float(np.std(d, ddof=1)), len(d), alpha, power)


def compare_paired(
    base: np.ndarray,
    other: np.ndarray,
    metric: str,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare per-query values of two models on the same queries (other minus base).

    hit_rate@k uses McNemar's exact test, every other metric a sign-flip permutation test. The
    p-value is raw: core.evaluation.verdict adjusts it within its family and decides."""
    b = np.asarray(base, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    if b.shape != o.shape or b.ndim != 1:
        raise ValueError(f"paired values must be two (n,) arrays, got {b.shape} and {o.shape}")
    diffs = o - b
    delta, low, high = (float(x[0]) for x in bootstrap_ci(diffs, n_resamples, confidence, seed))
    family, _ = parse_metric(metric)
    if family == "hit_rate":
        p_value, test = mcnemar_exact(b > 0, o > 0).p_value, "mcnemar-exact"
    else:
        p_value, test = float(sign_flip_pvalue(diffs, n_permutations, seed)[0]), "sign-flip"
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


# ---------------------------------------------------------------- random ranker


def _p_none_in_top(corpus_size: int, n_relevant: int, k: int) -> float:
    """Chance that a random order puts none of the relevant chunks in its top k."""
    p = 1.0
    for j in range(min(k, corpus_size)):
        p *= max(0, corpus_size - n_relevant - j) / (corpus_size - j)
    return p


def random_ranker_expected_one(
    corpus_size: int, n_relevant: int = 1, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Exact expected metrics of a ranker that returns the corpus in a uniformly random order,
    for one query with `n_relevant` relevant chunks among `corpus_size`."""
    big_n, r = int(corpus_size), int(n_relevant)
    if big_n <= 0 or r <= 0 or r > big_n:
        raise ValueError(f"need 0 < n_relevant <= corpus_size, got {r} and {big_n}")
    p_rel = r / big_n  # chance that any one position holds a relevant chunk
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit_rate@{k}"] = 1.0 - _p_none_in_top(big_n, r, k)
    for k in ks:
        out[f"precision@{k}"] = min(k, big_n) * p_rel / k
    for k in ks:
        out[f"recall@{k}"] = min(k, big_n) * p_rel / r
    # P(first relevant at rank i) = P(ranks 1..i-1 all irrelevant) * r / (N - i + 1)
    mrr, none_before = 0.0, 1.0
    for i in range(1, min(MRR_K, big_n) + 1):
        mrr += none_before * r / (big_n - i + 1) / i
        none_before *= max(0, big_n - r - (i - 1)) / (big_n - (i - 1))
    out[f"mrr@{MRR_K}"] = mrr
    positions = np.arange(1, min(NDCG_K, big_n) + 1)
    dcg = float(np.sum(p_rel / np.log2(positions + 1.0)))
    idcg = float(np.sum(1.0 / np.log2(np.arange(1, min(NDCG_K, r) + 1) + 1.0)))
    out[f"ndcg@{NDCG_K}"] = dcg / idcg
    # E[rel_i * hits_i / i] = P(rel_i) * (1 + (i-1)(r-1)/(N-1)) / i
    ranks = np.arange(1, min(MAP_K, big_n) + 1, dtype=np.float64)
    extra = (ranks - 1) * (r - 1) / (big_n - 1) if big_n > 1 else 0.0 * ranks
    out[f"map@{MAP_K}"] = float(np.sum(p_rel * (1.0 + extra) / ranks)) / min(MAP_K, r)
    return out


def random_ranker_expected(
    corpus_size: int, n_relevant: Sequence[int] | int = 1, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Expected metrics of a random ranker averaged over queries with the given relevant counts."""
    counts = (
        [int(n_relevant)]
        if isinstance(n_relevant, int | np.integer)
        else [int(c) for c in n_relevant]
    )
    if not counts:
        return dict.fromkeys(metric_names(ks), 0.0)
    per_count = {c: random_ranker_expected_one(corpus_size, c, ks) for c in set(counts)}
    return {name: float(np.mean([per_count[c][name] for c in counts])) for name in metric_names(ks)}


def simulate_random_ranker(
    corpus_size: int, n_relevant: int = 1, ks: Sequence[int] = KS, n_sim: int = 20000, seed: int = 0
) -> dict[str, float]:
    """The random ranker's metrics by seeded simulation (a check on the exact formulas)."""
    from core.evaluation.metrics import SEARCH_DEPTH, mean_scores, score_relevance

    rng = np.random.default_rng(seed)
    depth = min(SEARCH_DEPTH, corpus_size)
    rel = np.zeros((n_sim, depth), dtype=bool)
    for s in range(n_sim):
        # The relevant chunks are items 0..r-1; a random permutation's first `depth` positions.
        top = rng.permutation(corpus_size)[:depth]
        rel[s] = top < n_relevant
    return mean_scores(score_relevance(rel, np.full(n_sim, n_relevant), ks))
