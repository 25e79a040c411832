"""The cross-fitted verdict by simulation, through its real code: questions in clusters dealt
into K folds by the real dealing (core.crossfit.folds.deal_folds); each fold model's per-question
difference from the base is symmetric noise shared within a cluster, plus, optionally, a fold
effect (a fold model that came out better or worse than the recipe's average) and a true gain.
Counted: the cluster test over all questions (core.evaluation.statistics.compare_paired), and the
verdict the cross-fit gives, which also needs the fold-level interval
(core.crossfit.intervals.fold_interval) to exclude zero. The tests assert these rates;
`python -m bench.statistics` prints them."""

from __future__ import annotations

import numpy as np

from core.crossfit.folds import deal_folds
from core.crossfit.intervals import fold_interval
from core.evaluation.simulation import Rates, clustered_differences
from core.evaluation.statistics import compare_paired
from core.questions.dataset import QAItem


def crossfit_null_rates(
    n_clusters: int = 120,
    per_cluster: int = 2,
    folds: int = 5,
    fold_sd: float = 0.0,
    effect: float = 0.0,
    reps: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 1000,
) -> Rates:
    """How often the cross-fitted verdict calls the recipe better or worse: the cluster test over
    every question (`pooled`), and the verdict the cross-fit gives, which also needs the
    fold-level interval (core.crossfit.intervals) to exclude zero. `fold_sd` is the standard
    deviation of a fold-to-fold effect (fold models that came out better or worse than the
    recipe's average), in units of one question's spread; `effect` the recipe's true gain."""
    rng = np.random.default_rng(seed)
    items = [
        QAItem(id=f"q{n}", question=f"Question {n}?", chunk_id=f"c{n // per_cluster}")
        for n in range(n_clusters * per_cluster)
    ]
    pooled = verdict = 0
    for rep in range(reps):
        fold_of = np.asarray(deal_folds(items, folds, seed=rep))
        diffs, clusters = clustered_differences(rng, n_clusters, per_cluster, 0.5, effect)
        diffs = diffs + rng.normal(0.0, fold_sd, folds)[fold_of]
        base = rng.random(len(diffs))
        cmp = compare_paired(
            base,
            base + diffs,
            "ndcg@10",
            clusters=clusters,
            n_resamples=200,
            n_permutations=n_permutations,
            seed=rep,
        )
        decided = cmp.p_value < alpha and (cmp.ci_low > 0 or cmp.ci_high < 0)
        fold = fold_interval(diffs, fold_of, clusters, 1 - alpha)
        pooled += decided
        verdict += decided and (fold.low > 0 or fold.high < 0)
    what = "false positives" if effect == 0 else f"power at {effect:g} sd"
    return Rates(
        reps,
        {
            f"pooled cluster test, {what}": pooled / reps,
            f"cross-fitted verdict, {what}": verdict / reps,
        },
    )


def split_power(
    n_clusters: int = 24,
    per_cluster: int = 2,
    effect: float = 0.2,
    reps: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_permutations: int = 1000,
) -> Rates:
    """The power of a split evaluation that tests only a fifth of crossfit_null_rates'
    questions (24 of its 120 clusters) with one tuned model, at the same true gain."""
    rng = np.random.default_rng(seed)
    found = 0
    for rep in range(reps):
        diffs, clusters = clustered_differences(rng, n_clusters, per_cluster, 0.5, effect)
        base = rng.random(len(diffs))
        cmp = compare_paired(
            base,
            base + diffs,
            "ndcg@10",
            clusters=clusters,
            n_resamples=200,
            n_permutations=n_permutations,
            seed=rep,
        )
        found += cmp.p_value < alpha and (cmp.ci_low > 0 or cmp.ci_high < 0)
    return Rates(reps, {f"split evaluation of a fifth, power at {effect:g} sd": found / reps})
