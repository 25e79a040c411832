"""Questions that share a chunk are one cluster: the bootstrap resamples clusters, the sign-flip
test flips them, the standard error and the detectable delta count them, and one family's
max-T adjustment spans every model and dim. Each is checked against an independent computation
(plain loops, itertools enumeration, a brute-force Westfall–Young) and by simulation through
the real code (core.evaluation.simulation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from core.evaluation.simulation import clustered_null_rates, family_rates
from core.evaluation.statistics import (
    bootstrap_ci,
    bootstrap_means,
    clustered_se,
    compare_paired,
    detectable_from_se,
    maxt_adjust,
    minimum_detectable_delta,
    sign_flip_pvalue,
)


def clustered_data(seed: int = 0, n_clusters: int = 12, per: int = 3):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(n_clusters), per)
    values = rng.normal(0.1, 1.0, n_clusters)[clusters] + rng.normal(0, 0.3, len(clusters))
    return values, clusters


def test_cluster_bootstrap_equals_resampling_whole_clusters_by_hand():
    values, clusters = clustered_data()
    ours = bootstrap_means(values, n_resamples=300, seed=4, clusters=clusters)
    rng = np.random.default_rng(4)
    members = [values[clusters == c] for c in range(12)]
    by_hand = []
    for _ in range(300):
        counts = rng.multinomial(12, np.full(12, 1 / 12))
        picked = np.concatenate([np.tile(members[c], k) for c, k in enumerate(counts)])
        by_hand.append(picked.mean())
    assert ours == pytest.approx(by_hand, abs=1e-12)


def test_one_question_per_cluster_is_the_per_question_method_draw_for_draw():
    rng = np.random.default_rng(2)
    values = rng.normal(0.02, 0.3, (40, 3))
    singletons = np.arange(40)[::-1]  # labels need not be in order
    for a, b in zip(
        bootstrap_ci(values, 500, seed=3),
        bootstrap_ci(values, 500, seed=3, clusters=singletons),
        strict=False,
    ):
        assert np.array_equal(a, b)
    assert np.array_equal(
        sign_flip_pvalue(values, 2000, seed=1), sign_flip_pvalue(values, 2000, 1, singletons)
    )


def test_cluster_sign_flip_equals_enumerating_every_cluster_sign_by_hand():
    values, clusters = clustered_data(n_clusters=9)
    totals = [values[clusters == c].sum() for c in range(9)]
    observed = abs(sum(totals))
    extreme = sum(
        abs(sum(s * t for s, t in zip(signs, totals, strict=False))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=9)
    )
    assert sign_flip_pvalue(values, clusters=clusters)[0] == pytest.approx(extreme / 2**9)
    assert sign_flip_pvalue(values)[0] < extreme / 2**9  # per question: too confident


def test_clustered_standard_error_by_hand_and_without_clusters():
    values, clusters = clustered_data()
    n, m = len(values), 12
    mean = values.mean()
    residual = [values[clusters == c].sum() - mean * 3 for c in range(m)]
    by_hand = math.sqrt(m / (m - 1) * sum(r**2 for r in residual)) / n
    assert clustered_se(values, clusters) == pytest.approx(by_hand, rel=1e-12)
    assert clustered_se(values) == pytest.approx(np.std(values, ddof=1) / math.sqrt(n))
    # clustered questions carry less evidence: a wider error and a larger detectable delta
    assert clustered_se(values, clusters) > clustered_se(values)
    assert minimum_detectable_delta(values, clusters=clusters) == pytest.approx(
        detectable_from_se(by_hand, m)
    )


def test_compare_paired_counts_clusters_and_uses_the_cluster_test_for_hit_rates():
    base = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1], dtype=float)
    tuned = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1], dtype=float)
    per_question = compare_paired(base, tuned, "hit_rate@5")
    assert per_question.test == "mcnemar-exact" and per_question.n_clusters == 10
    clustered = compare_paired(base, tuned, "hit_rate@5", clusters=[0, 0, 0, 1, 2, 3, 4, 4, 5, 6])
    assert clustered.test == "cluster sign-flip" and clustered.n_clusters == 7
    # the three gains are one cluster, the only one that differs: every one of the 2^7 sign
    # patterns reaches |total| 3, so p = 1 (one piece of evidence); McNemar counts three: 2 / 2^3
    assert clustered.p_value == pytest.approx(1.0)
    assert per_question.p_value == pytest.approx(0.25)


def brute_force_maxt(diffs: np.ndarray) -> np.ndarray:
    """Westfall–Young step-down max-T by enumeration, written from the textbook's definition."""
    n, k = diffs.shape
    scale = np.sqrt((diffs**2).sum(axis=0))
    observed = np.abs(diffs.sum(axis=0)) / scale
    patterns = [np.array(s) for s in itertools.product((1.0, -1.0), repeat=n)]
    null = np.array([np.abs(s @ diffs) / scale for s in patterns])
    order = sorted(range(k), key=lambda j: -observed[j])
    adjusted, running = np.zeros(k), 0.0
    for r, j in enumerate(order):
        rest = order[r:]
        p = np.mean([null[b, rest].max() >= observed[j] - 1e-9 for b in range(len(patterns))])
        running = max(running, p)
        adjusted[j] = running
    return adjusted


def test_maxt_equals_a_brute_force_westfall_young():
    rng = np.random.default_rng(7)
    common = rng.normal(0.4, 1, 10)
    diffs = np.stack([common + rng.normal(0, s, 10) for s in (0.1, 0.5, 2.0)], axis=1)
    family = maxt_adjust(diffs)
    assert family.p_adjusted == pytest.approx(brute_force_maxt(diffs), abs=1e-12)
    assert family.p_raw == pytest.approx(sign_flip_pvalue(diffs), abs=1e-12)
    assert (family.p_adjusted >= family.p_raw).all()


def test_the_per_question_test_is_fooled_by_clusters_and_the_cluster_test_is_not():
    """Under the null, 40 clusters of 3 correlated questions (intra-cluster correlation 0.8):
    the per-question test calls about a quarter of the replicates significant at 5%; the
    cluster test stays at the nominal level within Monte Carlo error."""
    rates = clustered_null_rates(reps=1000, seed=1)
    assert rates.rates["per question"] > 0.15
    assert abs(rates.rates["by cluster"] - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 1000)


def test_maxt_keeps_the_family_wise_error_and_beats_holm_on_correlated_dims():
    """Four comparisons with correlation 0.9 (Matryoshka dims): under the null max-T rejects
    any at about alpha (Holm, which assumes the worst, well under it); with a true effect max-T
    finds more of them than Holm on the same draws."""
    null = family_rates(reps=1000, seed=2)
    fwer = null.rates["max-T family-wise error"]
    assert fwer < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 1000)
    assert fwer >= null.rates["Holm family-wise error"]
    power = family_rates(reps=400, effect=0.35, seed=3)
    assert power.rates["max-T power"] >= power.rates["Holm power"] + 0.03
    clustered = family_rates(reps=600, seed=4, per_cluster=3, n_queries=90)
    assert clustered.rates["max-T family-wise error"] < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 600)
