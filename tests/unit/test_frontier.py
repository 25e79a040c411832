"""What to ship: the frontier, the recommendation (a non-inferiority reading of the interval), the
hybrids' fusion (hand-computed) and the weight chosen on validation only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation.frontier import (
    Cell,
    frontier_display,
    frontier_frame,
    memory_text,
    pareto_mask,
    recommend,
)
from core.evaluation.hybrid import RRF_K, choose_weight, rrf_search, weighted_search
from core.evaluation.metrics import metric_names
from core.evaluation.search import id_tie_ranks
from core.evaluation.statistics import holm_adjust


def test_pareto_keeps_cells_nothing_beats():
    #            bytes  value
    cells = [(1536, 0.80), (384, 0.80), (48, 0.70), (48, 0.75), (256, 0.60)]
    mask = pareto_mask([c[0] for c in cells], [c[1] for c in cells])
    assert mask == [False, True, False, True, False]


def cell(model, dim, precision, values, rescore=False):
    return Cell(
        model,
        "base",
        dim,
        precision,
        rescore,
        {m: np.asarray(values, float) for m in metric_names()},
    )


def test_frontier_compares_every_cell_with_the_reference_under_one_holm_family():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    cells = [
        cell("base", 384, "float32", ref),
        cell("base", 384, "int8", ref - 0.001 * (rng.random(200) > 0.5)),  # a hair worse
        cell("base", 64, "binary", ref - 0.3 * rng.random(200)),  # clearly worse
    ]
    frame = frontier_frame(cells, ("base", 384), "ndcg@10", n_resamples=500, n_permutations=2000)
    assert frame["reference"].tolist() == [True, False, False]
    assert frame.loc[0, "delta"] == 0 and frame.loc[0, "p_holm"] == 1.0
    assert frame.loc[2, "delta_ci_high"] < 0 and frame.loc[2, "p_holm"] < 0.05
    assert frame.loc[1:, "p_holm"].tolist() == pytest.approx(
        holm_adjust(frame.loc[1:, "p_value"].to_numpy()).tolist()
    )
    # the bound is simultaneous over the 2 cells: Student's t at 0.05 / 2 one-sided with 199
    # degrees of freedom (t table: 1.97196), not the normal 1.95996
    diffs = cells[1].per_query["ndcg@10"] - ref
    se = np.std(diffs, ddof=1) / np.sqrt(200)
    assert frame.loc[1, "delta_bound"] == pytest.approx(diffs.mean() - 1.971957 * se, abs=1e-6)
    assert frame["bytes_per_vector"].tolist() == [1536, 384, 8]
    rec = recommend(frame, "ndcg@10", 200, tolerance=0.02, n_vectors=10_000_000)
    assert rec.qualified and (rec.dim, rec.cell) == (384, "int8")
    assert "Ship base at 384d, int8" in rec.text
    assert "4x less memory (3.8 GB instead of 15.4 GB" in rec.text
    assert "with 95% confidence over all 2 cells" in rec.text
    strict = recommend(frame, "ndcg@10", 200, tolerance=0.0, n_vectors=10_000_000)
    assert not strict.qualified  # tolerance 0 is 0, not the default 0.02


def test_the_bound_grows_with_the_number_of_cells_compared():
    """Picking the smallest of many cells that look good must not inflate the confidence."""
    rng = np.random.default_rng(7)
    ref = rng.random(60)
    noisy = [ref + rng.normal(0, 0.05, 60) for _ in range(30)]
    few = [cell("base", 384, "float32", ref), cell("base", 48, "binary", noisy[0])]
    many = few + [cell("base", 100 + i, "int8", v) for i, v in enumerate(noisy[1:])]
    bound = {
        len(group): frontier_frame(
            group, ("base", 384), "ndcg@10", n_resamples=200, n_permutations=200
        )
        .set_index("dim")
        .loc[48, "delta_bound"]
        for group in (few, many)
    }
    assert bound[len(many)] < bound[len(few)]


def test_rescoring_text_names_the_disk_vectors_and_the_pool_share():
    frame = pd.DataFrame(
        {
            "model": ["m", "m"],
            "dim": [384, 384],
            "cell": ["float32", "binary + rescoring"],
            "rescore": [False, True],
            "bytes_per_vector": [1536, 48],
            "value": [0.8, 0.8],
            "delta": [0.0, 0.0],
            "delta_ci_low": [0.0, -0.01],
            "delta_ci_high": [0.0, 0.01],
            "delta_bound": [0.0, -0.015],
            "reference": [True, False],
        }
    )
    big = recommend(frame, "ndcg@10", 100, n_vectors=1_000_000, corpus_size=3_000).text
    assert "32x less memory" in big and "float32 vectors stay on disk" in big
    assert "were 1.3% of the 3,000 chunks evaluated" in big
    # the cell's own interval and the (wider) simultaneous bound are told apart, so "[−0.010,
    # +0.010]" beside "at most 0.015 worse" reads as no contradiction
    assert "(this cell's 95% interval [-0.010, +0.010]), so at most 0.015 worse with" in big
    assert "a bound over every cell at once, so wider than this cell's own interval" in big
    small = recommend(frame, "ndcg@10", 100, n_vectors=1_000, corpus_size=3_000).text
    assert "Caution" not in small  # no "far smaller share" in a corpus smaller than evaluated


def test_with_too_few_questions_nothing_qualifies_and_it_says_so():
    rng = np.random.default_rng(1)
    ref = rng.random(12)
    cells = [cell("base", 384, "float32", ref), cell("base", 128, "int8", rng.random(12))]
    frame = frontier_frame(cells, ("base", 384), "ndcg@10", n_resamples=300, n_permutations=500)
    rec = recommend(frame, "ndcg@10", 12)
    assert not rec.qualified and rec.text.startswith("Keep base at 384d float32")
    assert "no smaller cell is shown to lose at most 0.020 ndcg@10" in rec.text


def test_display_and_memory_units():
    assert memory_text(1536 * 1_000_000) == "1.5 GB" and memory_text(48) == "48 B"
    frame = frontier_frame(
        [cell("base", 8, "float32", [0.5, 0.7]), cell("base", 8, "binary", [0.4, 0.7])],
        ("base", 8),
        "ndcg@10",
        n_resamples=100,
        n_permutations=10,
    )
    shown = frontier_display(frame, 1000, "ndcg@10")
    assert shown["Δ vs reference [CI]"].iloc[0] == "reference"
    assert shown["memory"].tolist() == ["32.0 kB", "1.0 kB"]


def test_rrf_equals_a_hand_computed_fusion():
    dense = np.array([[0.9, 0.8, 0.1, 0.0]])  # ranks: a1 b2 c3 d4
    lexical = np.array([[0.0, 5.0, 4.0, 1.0]])  # ranks: b1 c2 d3 a4
    ties = id_tie_ranks(["a", "b", "c", "d"])
    top, scores = rrf_search(dense, lexical, 4, ties)
    want = {  # 1/(60 + rank) summed over both lists
        0: 1 / (RRF_K + 1) + 1 / (RRF_K + 4),
        1: 1 / (RRF_K + 2) + 1 / (RRF_K + 1),
        2: 1 / (RRF_K + 3) + 1 / (RRF_K + 2),
        3: 1 / (RRF_K + 4) + 1 / (RRF_K + 3),
    }
    assert top[0].tolist() == sorted(want, key=lambda i: -want[i])
    assert scores[0].tolist() == pytest.approx(sorted(want.values(), reverse=True))


def test_the_weight_is_chosen_on_validation_and_weighted_fusion_interpolates():
    ties = id_tie_ranks(["a", "b", "c"])
    dense = np.array([[1.0, 0.0, 0.5]])
    lexical = np.array([[0.0, 1.0, 0.2]])
    assert weighted_search(dense, lexical, 1.0, 1, ties)[0][0, 0] == 0  # dense alone
    assert weighted_search(dense, lexical, 0.0, 1, ties)[0][0, 0] == 1  # BM25 alone
    # On these validation questions only BM25 finds the gold chunk (index 1): the weight goes to 0.
    weight, means = choose_weight(dense, lexical, [[1]], ties, "ndcg@10")
    assert weight == 0.0 and means[0.0] == 1.0 and means[1.0] < 1.0
    # A dense-only gold (index 0) moves it the other way.
    assert choose_weight(dense, lexical, [[0]], ties, "ndcg@10")[0] >= 0.5


def test_the_bound_counts_clusters_not_questions():
    """Questions in pairs that share a chunk: the bound uses the cluster-robust error and
    clusters - 1 degrees of freedom, so it is wider than the per-question one."""
    rng = np.random.default_rng(3)
    shared = np.repeat(rng.normal(0, 0.05, 30), 2)  # (60,) pairs move together
    ref = rng.random(60)
    cells = [cell("base", 384, "float32", ref), cell("base", 64, "int8", ref - 0.01 + shared)]
    plain = frontier_frame(cells, ("base", 384), "ndcg@10", n_resamples=200, n_permutations=200)
    clustered = frontier_frame(
        cells,
        ("base", 384),
        "ndcg@10",
        n_resamples=200,
        n_permutations=200,
        clusters=np.repeat(np.arange(30), 2),
    )
    diffs = cells[1].per_query["ndcg@10"] - ref
    totals = diffs.reshape(30, 2).sum(axis=1)
    se = np.sqrt(30 / 29 * np.sum((totals - diffs.mean() * 2) ** 2)) / 60
    # t at 0.05 one-sided, 29 degrees of freedom (t table: 1.699127)
    assert clustered.loc[1, "delta_bound"] == pytest.approx(diffs.mean() - 1.699127 * se, abs=1e-6)
    assert clustered.loc[1, "delta_bound"] < plain.loc[1, "delta_bound"]
