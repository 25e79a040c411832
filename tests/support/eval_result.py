"""A retrieval-eval result built by hand, small enough to read: a base and a tuned model at two
dims, BM25, and two hybrids of the tuned model (RRF and a weighted sum whose validation weight is
0.0, i.e. BM25 alone), with the verdict's columns and a what-to-ship frontier."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.evaluation.frontier import Cell, frontier_frame
from core.evaluation.metrics import metric_names
from core.evaluation.results import RetrievalEvalResult
from core.evaluation.verdict import MAXT, assign_families

N = 40
METRIC = "ndcg@10"
# model label -> (kind, {dim: mean ndcg@10}); BM25 has no dim
SCORES = {
    "base": ("base", {384: 0.795, 256: 0.780}),
    "tuned": ("tuned", {384: 0.789, 256: 0.770}),
    "BM25": ("bm25", {None: 0.928}),
    "tuned + BM25 (RRF)": ("hybrid", {384: 0.900}),
    "tuned + BM25 (weighted)": ("hybrid", {384: 0.928}),
}
MODELS = [
    {"label": "base", "kind": "base", "source": "default", "ref": "", "dims": [384, 256]},
    {"label": "tuned", "kind": "tuned", "source": "run", "ref": "model-x", "dims": [384, 256]},
    {"label": "BM25", "kind": "bm25", "source": "bm25", "ref": "", "dims": []},
    {
        "label": "tuned + BM25 (RRF)",
        "kind": "hybrid",
        "source": "hybrid",
        "ref": "tuned",
        "fusion": "rrf",
        "rrf_k": 60,
        "dims": [384],
    },
    {
        "label": "tuned + BM25 (weighted)",
        "kind": "hybrid",
        "source": "hybrid",
        "ref": "tuned",
        "fusion": "weighted",
        "weight": 0.0,
        "weight_note": "chosen on 6 validation questions",
        "dims": [384],
    },
]


def _metrics() -> pd.DataFrame:
    rows = []
    for model, (kind, by_dim) in SCORES.items():
        for dim, value in by_dim.items():
            for name in metric_names():
                rows.append(
                    {
                        "model": model,
                        "kind": kind,
                        "dim": dim,
                        "metric": name,
                        "value": value,
                        "ci_low": value - 0.05,
                        "ci_high": min(1.0, value + 0.05),
                        "n_queries": N,
                        "n_clusters": N,
                        "corpus_size": 248,
                        "random_baseline": 0.02,
                    }
                )
    frame = pd.DataFrame(rows)
    frame["dim"] = frame["dim"].astype("Int64")
    return frame


def _deltas() -> pd.DataFrame:
    """Hybrids significantly better than the base, the tuned model not different."""
    rows = []
    for model, (kind, by_dim) in SCORES.items():
        if kind not in ("tuned", "hybrid"):
            continue
        for dim, value in by_dim.items():
            base = SCORES["base"][1][dim]
            delta = value - base
            better = kind == "hybrid"
            rows.append(
                {
                    "model": model,
                    "base_model": "base",
                    "dim": dim,
                    "metric": METRIC,
                    "k": 10,
                    "base_value": base,
                    "value": value,
                    "delta": delta,
                    "ci_low": delta - 0.03 if better else delta - 0.05,
                    "ci_high": delta + 0.03 if better else delta + 0.05,
                    "p_value": 0.001 if better else 0.6,
                    "p_adj": 0.004 if better else 0.9,
                    "adjustment": MAXT,
                    "alpha_level": 0.0125,
                    "test": "sign-flip",
                    "n_queries": N,
                    "n_clusters": N,
                    "sd_diff": 0.2,
                    "se_diff": 0.2 / np.sqrt(N),
                    "warning": "",
                }
            )
    rows.reverse()  # as a stage may write them: hybrids before the tuned model
    frame = assign_families(pd.DataFrame(rows), METRIC, 0.05)
    frame["dim"] = frame["dim"].astype("Int64")
    return frame


def _frontier(n_questions: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(0)

    def per_query(mean: float) -> dict[str, np.ndarray]:
        values = np.clip(rng.normal(mean, 0.1, n_questions), 0, 1)
        return {m: values for m in metric_names()}

    cells = [
        Cell(model, kind, dim, precision, False, per_query(SCORES[model][1][dim]))
        for model, kind in (("base", "base"), ("tuned", "tuned"))
        for dim in (384, 256)
        for precision in ("float32", "int8")
    ]
    return frontier_frame(cells, ("base", 384), METRIC, n_resamples=200, n_permutations=500, seed=0)


def hand_made_result(n_questions: int = N) -> RetrievalEvalResult:
    """The result described above (frontier cells scored on `n_questions` questions)."""
    return RetrievalEvalResult(
        run_id="retrieval_eval-hand",
        qa_run_id="qa-hand",
        corpus_run_id="corpus-hand",
        split="test",
        corpus_size=248,
        n_queries=N,
        base_label="base",
        models=MODELS,
        metrics=_metrics(),
        deltas=_deltas(),
        tradeoff=pd.DataFrame(),
        per_query=pd.DataFrame(),
        flips={},
        config={"primary_metric": METRIC},
        frontier=_frontier(n_questions),
        n_clusters=N,
    )
