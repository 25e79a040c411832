"""The cross-fitted evaluation as a retrieval_eval run: every question, its fold model against the
base, through the split evaluation's statistics (core.evaluation.scoring) and files
(core.evaluation.results), so every page, the CLI and the report read it as they read any."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.crossfit.config import CrossfitConfig
from core.crossfit.intervals import fold_interval
from core.crossfit.scoring import (
    RECIPE_SUFFIX,
    base_scores,
    bm25_rankings,
    evaluated_dims,
    fold_spread,
    recipe_label,
    recipe_scores,
    score_folds,
)
from core.documents.corpus import Chunk, load_chunks
from core.embeddings import document_prompt, query_prompt
from core.evaluation.config import BM25_LABEL, RetrievalEvalConfig
from core.evaluation.flips import collect_flips
from core.evaluation.metrics import KS
from core.evaluation.models import model_labels
from core.evaluation.random_ranker import random_ranker_expected
from core.evaluation.results import RetrievalEvalResult, save_retrieval_eval
from core.evaluation.scoring import (
    DimScores,
    deltas_frame,
    gold_counts,
    gold_indices,
    metrics_frame,
    native_ndcg,
    per_query_frame,
    tradeoff_frame,
)
from core.evaluation.search import id_tie_ranks
from core.evaluation.verdict import alpha_of, assign_families
from core.progress import ProgressTracker
from core.questions.dataset import QAItem
from core.questions.qa_runs import corpus_of
from core.questions.splits import question_clusters
from core.runs.folders import Run, create_run

if TYPE_CHECKING:
    from core.evaluation.models import ModelLoader


def eval_config(config: CrossfitConfig) -> RetrievalEvalConfig:
    """The evaluation settings of a cross-fit: every question, the recipe's base model."""
    return RetrievalEvalConfig(
        qa_run_id=config.qa_run_id,
        models=(config.recipe.base_model,),
        dims=config.dims or config.recipe.matryoshka_dims,
        split=None,
        include_bm25=config.include_bm25,
        hybrid=config.hybrid,
        frontier=False,
        n_resamples=config.n_resamples,
        n_permutations=config.n_permutations,
        confidence=config.confidence,
        primary_metric=config.primary_metric,
        chroma_check=False,
        similarity_csv=None,
        device=config.recipe.device,
        name=config.name,
    )


@dataclass(frozen=True)
class _Inputs:
    """What the cross-fitted evaluation works on, resolved once."""

    config: CrossfitConfig
    ev: RetrievalEvalConfig
    items: list[QAItem]
    folds: list[int]
    corpus_id: str
    chunks: list[Chunk]
    gold: list[list[int]]
    tie_ranks: np.ndarray
    clusters: np.ndarray
    base_label: str
    label: str


def _inputs(run: Run, state: dict[str, Any]) -> _Inputs:
    from core.questions.dataset import load_qa

    config = CrossfitConfig.from_dict(run.manifest.config)
    ev = eval_config(config)
    items = load_qa(config.qa_run_id)
    corpus_id = corpus_of(config.qa_run_id)
    chunks = load_chunks(corpus_id)
    ids = [c.id for c in chunks]
    base_label = model_labels(ev.models, [None])[0]
    return _Inputs(
        config=config,
        ev=ev,
        items=items,
        folds=[int(state["folds"][i.id]) for i in items],
        corpus_id=corpus_id,
        chunks=chunks,
        gold=gold_indices(items, {c: n for n, c in enumerate(ids)}, corpus_id),
        tie_ranks=id_tie_ranks(ids),
        clusters=np.asarray(question_clusters(items), dtype=np.int64),
        base_label=base_label,
        label=recipe_label(base_label, config.folds),
    )


