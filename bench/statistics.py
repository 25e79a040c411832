"""The verdict's tests by simulation, through their real code (core.evaluation.simulation):

    .venv/bin/python -m bench.statistics            # 2,000 replicates each, about 30 s
    .venv/bin/python -m bench.statistics --reps 500

Prints, as a markdown table for the README:
- under the null, 40 clusters of 3 questions (intra-cluster correlation 0.8): the false-positive
  rate at 5% of the per-question paired test and of the cluster test;
- four comparisons with correlation 0.9 (Matryoshka dims), 60 questions: the family-wise error
  of max-T and Holm under the null, and their power per comparison at a true effect of 0.35 sd;
- a 5-fold cross-fit over 240 questions: the false-positive rate of the pooled cluster test and
  of the cross-fitted verdict (which also needs the fold-level interval), with fold models alike
  and with fold models that differ, and both powers at a true gain of 0.2 sd.
"""

from __future__ import annotations

import argparse
import time

from core.crossfit.simulation import crossfit_null_rates, split_power
from core.evaluation.simulation import Rates, clustered_null_rates, family_rates


def _line(setting: str, rates: Rates) -> list[str]:
    return [
        f"| {setting} | {name} | {value:.3f} ± {1.96 * rates.mc_se(name):.3f} | {rates.reps:,} |"
        for name, value in rates.rates.items()
    ]


def main(reps: int = 2000) -> list[str]:
    """Run the simulations and return the table's lines."""
    start = time.perf_counter()
    lines = [
        "| setting | test | rate at α = 0.05 (± 95% Monte Carlo) | replicates |",
        "|---|---|---|---|",
    ]
    lines += _line(
        "null, 40 clusters × 3 questions, ICC 0.8: false positives",
        clustered_null_rates(reps=reps, seed=1),
    )
    lines += _line(
        "null, 4 dims with ρ 0.9, 60 questions: family-wise error", family_rates(reps=reps, seed=2)
    )
    lines += _line(
        "null, 4 dims with ρ 0.9, 30 clusters × 3: family-wise error",
        family_rates(reps=reps, seed=4, per_cluster=3, n_queries=90),
    )
    lines += _line(
        "effect 0.35 sd, 4 dims with ρ 0.9, 60 questions: power per dim",
        family_rates(reps=reps // 2, effect=0.35, seed=3),
    )
    for fold_sd in (0.0, 0.3):
        lines += _line(
            f"null, 5-fold cross-fit, 240 questions, fold models differ by sd {fold_sd:g}",
            crossfit_null_rates(reps=reps // 2, fold_sd=fold_sd, seed=5),
        )
    lines += _line(
        "effect 0.2 sd, 5-fold cross-fit, 240 questions: power",
        crossfit_null_rates(reps=reps // 2, effect=0.2, seed=6),
    )
    lines += _line(
        "effect 0.2 sd, split evaluation of 48 of those questions: power",
        split_power(reps=reps // 2, seed=7),
    )
    lines.append(f"\n({time.perf_counter() - start:.0f} s)")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    print("\n".join(main(parser.parse_args().reps)))
