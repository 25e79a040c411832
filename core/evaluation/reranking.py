"""Retrieve, then rerank: a cross-encoder reorders a retriever's top N, as one more arm of the
evaluation.

How it works:
1. Every retriever arm the configuration names by kind (base, tuned, hybrid, BM25) is reranked
   at its largest evaluated dim: each question's top N (default 50) passages are scored with
   the question by the reranker (core.rerankers) and reordered, best score first, a tie keeping
   the retriever's order; the retriever's ranks N+1 to 100 follow unchanged, so every metric
   reads one list of 100 as for any other arm. A gold chunk outside the top N stays where the
   retriever put it: reranking cannot find what retrieval missed.
2. The reranked arm ("base + reranker") is scored with the same metrics, cluster bootstrap
   intervals and paired tests as every other arm: against the base at its dim in the
   evaluation's family (core.evaluation.scoring.deltas_frame), and against the retriever it
   reranks (`rerank_pairs`), adjusted in that same max-T family.
3. The latency of reranking N passages for one question (all pairs in one call, as a search
   service would) is measured on the evaluated questions and kept with the arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.evaluation.metrics import SEARCH_DEPTH
from core.evaluation.plan import RERANK_S_PER_PAIR, RERANK_STEP
from core.evaluation.scoring import DimScores, score_ranking
from core.formatting import fmt_ci
from core.progress import ProgressEvent
from core.rerankers import (
    PairScorer,
    RerankerSpec,
    measure_rerank_latency,
    pair_scorer,
    rerank_order,
    reranker_label,
)

if TYPE_CHECKING:
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.model_scoring import EvalInputs, Scored
    from core.progress import StepPlan

RERANKED_KIND = "reranked"
RERANKABLE_KINDS = ("base", "tuned", "hybrid", "bm25")


def retriever_arms(
    n_models: int, bm25: bool, hybrid: bool, kinds: Sequence[str] = RERANKABLE_KINDS
) -> int:
    """How many retriever arms one reranker reorders: the base and each tuned model, BM25, and
    each model's two hybrids, as far as `kinds` names them."""
    chosen = set(kinds)
    n = ("base" in chosen) + ("tuned" in chosen) * (n_models - 1)
    n += ("hybrid" in chosen) * 2 * n_models * bool(hybrid)
    return n + ("bm25" in chosen) * bool(bm25)


def planned_arms(config: RetrievalEvalConfig) -> int:
    """How many reranked arms an evaluation will score (for its step plan): each reranker over
    each retriever arm of the configured kinds."""
    if not config.rerankers:
        return 0
    arms = retriever_arms(
        len(config.models), config.include_bm25, config.hybrid, config.rerank_kinds
    )
    return arms * len(config.rerankers)


def arm_label(retriever: str, n_rerankers: int, index: int) -> str:
    """'base + reranker' (or 'base + reranker 2' when several rerankers are evaluated)."""
    return f"{retriever} + reranker" + (f" {index + 1}" if n_rerankers > 1 else "")