def _score(
    inputs: _Inputs, state: dict[str, Any], loader: ModelLoader, tracker: ProgressTracker
) -> tuple[list[DimScores], list[DimScores], list[DimScores], Any, list[int]]:
    """Every ranking: all scored, the base's, the recipe's, the base model and the dims."""
    config, questions = inputs.config, [i.question for i in inputs.items]
    tracker.report("scoring every question with its fold's model")
    base_model = loader(inputs.ev.models[0])
    dims = evaluated_dims(base_model, inputs.ev.dims)
    bm25, bm25_scored = (
        bm25_rankings(inputs.chunks, questions, inputs.gold, inputs.tie_ranks)
        if config.include_bm25 or config.hybrid
        else (None, None)
    )
    fused = bm25 if config.hybrid else None
    common = (inputs.chunks, questions, inputs.gold)
    base = base_scores(
        base_model, inputs.base_label, *common, dims, inputs.tie_ranks, tracker, fused
    )
    assembled = score_folds(
        *common, inputs.folds, state["models"], loader, dims, inputs.tie_ranks, tracker, fused
    )
    recipe = recipe_scores(assembled, inputs.label, inputs.gold, dims)
    extra = [bm25_scored] if config.include_bm25 and bm25_scored is not None else []
    return [*base, *recipe, *extra], base, recipe, base_model, dims


def evaluate_crossfit(
    run: Run, state: dict[str, Any], loader: ModelLoader, tracker: ProgressTracker
) -> RetrievalEvalResult:
    """Score every question with its fold's model and the base; save the retrieval_eval run."""
    inputs = _inputs(run, state)
    config, ev, label = inputs.config, inputs.ev, inputs.label
    scored, base, recipe, base_model, dims = _score(inputs, state, loader, tracker)
    tracker.report("statistics")
    tracker.check_stop()
    eval_run = create_run(
        "retrieval_eval",
        name=config.name or f"{label} vs {inputs.base_label} on every question",
        config={**ev.to_dict(), "crossfit": {"run": run.id, "folds": config.folds}},
        parents={
            "qa": config.qa_run_id,
            "crossfit": run.id,
            **{("model" if k == 0 else f"model_{k + 1}"): m for k, m in enumerate(state["models"])},
        },
    )
    models = _models_info(inputs, base_model, dims, scored, state)
    result = _result(inputs, eval_run, scored, models, state, base, recipe)
    save_retrieval_eval(eval_run, result)
    eval_run.set_status(
        "done",
        corpus_size=len(inputs.chunks),
        n_queries=len(inputs.items),
        n_clusters=result.n_clusters,
        split="all (cross-fitted)",
        ndcg_at_10=native_ndcg(scored, {m["label"]: m["native_dim"] for m in models}),
    )
    _card_for_final(state, result, label)
    tracker.report("done")
    return result


def _result(
    inputs: _Inputs,
    eval_run: Run,
    scored: list[DimScores],
    models: list[dict[str, Any]],
    state: dict[str, Any],
    base: list[DimScores],
    recipe: list[DimScores],
) -> RetrievalEvalResult:
    """The evaluation's tables, as a split evaluation holds them, with the fold spread."""
    config, ev, chunks, n = inputs.config, inputs.ev, inputs.chunks, len(inputs.items)
    per_query = per_query_frame(scored, inputs.items, chunks, inputs.clusters)
    baseline = random_ranker_expected(len(chunks), [len(g) for g in inputs.gold], KS)
    deltas = deltas_frame(scored, inputs.base_label, ev, inputs.clusters)
    compared = [inputs.base_label, *(m["label"] for m in models if m["kind"] != "base")]
    return RetrievalEvalResult(
        run_id=eval_run.id,
        qa_run_id=config.qa_run_id,
        corpus_run_id=inputs.corpus_id,
        split=None,
        corpus_size=len(chunks),
        n_queries=n,
        base_label=inputs.base_label,
        models=models,
        metrics=metrics_frame(scored, ev, baseline, len(chunks), n, inputs.clusters),
        deltas=fold_aware_deltas(
            deltas, scored, inputs.base_label, inputs.folds, inputs.clusters, ev
        ),
        tradeoff=tradeoff_frame(scored),
        per_query=per_query,
        flips=collect_flips(
            per_query,
            [c for c in compared if c != BM25_LABEL],
            {m["label"]: list(m["dims"]) for m in models},
            {c.id: c.text for c in chunks},
            ev.flip_k,
        ),
        random_baseline=baseline,
        config=eval_run.manifest.config,
        gold_counts=gold_counts(inputs.gold),
        n_clusters=len(set(inputs.clusters.tolist())),
        query_sources=dict(Counter(i.source for i in inputs.items)),
        crossfit={
            "run": state.get("run") or eval_run.manifest.parents.get("crossfit"),
            "folds": config.folds,
            "label": inputs.label,
            "models": list(state["models"]),
            "final_model": state.get("final_model"),
            "spread": fold_spread(base, recipe, inputs.folds, config.primary_metric).to_dict(
                "records"
            ),
        },
    )


