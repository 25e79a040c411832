"""Bootstrap intervals, paired tests, the power warning and the random-ranker baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.evaluation.metrics import metric_names
from core.evaluation.random_ranker import (
    random_ranker_expected,
    random_ranker_expected_one,
    simulate_random_ranker,
)
from core.evaluation.statistics import (
    bootstrap_ci,
    bootstrap_means,
    compare_paired,
    format_p,
    holm_adjust,
    mcnemar_exact,
    minimum_detectable_delta,
    power_warning,
    sign_flip_pvalue,
)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(0).random((200, 3))
    a = bootstrap_ci(values, 500, seed=7)
    b = bootstrap_ci(values, 500, seed=7)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    mean, low, high = a
    assert np.allclose(mean, values.mean(axis=0))
    assert np.all(low < mean) and np.all(mean < high)
    # roughly mean ± 1.96 * sd / sqrt(n) for a uniform variable
    half = 1.96 * values.std(axis=0) / math.sqrt(200)
    assert np.allclose((high - low) / 2, half, rtol=0.2)


def test_bootstrap_of_constant_values_is_a_point():
    mean, low, high = bootstrap_ci(np.ones(40), 300)
    assert mean[0] == low[0] == high[0] == 1.0


def test_bootstrap_means_shape_and_blocking():
    out = bootstrap_means(np.arange(10.0), n_resamples=1234, seed=1)
    assert out.shape == (1234,)
    assert out.min() >= 0 and out.max() <= 9


def test_sign_flip_exact_small_n():
    # n=5 all +1: only the all-plus and all-minus patterns reach |mean| = 1, so p = 2/32
    assert sign_flip_pvalue(np.ones(5))[0] == pytest.approx(2 / 32)
    assert sign_flip_pvalue(np.zeros(5))[0] == 1.0


def test_sign_flip_monte_carlo_large_n():
    rng = np.random.default_rng(0)
    shifted = rng.normal(0.5, 1.0, 100)
    null = rng.normal(0.0, 1.0, 100)
    p = sign_flip_pvalue(np.stack([shifted, null], axis=1), n_permutations=4000)
    assert p[0] < 0.01
    assert p[1] > 0.05


def test_mcnemar_exact_matches_binomial():
    base = np.array([0] * 10 + [1] * 20)
    tuned = np.array([1] * 9 + [0] + [1] * 20)  # 9 gained, 0 lost, one still missed
    result = mcnemar_exact(base, tuned)
    assert (result.gained, result.lost) == (9, 0)
    assert result.p_value == pytest.approx(2 * 0.5**9)
    assert mcnemar_exact(base, base).p_value == 1.0


def test_truly_better_model_ci_excludes_zero():
    rng = np.random.default_rng(1)
    base = (rng.random(200) < 0.55).astype(float)
    # the tuned model keeps every base hit and fixes 60% of base misses
    tuned = np.where(base == 1, 1.0, (rng.random(200) < 0.6).astype(float))
    cmp = compare_paired(base, tuned, "hit_rate@5")
    assert cmp.delta > 0
    assert cmp.ci_low > 0
    assert cmp.p_value < 0.001
    assert cmp.test == "mcnemar-exact"
    assert cmp.warning is None


def test_indistinguishable_models_are_not_significant():
    rng = np.random.default_rng(2)
    base = rng.random(40)
    tuned = base + rng.normal(0, 0.05, 40)  # noise around the same quality
    cmp = compare_paired(base, tuned, "ndcg@10")
    assert cmp.ci_low < 0 < cmp.ci_high
    assert cmp.test == "sign-flip"
    assert cmp.warning is not None and "too few" in cmp.warning


def test_power_warning_rules():
    assert "Only 12 queries" in power_warning(12, 0.3, 0.1, 0.5)
    assert "wider than the difference" in power_warning(100, 0.01, -0.03, 0.05)
    assert power_warning(100, 0.2, 0.15, 0.25) is None


def test_minimum_detectable_delta_shrinks_with_more_queries():
    rng = np.random.default_rng(0)
    small = minimum_detectable_delta(rng.normal(0, 1, 25))
    large = minimum_detectable_delta(rng.normal(0, 1, 2500))
    assert large < small / 5


def test_holm_adjust():
    adjusted = holm_adjust([0.01, 0.04, 0.03])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_format_p():
    assert format_p(0.04123) == "0.041"
    assert format_p(0.00031) == "0.0003"
    assert format_p(1e-7) == "<0.0001"


def test_random_ranker_one_gold_closed_forms():
    n = 12
    exp = random_ranker_expected_one(n, 1)
    assert exp["hit_rate@5"] == pytest.approx(5 / 12)
    assert exp["precision@5"] == pytest.approx(1 / 12)
    assert exp["mrr@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 12)
    assert exp["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 11)) / 12)
    assert exp["ndcg@10"] == pytest.approx(0.38, abs=0.005)  # the bootcamp's 12 validation chunks
    assert exp["map@100"] == pytest.approx(sum(1 / r for r in range(1, 13)) / 12)
    tiny = random_ranker_expected_one(3, 1)
    assert tiny["hit_rate@5"] == 1.0  # k beyond the corpus


@pytest.mark.parametrize("corpus_size, n_relevant", [(12, 1), (30, 3), (150, 2)])
def test_random_ranker_exact_matches_simulation(corpus_size, n_relevant):
    exact = random_ranker_expected_one(corpus_size, n_relevant)
    simulated = simulate_random_ranker(corpus_size, n_relevant, n_sim=6000, seed=3)
    for name in metric_names():
        assert exact[name] == pytest.approx(simulated[name], abs=0.02), name


def test_random_ranker_averages_over_queries():
    mixed = random_ranker_expected(20, [1, 2])
    one, two = random_ranker_expected_one(20, 1), random_ranker_expected_one(20, 2)
    assert mixed["recall@3"] == pytest.approx((one["recall@3"] + two["recall@3"]) / 2)
    with pytest.raises(ValueError):
        random_ranker_expected_one(5, 6)