def rerank_ranking(
    top_idx: np.ndarray,
    questions: Sequence[str],
    texts: Sequence[str],
    score: PairScorer,
    top: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A retriever's rankings (n, depth) of corpus positions with each row's first `top`
    reordered by the reranker: (indices (n, depth), scores (n, depth)), the reranker's score
    for the reranked part, the row's lowest of them for the retriever's tail."""
    n, depth = top_idx.shape
    top = min(top, depth)
    pairs = [
        (q, texts[int(i)]) for q, row in zip(questions, top_idx, strict=True) for i in row[:top]
    ]
    values = score(pairs).reshape(n, top)  # (n, top)
    idx = top_idx.copy()
    out = np.zeros((n, depth), dtype=np.float64)
    for row in range(n):
        order = rerank_order(values[row])
        idx[row, :top] = top_idx[row, :top][order]
        out[row, :top] = values[row][order]
        out[row, top:] = values[row].min() if top else 0.0
    return idx, out


def _arms(scored: Scored, kinds: Sequence[str]) -> list[DimScores]:
    """The retriever arms to rerank: each named kind's arm at its largest evaluated dim."""
    chosen: dict[str, DimScores] = {}
    for s in scored.scores:
        if s.kind not in kinds:
            continue
        best = chosen.get(s.label)
        if best is None or (s.dim or 0) > (best.dim or 0):
            chosen[s.label] = s
    return list(chosen.values())


def score_reranked(inputs: EvalInputs, plan: StepPlan, scored: Scored, loader: Any = None) -> None:
    """Every configured reranker over every retriever arm of the kinds configured: one more
    scored arm each, with its model facts (reranker, top N, latency) in `scored.models`.
    `loader` turns a RerankerSpec into a CrossEncoder (default: core.rerankers.load_cross_encoder)."""
    from core.rerankers import load_cross_encoder

    config = inputs.config
    specs = list(config.rerankers)
    arms = _arms(scored, config.rerank_kinds)
    texts, questions = inputs.texts, inputs.questions
    top = min(config.rerank_top, len(texts), SEARCH_DEPTH)
    total, done = len(specs) * len(arms), 0
    plan.add(RERANK_STEP, total * len(questions) * top * RERANK_S_PER_PAIR)
    with plan.step(RERANK_STEP) as report:
        for n_spec, spec in enumerate(specs):
            model = (loader or (lambda s: load_cross_encoder(s, config.device)))(spec)
            score = pair_scorer(model, batch_size=config.batch_size)
            for arm in arms:
                label = arm_label(arm.label, len(specs), n_spec)
                report(ProgressEvent(RERANK_STEP, done, total, f"{label} ({done + 1}/{total})"))
                _score_arm(inputs, scored, arm, label, spec, score, top)
                done += 1
                plan.check_stop()


def _score_arm(
    inputs: EvalInputs,
    scored: Scored,
    arm: DimScores,
    label: str,
    spec: Any,
    score: PairScorer,
    top: int,
) -> None:
    """One retriever arm reranked: its scores and its model facts added to `scored`."""
    texts, questions = inputs.texts, inputs.questions
    idx, values = rerank_ranking(arm.top_idx, questions, texts, score, top)
    result = score_ranking(label, RERANKED_KIND, arm.dim, idx, values, inputs.gold)
    candidates = [[texts[int(i)] for i in row[:top]] for row in arm.top_idx]
    latency = measure_rerank_latency(score, questions, candidates)
    scored.scores.append(result)
    retriever = next(m for m in scored.models if m["label"] == arm.label)
    scored.models.append(
        {
            "source": RERANKED_KIND,  # not a model to load: a retriever and a reranker
            "ref": arm.label,
            "reranker_spec": RerankerSpec.from_dict(spec).to_dict(),
            "label": label,
            "kind": RERANKED_KIND,
            "retriever": arm.label,
            "retriever_kind": arm.kind,
            "reranker": reranker_label(spec),
            "rerank_top": top,
            "rerank_latency_ms": round(latency, 2),
            "native_dim": retriever.get("native_dim"),
            "dims": [arm.dim] if arm.dim is not None else [],
        }
    )


def rerank_pairs(models: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(reranked arm, the retriever it reranks) for every reranked arm: the paired tests of
    reranking itself, added to the evaluation's family."""
    return [(m["label"], m["retriever"]) for m in models if m.get("kind") == RERANKED_KIND]


def split_rerank_deltas(
    deltas: pd.DataFrame, base_label: str, models: Sequence[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every arm against the base, every reranked arm against its retriever) from one deltas
    table adjusted as one family: the first is the verdict's table as before; the second holds
    reranking's own tests (a reranked base is in both)."""
    wanted = set(rerank_pairs(models))
    pair = list(zip(deltas["model"], deltas["base_model"], strict=True)) if len(deltas) else []
    own = np.array([p in wanted for p in pair], dtype=bool)
    vs_base = (deltas["base_model"] == base_label).to_numpy(dtype=bool) if len(deltas) else own
    return (
        deltas[vs_base].reset_index(drop=True),
        deltas[own].reset_index(drop=True),
    )


def rerank_lines(
    rerank_deltas: pd.DataFrame | None, models: Sequence[dict[str, Any]], metric: str
) -> list[str]:
    """One sentence per reranked arm: its primary metric against the retriever alone, the
    verdict of that paired test (in the evaluation's family), and the cost per query."""
    if rerank_deltas is None or rerank_deltas.empty or "verdict" not in rerank_deltas:
        return []
    rows = rerank_deltas[rerank_deltas["metric"] == metric]
    by_label = {m.get("label"): m for m in models}
    out = []
    for _, row in rows.iterrows():
        info = by_label.get(row["model"], {})
        dim = "" if pd.isna(row["dim"]) else f" at {int(row['dim'])}d"
        out.append(
            f"Reranking the top {info.get('rerank_top', '?')} of {row['base_model']}{dim} with "
            f"{info.get('reranker', 'the reranker')}: {metric} {float(row['base_value']):.3f} → "
            f"{float(row['value']):.3f}, Δ {fmt_ci(row['delta'], row['ci_low'], row['ci_high'], True)}"
            f" ({row['verdict']}); {float(info.get('rerank_latency_ms') or 0):.0f} ms per "
            "question to rerank, measured here."
        )
    return out
