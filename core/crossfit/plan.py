"""Before fine-tuning: what a split evaluation and a K-fold cross-fit of a question set can
detect, and what the cross-fit will cost.

How it works:
1. Power. The smallest difference a paired test finds with 80% power is (t + t) times the
   standard error of the mean per-question difference, over clusters (core.evaluation.statistics).
   Before any tuned model exists that spread is unknown, so the plan states its assumption: the
   differences spread as widely as the base model's own per-question scores, measured by
   evaluating the base model on every accepted question (the embedding cache makes this cheap).
   From a finished evaluation the observed spread is used instead, scaled from its questions to
   every question. The split evaluation tests its test split's clusters; the cross-fit, all of
   them. Both are given at alpha / dims, the level a family of that many dims allows at worst.
2. Cost. K fine-tunes on (K-1)/K of the questions, less the validation share, in the recipe's
   epochs and batch size: the steps, and the time from the step rate the most recent finished
   fine-tune of the same base model and batch size measured on this machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.crossfit.config import CrossfitConfig
from core.evaluation.statistics import clustered_se, detectable_from_se
from core.formatting import questions_text
from core.questions.dataset import QAItem, load_qa
from core.questions.splits import question_clusters
from core.runs.folders import list_runs


@dataclass(frozen=True)
class PowerPlan:
    """What each protocol can detect on one question set."""

    metric: str
    n_questions: int
    n_clusters: int
    test_questions: int
    test_clusters: int
    folds: int
    level: float  # the test level the detectable deltas are computed at
    split_detectable: float
    crossfit_detectable: float
    basis: str  # the assumption or the run the spread comes from

    def text(self) -> str:
        """The plan in one paragraph (page and CLI)."""
        split = questions_text(self.test_questions, self.test_clusters)
        every = questions_text(self.n_questions, self.n_clusters)
        return (
            f"A split evaluation tests {split} and detects {self.metric} differences of "
            f"{self.split_detectable:.3f} or more (80% power, α={self.level:.3g}); a "
            f"{self.folds}-fold cross-fit tests all {every} and detects "
            f"{self.crossfit_detectable:.3f} or more. {self.basis} Typical fine-tuning gains are "
            "0.01 to 0.05: when neither reaches them, write more questions first."
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def _clusters(items: Sequence[QAItem]) -> np.ndarray:
    return np.asarray(question_clusters(items), dtype=np.int64)


def plan_from_scores(
    items: Sequence[QAItem],
    scores: np.ndarray,
    metric: str,
    folds: int,
    n_dims: int,
    basis: str,
    alpha: float = 0.05,
    scale: float = 1.0,
) -> PowerPlan:
    """The plan from per-question values `scores` (n,) whose spread stands for the spread of the
    differences (times `scale`)."""
    clusters = _clusters(items)
    test = np.array([i.split == "test" for i in items])
    level = alpha / max(1, n_dims)
    m_all = len(set(clusters.tolist()))
    m_test = len(set(clusters[test].tolist()))
    se_all = scale * clustered_se(scores, clusters)
    se_test = scale * clustered_se(scores[test], clusters[test]) if test.sum() > 1 else math.nan
    return PowerPlan(
        metric=metric,
        n_questions=len(items),
        n_clusters=m_all,
        test_questions=int(test.sum()),
        test_clusters=m_test,
        folds=folds,
        level=level,
        split_detectable=detectable_from_se(se_test, m_test, level),
        crossfit_detectable=detectable_from_se(se_all, m_all, level),
        basis=basis,
    )


def plan_power(
    config: CrossfitConfig, *, model_loader: Any = None, from_run: str | None = None
) -> PowerPlan:
    """The power plan of a cross-fit: from the base model's per-question spread (evaluated now,
    on every accepted question), or from a finished evaluation's observed differences."""
    items = load_qa(config.qa_run_id)
    metric = config.primary_metric
    n_dims = max(1, len(config.dims or config.recipe.matryoshka_dims) or 4)
    if from_run:
        return _plan_from_run(items, config, from_run, n_dims)
    scores = base_model_scores(config, items, model_loader)
    basis = (
        f"Assumption: the tuned-minus-base differences spread as widely as the base model's own "
        f"per-question {metric} (sd {float(np.std(scores, ddof=1)):.3f}, measured now on every "
        "question); the real spread is usually smaller, so this is cautious."
    )
    return plan_from_scores(items, scores, metric, config.folds, n_dims, basis)