def fold_aware_deltas(
    deltas: pd.DataFrame,
    scored: list[DimScores],
    base_label: str,
    folds: list[int],
    clusters: np.ndarray,
    ev: RetrievalEvalConfig,
) -> pd.DataFrame:
    """The recipe's rows (and its hybrids') with an interval that also allows for how much the
    fold models differ (core.crossfit.intervals.fold_interval): the wider of that and the cluster
    bootstrap's, its standard error when larger (with K - 1 degrees of freedom), and the verdict
    decided again. BM25 and the base's hybrids are one model each: their rows stay."""
    if deltas.empty:
        return deltas
    frame = deltas.copy()
    frame["df"] = np.nan
    frame["interval"] = "cluster bootstrap"
    base = {s.dim: s for s in scored if s.label == base_label}
    by_key = {(s.label, s.dim): s for s in scored}
    for n, row in frame.iterrows():
        s = by_key.get((row["model"], row["dim"]))
        if s is None or not _from_folds(s):
            continue
        diffs = s.per_query[row["metric"]] - base[s.dim].per_query[row["metric"]]
        fold = fold_interval(diffs, folds, clusters, ev.confidence)
        frame.loc[n, "ci_low"] = min(float(row["ci_low"]), fold.low)
        frame.loc[n, "ci_high"] = max(float(row["ci_high"]), fold.high)
        frame.loc[n, "interval"] = f"cluster bootstrap and fold-level (τ² {fold.tau2:.2g})"
        if fold.se > float(row["se_diff"]):
            frame.loc[n, "se_diff"] = fold.se
            frame.loc[n, "df"] = fold.df
    decided = assign_families(
        frame.drop(columns=["significant", "direction", "mde", "n_needed", "verdict"]),
        ev.primary_metric,
        alpha_of(ev.confidence),
    )
    decided["dim"] = decided["dim"].astype("Int64")
    return decided


def _from_folds(scores: DimScores) -> bool:
    """Whether these rankings came from the fold models (the recipe, or the recipe + BM25)."""
    return scores.kind == "tuned" or (scores.kind == "hybrid" and RECIPE_SUFFIX in scores.label)


def _models_info(
    inputs: _Inputs,
    base_model: Any,
    dims: list[int],
    scored: list[DimScores],
    state: dict[str, Any],
) -> list[dict[str, Any]]:
    """What result.json says of each compared model (as the split evaluation records it)."""
    from core.embeddings import native_dim

    ev, config, label = inputs.ev, inputs.config, inputs.label
    native = native_dim(base_model)
    base = {
        **ev.models[0].to_dict(),
        "label": inputs.base_label,
        "kind": "base",
        "native_dim": native,
        "dims": dims,
        "query_prompt": query_prompt(base_model),
        "document_prompt": document_prompt(base_model),
    }
    recipe = {
        "source": "crossfit",
        "ref": ",".join(state["models"]),
        "label": label,
        "kind": "tuned",
        "run_status": "done",
        "native_dim": native,
        "dims": dims,
        "folds": config.folds,
    }
    out = [base, recipe]
    for s in scored:
        if s.kind == "hybrid" and s.label not in {m["label"] for m in out}:
            out.append(
                {
                    "source": "hybrid",
                    "ref": s.label.split(" + BM25")[0],
                    "label": s.label,
                    "kind": "hybrid",
                    "native_dim": s.dim,
                    "dims": [s.dim],
                    "fusion": "rrf",
                    "rrf_k": 60,
                }
            )
        if s.kind == "bm25":
            out.append(
                {"source": "bm25", "ref": "", "label": s.label, "kind": "bm25", "native_dim": None}
                | {"dims": []}
            )
    return out


def _card_for_final(state: dict[str, Any], result: RetrievalEvalResult, label: str) -> None:
    """The model to ship's card gets the cross-fitted verdict of its recipe."""
    import logging

    from core.errors import RunError
    from core.evaluation.card import write_eval_result
    from core.runs.folders import load_run

    final = state.get("final_model")
    if not final:
        return
    try:
        write_eval_result(load_run(final), result, label)
    except (OSError, RunError) as exc:
        logging.getLogger(__name__).warning("model card of %s not updated: %s", final, exc)
