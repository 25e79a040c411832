"""The verdict: Holm families decide significance, the primary metric decides the headline, and
the power figures match an independent computation (scipy's normal distribution, a simulation
with the real sign-flip test, hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import nct
from scipy.stats import t as t_dist

from core.evaluation.cautions import copied_query_caution
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.metrics import metric_names
from core.evaluation.scoring import DimScores, deltas_frame
from core.evaluation.statistics import (
    detectable_delta,
    detectable_from_se,
    minimum_detectable_delta,
    queries_needed,
    sign_flip_pvalue,
)
from core.evaluation.verdict import (
    assign_families,
    deltas_display,
    headline_verdicts,
    power_text,
    row_sentence,
    verdict_text,
)
from core.formatting import signed

DIMS = (384, 256, 128, 64)


def scores(label: str, kind: str, dim: int, hits: np.ndarray) -> DimScores:
    """A model at one dim whose every per-query metric is the hit vector (enough for the tests)."""
    n = len(hits)
    return DimScores(
        label=label,
        kind=kind,
        dim=dim,
        top_idx=np.zeros((n, 1), dtype=np.int64),
        top_scores=np.zeros((n, 1), dtype=np.float32),
        per_query={m: hits.astype(float) for m in metric_names()},
        gold_rank=np.zeros(n, dtype=np.int64),
    )


def test_the_family_adjustment_not_the_raw_p_decides_the_stage_verdict():
    """At each of 4 dims the tuned model gains 6 of 40 queries and loses none, a different six
    at each dim: McNemar's raw p = 2 * 0.5**6 = 0.03125 < 0.05 at every dim, but the dims are
    nearly independent, so the family's max-T adjustment (about 1 - (1 - 0.031)^4 = 0.12) says
    none is shown."""
    base = np.zeros(40)
    scored = [scores("base", "base", d, base) for d in DIMS]
    for k, d in enumerate(DIMS):
        tuned = base.copy()
        tuned[6 * k : 6 * k + 6] = 1
        scored.append(scores("tuned", "tuned", d, tuned))
    deltas = deltas_frame(scored, "base", RetrievalEvalConfig(qa_run_id="x", n_resamples=500))
    hit = deltas[deltas["metric"] == "hit_rate@5"]
    assert hit["p_value"].tolist() == pytest.approx([2 * 0.5**6] * 4)
    assert (hit["ci_low"] > 0).all()  # the interval alone would call it real
    assert hit["p_adj"].between(0.09, 0.16).all()
    assert not deltas["significant"].any()
    assert set(hit["adjustment"]) == {"max-T"}
    ndcg = deltas[deltas["metric"] == "ndcg@10"]
    assert set(ndcg["family"]) == {"primary"} and set(ndcg["family_size"]) == {4}
    assert set(hit["family"]) == {"exploratory"}


def test_maxt_keeps_the_power_holm_throws_away_on_correlated_dims():
    """The same six gains at every dim (Matryoshka dims are strongly correlated): Holm would
    multiply the p-value by 4 (0.125, not significant); max-T sees one effect and keeps 0.031."""
    base = np.array([0] * 6 + [1] * 10 + [0] * 4)
    tuned = np.array([1] * 6 + [1] * 10 + [0] * 4)
    scored = [scores("base", "base", d, base) for d in DIMS]
    scored += [scores("tuned", "tuned", d, tuned) for d in DIMS]
    deltas = deltas_frame(scored, "base", RetrievalEvalConfig(qa_run_id="x", n_resamples=500))
    ndcg = deltas[deltas["metric"] == "ndcg@10"]
    assert ndcg["p_adj"].tolist() == pytest.approx([2 * 0.5**6] * 4, abs=0.006)
    assert ndcg["significant"].all()
    holm = assign_families(ndcg.drop(columns=["p_adj"]))
    assert holm["p_adj"].tolist() == pytest.approx(
        [min(1.0, 4 * p) for p in ndcg["p_value"]], abs=1e-12
    )
    assert not holm["significant"].any()


def test_one_family_spans_every_model_of_an_evaluation():
    """Two tuned models and a hybrid at two dims: one primary family of 6 tests, not three
    families of 2 (three headline claims with no correction across them)."""
    rng = np.random.default_rng(0)
    base = rng.random(30)
    scored = [scores("base", "base", d, base) for d in DIMS[:2]]
    for label, kind in (("a", "tuned"), ("b", "tuned"), ("a + BM25 (RRF)", "hybrid")):
        scored += [scores(label, kind, d, base + rng.normal(0, 0.1, 30)) for d in DIMS[:2]]
    deltas = deltas_frame(scored, "base", RetrievalEvalConfig(qa_run_id="x", n_resamples=200))
    ndcg = deltas[deltas["metric"] == "ndcg@10"]
    assert set(ndcg["family_size"]) == {6} and len(ndcg) == 6
    assert (ndcg["p_adj"] >= ndcg["p_value"]).all()
    (text, *_) = [h.text for h in headline_verdicts(deltas)]
    assert "one family of 6 tests, every model and dim of this evaluation" in text


def frame(p_values, deltas=None, lows=None, highs=None, metric="ndcg@10", sd=0.2, n=100):
    k = len(p_values)
    deltas = deltas or [0.05] * k
    return pd.DataFrame(
        {
            "model": "tuned",
            "base_model": "base",
            "dim": list(DIMS[:k]),
            "metric": metric,
            "base_value": 0.6,
            "value": [0.6 + d for d in deltas],
            "delta": deltas,
            "ci_low": lows or [0.01] * k,
            "ci_high": highs or [0.09] * k,
            "p_value": p_values,
            "test": "sign-flip",
            "n_queries": n,
            "sd_diff": sd,
            "warning": "",
        }
    )


def test_holm_matches_a_hand_computed_family():
    # sorted raw p 0.01, 0.03, 0.04, 0.20 -> 4*0.01, 3*0.03, max(2*0.04, .), 1*0.20 (monotone)
    out = assign_families(frame([0.03, 0.01, 0.20, 0.04]))
    assert out["p_adj"].tolist() == pytest.approx([0.09, 0.04, 0.20, 0.09])
    assert set(out["adjustment"]) == {"Holm"}
    assert out["significant"].tolist() == [False, True, False, False]
    assert out["direction"].tolist() == [
        "no difference",
        "better",
        "no difference",
        "no difference",
    ]


def test_an_interval_that_crosses_zero_is_never_significant():
    out = assign_families(frame([0.001], lows=[-0.01], highs=[0.08]))
    assert not out["significant"].iloc[0]


def test_a_worse_model_is_called_worse():
    out = assign_families(frame([0.001], deltas=[-0.05], lows=[-0.09], highs=[-0.01]))
    assert out["direction"].iloc[0] == "worse"
    headline = headline_verdicts(out)[0]
    assert headline.worse == [384] and "significantly worse than base at 384d" in headline.text


def test_families_are_per_metric_and_the_primary_is_selectable():
    both = pd.concat(
        [frame([0.01, 0.02], metric="ndcg@10"), frame([0.01, 0.02, 0.03], metric="mrr@10")]
    )
    out = assign_families(both, primary_metric="mrr@10")
    assert out.groupby("metric")["family_size"].first().to_dict() == {"mrr@10": 3, "ndcg@10": 2}
    assert out.groupby("metric")["family"].first().to_dict() == {
        "mrr@10": "primary",
        "ndcg@10": "exploratory",
    }
    assert [h.metric for h in headline_verdicts(out)] == ["mrr@10"]


def test_headline_says_where_it_is_better_and_why_the_rest_cannot_decide():
    out = assign_families(frame([0.001, 0.2, 0.4], deltas=[0.08, 0.02, 0.01], sd=0.3, n=40))
    (headline,) = headline_verdicts(out)
    assert headline.better == [384] and headline.worse == []
    assert headline.text.startswith("tuned is significantly better than base at 384d (Δ +0.080")
    assert "not significant at 256d, 128d" in headline.text
    assert "primary metric, Holm-adjusted over 3 dims" in headline.text
    mde = detectable_delta(0.3, 40, 0.05 / 3)
    assert f"detects only differences of {mde:.3f} or more (80% power)" in headline.text
    needed = [queries_needed(0.3, d, 0.05 / 3) for d in (0.02, 0.01)]
    assert f"about {min(needed):,.0f} to {max(needed):,.0f} questions" in headline.text


def test_no_difference_headline():
    (headline,) = headline_verdicts(assign_families(frame([0.5, 0.6], lows=[-0.02] * 2)))
    assert not headline.decided
    assert headline.text.startswith("No significant difference between tuned and base at any of")


def test_detectable_delta_has_80_percent_power_by_scipy():
    """The power of a two-sided t-test at delta = the detectable delta, from scipy's noncentral
    t (an independent computation), is 80% (the t-quantile sum is a close approximation)."""
    sd, n, alpha = 0.25, 22, 0.05 / 4
    mde = detectable_delta(sd, n, alpha)
    ncp = mde / (sd / math.sqrt(n))
    crit = t_dist.ppf(1 - alpha / 2, n - 1)
    power = nct.sf(crit, n - 1, ncp) + nct.cdf(-crit, n - 1, ncp)
    assert power == pytest.approx(0.8, abs=0.01)
    # hand-computed: (t_0.975,99 = 1.984217 + t_0.8,99 = 0.845267) * 1 / 10 at sd 1, n 100
    assert detectable_delta(1.0, 100) == pytest.approx(0.2829484, abs=1e-6)
    # at many queries it tends to the normal (1.959964 + 0.841621) * sd / sqrt(n)
    assert detectable_delta(1.0, 10**6) == pytest.approx(2.801585 / 1000, rel=1e-4)


def test_queries_needed_is_the_inverse_of_the_detectable_delta():
    sd, delta, alpha = 0.3, 0.04, 0.05
    n = queries_needed(sd, delta, alpha)
    assert detectable_delta(sd, int(n), alpha) <= delta < detectable_delta(sd, int(n) - 1, alpha)
    assert math.isnan(queries_needed(sd, 0.0)) and math.isnan(detectable_delta(0.0, 30))


def test_detectable_delta_matches_the_real_sign_flip_test_by_simulation():
    """Differences drawn with mean = the detectable delta are found about 80% of the time by the
    permutation test the verdict uses (the normal approximation is close at n = 40)."""
    rng = np.random.default_rng(3)
    n, sd = 40, 1.0
    mde = detectable_delta(sd, n)
    sims = rng.normal(mde, sd, size=(n, 400))  # (n, 400) experiments
    p = sign_flip_pvalue(sims, n_permutations=2000, seed=1)
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.07)
    assert minimum_detectable_delta(sims[:, 0]) == pytest.approx(
        detectable_delta(float(np.std(sims[:, 0], ddof=1)), n)
    )


def test_power_text_and_sentence_for_a_delta_that_cannot_be_decided():
    row = assign_families(frame([0.4], deltas=[0.01], lows=[-0.05], sd=0.2, n=22)).iloc[0]
    text = power_text(row)
    assert text.startswith(
        f"22 questions detect |Δ| ≥ {detectable_delta(0.2, 22):.3f} with 80% power"
    )
    assert f"about {queries_needed(0.2, 0.01):,.0f} would be needed to detect Δ +0.010" in text
    sentence = row_sentence(row)
    assert "not significant (Holm p=0.400)." in sentence and "22 questions detect" in sentence
    significant = assign_families(frame([0.001])).iloc[0]
    assert power_text(significant) == ""


def test_display_table_lists_the_primary_family_first_with_power():
    both = pd.concat([frame([0.5], metric="mrr@10"), frame([0.5], metric="ndcg@10")])
    shown = deltas_display(assign_families(both))
    assert shown["metric"].tolist() == ["ndcg@10", "mrr@10"]
    assert shown["family"].tolist() == ["primary", "exploratory"]
    assert shown["detectable Δ (80% power)"].iloc[0] == f"{detectable_delta(0.2, 100):.3f}"
    assert shown["verdict"].iloc[0] == verdict_text(False, 0.5)


def test_tiny_deltas_never_read_as_zero():
    assert signed(0.00031) == "+0.00031" and signed(0.052) == "+0.052" and signed(0) == "+0.000"


def test_a_verdict_on_copied_queries_carries_the_caution():
    """Headings and cloze sentences copy their passage's words: on main an evaluation on them
    reported a hybrid 'significantly better … Δ +0.368' with no word of it."""
    caution = copied_query_caution({"heading": 30, "cloze": 60, "human": 10})
    assert caution.startswith("Caution: 90 of the 100 questions are headings or sentences copied")
    assert "favour lexical retrieval (BM25, hybrids)" in caution
    assert "human-written or LLM questions" in caution
    assert copied_query_caution({"human": 20, "llm": 5}) == ""
    out = assign_families(frame([0.001]))
    (headline,) = headline_verdicts(out, caution=caution)
    assert headline.text.endswith(caution)
    (plain,) = headline_verdicts(out)
    assert "Caution" not in plain.text


def test_the_headline_counts_questions_and_clusters():
    rows = frame([0.4, 0.5], deltas=[0.01, 0.0], lows=[-0.05] * 2, n=30)
    rows["n_clusters"] = 12
    rows["se_diff"] = 0.05
    (headline,) = headline_verdicts(assign_families(rows))
    assert "With 30 questions in 12 clusters the test detects only" in headline.text
    assert headline.n_clusters == 12
    mde = detectable_from_se(0.05, 12, 0.05 / 2)
    assert f"differences of {mde:.3f} or more" in headline.text