def base_model_scores(
    config: CrossfitConfig, items: Sequence[QAItem], model_loader: Any = None
) -> np.ndarray:
    """The base model's per-question primary metric at its native dim on `items` (n,), against
    the full corpus; nothing is saved."""
    from core.crossfit.scoring import base_scores
    from core.deferred_model import deferred_loader
    from core.documents.corpus import load_chunks
    from core.embeddings import native_dim
    from core.evaluation.scoring import gold_indices
    from core.evaluation.search import id_tie_ranks
    from core.progress import ProgressTracker
    from core.questions.qa_runs import corpus_of

    corpus_id = corpus_of(config.qa_run_id)
    chunks = load_chunks(corpus_id)
    ids = [c.id for c in chunks]
    gold = gold_indices(items, {c: n for n, c in enumerate(ids)}, corpus_id)
    loader = model_loader or deferred_loader(config.recipe.device)
    model = loader(config.recipe.base_model)
    (scored,) = base_scores(
        model,
        "base",
        chunks,
        [i.question for i in items],
        gold,
        [native_dim(model)],
        id_tie_ranks(ids),
        ProgressTracker("power plan", None),
    )
    return scored.per_query[config.primary_metric]


def _plan_from_run(
    items: Sequence[QAItem], config: CrossfitConfig, run_id: str, n_dims: int
) -> PowerPlan:
    """The plan from a finished evaluation's observed standard error, rescaled by clusters."""
    from core.evaluation.results import load_retrieval_eval

    result = load_retrieval_eval(run_id)
    rows = result.deltas[result.deltas["metric"] == config.primary_metric]
    if rows.empty:
        from core.errors import InputError

        raise InputError(
            f"Evaluation {run_id} compares no tuned model on {config.primary_metric}.",
            fix="pick an evaluation with a tuned model, or plan from the base model",
        )
    top = rows.sort_values("dim", ascending=False).iloc[0]
    clusters = _clusters(items)
    m_all = len(set(clusters.tolist()))
    m_run = int(top.get("n_clusters") or top["n_queries"])
    se = float(top.get("se_diff") or top["sd_diff"] / math.sqrt(top["n_queries"]))
    test = [i for i in items if i.split == "test"]
    m_test = len(set(_clusters(test).tolist())) if test else 0
    level = 0.05 / n_dims
    return PowerPlan(
        metric=config.primary_metric,
        n_questions=len(items),
        n_clusters=m_all,
        test_questions=len(test),
        test_clusters=m_test,
        folds=config.folds,
        level=level,
        split_detectable=detectable_from_se(se * math.sqrt(m_run / max(1, m_test)), m_test, level),
        crossfit_detectable=detectable_from_se(se * math.sqrt(m_run / m_all), m_all, level),
        basis=(
            f"From evaluation {run_id}: its observed spread of the differences at "
            f"{int(top['dim'])}d over {m_run} clusters, scaled to these clusters."
        ),
    )


@dataclass(frozen=True)
class Cost:
    """K fine-tunes, in steps and (when a step rate is known) seconds."""

    folds: int
    pairs_per_fold: int
    steps: int
    steps_per_s: float | None
    seconds: float | None

    def text(self) -> str:
        time = (
            f", about {self.seconds / 60:.0f} min at the {self.steps_per_s:.2f} steps/s the last "
            "fine-tune of this model measured here"
            if self.seconds is not None
            else "; the time shows once the first fold has run (no fine-tune of this model and "
            "batch size has run here yet)"
        )
        return (
            f"{self.folds} fine-tunes of about {self.pairs_per_fold:,} pairs each: "
            f"{self.steps:,} steps in all{time}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def estimate_cost(config: CrossfitConfig) -> Cost:
    """The cross-fit's fine-tune steps, and its time from a measured step rate."""
    n = len(load_qa(config.qa_run_id))
    k = config.folds
    pairs = round(n * (k - 1) / k * (1 - config.validation_share))
    recipe = config.recipe
    per_fold = math.ceil(pairs / recipe.batch_size) * recipe.epochs
    runs = k + int(config.final_model)
    steps = per_fold * runs
    rate = measured_step_rate(config)
    return Cost(k, pairs, steps, rate, steps / rate if rate else None)


def measured_step_rate(config: CrossfitConfig) -> float | None:
    """Steps/s of the newest finished fine-tune of the same base model and batch size."""
    from core.runs.jobs import job_status

    want = (config.recipe.base_model.to_dict(), config.recipe.batch_size)
    for run in list_runs("model"):
        cfg = run.manifest.config
        if run.manifest.status != "done":
            continue
        if (cfg.get("base_model"), cfg.get("batch_size")) != want:
            continue
        rate = job_status(run).steps_per_s
        if rate:
            return float(rate)
    return None
