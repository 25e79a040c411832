"""Every question scored by the fold model that never saw it, and the verdict over all of them.

How it works:
1. The base model encodes the corpus and every accepted question once (the embedding cache
   makes a repeat free); each fold model encodes the corpus and only its own fold's questions.
   Every dim is a truncation of those vectors, searched exactly against the full corpus, as in
   the split evaluation (core.evaluation.scoring).
2. The fold models' rankings are put together, question by question, into one ranking per dim
   for the *recipe*: each question ranked by the one model whose training never touched its
   chunks or its text. BM25 (and the recipe fused with BM25 by rank, per fold) may join.
3. The comparison with the base is the split evaluation's: cluster bootstrap, cluster
   sign-flip, one max-T family over every model and dim, detectable delta, flips; it runs over
   all questions. What it judges is the recipe (the expected gain of fine-tuning this way on this
   data), estimated from K models, so the spread of the gain across folds is shown beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.documents.corpus import Chunk
from core.embeddings import ModelSpec, native_dim, truncate_normalize
from core.evaluation.config import BM25_LABEL, dims_for
from core.evaluation.hybrid import rrf_search
from core.evaluation.metrics import SEARCH_DEPTH
from core.evaluation.scoring import DimScores, encode_corpus_and_queries, score_ranking
from core.evaluation.search import bm25_index, bm25_scores, search_exact
from core.progress import ProgressTracker

RECIPE_SUFFIX = "-fold cross-fit"


def recipe_label(base_label: str, folds: int) -> str:
    """'tuned recipe (5-fold cross-fit)': what the cross-fitted rankings stand for."""
    return f"tuned recipe ({folds}{RECIPE_SUFFIX})"


@dataclass
class Encoded:
    """One model's native vectors: the corpus (N, d) and some questions (q, d)."""

    corpus: np.ndarray
    queries: np.ndarray


def _encode(
    model: Any, texts: Sequence[str], questions: Sequence[str], label: str, tracker: ProgressTracker
) -> Encoded:
    corpus, queries = encode_corpus_and_queries(
        model,
        texts,
        questions,
        label=label,
        on_progress=tracker.on_progress,
        should_stop=tracker.should_stop,
    )
    return Encoded(corpus, queries)


def _search(encoded: Encoded, dim: int, tie_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-SEARCH_DEPTH at one dim: (q, depth) indices and scores."""
    corpus = truncate_normalize(encoded.corpus, dim)  # (N, dim)
    queries = truncate_normalize(encoded.queries, dim)  # (q, dim)
    return search_exact(queries, corpus, SEARCH_DEPTH, tie_ranks)


@dataclass
class Assembled:
    """Rankings put together from the folds, per dim: (n, depth) indices and scores."""

    top_idx: dict[int, np.ndarray]
    top_scores: dict[int, np.ndarray]
    fused_idx: dict[int, np.ndarray]
    fused_scores: dict[int, np.ndarray]


def score_folds(
    chunks: Sequence[Chunk],
    questions: Sequence[str],
    gold: Sequence[Sequence[int]],
    folds: Sequence[int],
    fold_models: Sequence[str],
    loader: Callable[[ModelSpec], Any],
    dims: Sequence[int],
    tie_ranks: np.ndarray,
    tracker: ProgressTracker,
    bm25: np.ndarray | None = None,
) -> Assembled:
    """Each question ranked by its own fold's model (the model trained without it), per dim; with
    `bm25` (n, N) scores, also fused with BM25 by rank."""
    n, texts = len(questions), [c.text for c in chunks]
    depth = min(SEARCH_DEPTH, len(chunks))
    out = Assembled({}, {}, {}, {})
    for d in dims:
        out.top_idx[d] = np.zeros((n, depth), dtype=np.int64)
        out.top_scores[d] = np.zeros((n, depth))
        out.fused_idx[d] = np.zeros((n, depth), dtype=np.int64)
        out.fused_scores[d] = np.zeros((n, depth))
    fold_of = np.asarray(folds)
    for k, model_id in enumerate(fold_models):
        rows = np.flatnonzero(fold_of == k)
        if not len(rows):
            continue
        model = loader(ModelSpec("run", model_id))
        encoded = _encode(model, texts, [questions[r] for r in rows], f"fold {k + 1}", tracker)
        for d in dims:
            top, scores = _search(encoded, d, tie_ranks)
            out.top_idx[d][rows], out.top_scores[d][rows] = top, scores
            if bm25 is not None:
                dense = (
                    truncate_normalize(encoded.queries, d) @ truncate_normalize(encoded.corpus, d).T
                )  # (q, N) cosines
                fused, fused_scores = rrf_search(dense, bm25[rows], depth, tie_ranks)
                out.fused_idx[d][rows], out.fused_scores[d][rows] = fused, fused_scores
        tracker.advance(1, f"fold {k + 1} of {len(fold_models)} scored")
    return out


def base_scores(
    model: Any,
    label: str,
    chunks: Sequence[Chunk],
    questions: Sequence[str],
    gold: Sequence[Sequence[int]],
    dims: Sequence[int],
    tie_ranks: np.ndarray,
    tracker: ProgressTracker,
    bm25: np.ndarray | None = None,
) -> list[DimScores]:
    """The base model on every question at every dim (and fused with BM25 when given)."""
    encoded = _encode(model, [c.text for c in chunks], questions, label, tracker)
    out = []
    for d in dims:
        top, scores = _search(encoded, d, tie_ranks)
        out.append(score_ranking(label, "base", d, top, scores, list(gold)))
    if bm25 is not None:
        d = dims[0]
        dense = truncate_normalize(encoded.queries, d) @ truncate_normalize(encoded.corpus, d).T
        top, scores = rrf_search(dense, bm25, min(SEARCH_DEPTH, len(chunks)), tie_ranks)
        out.append(score_ranking(f"{label} + BM25 (RRF)", "hybrid", d, top, scores, list(gold)))
    tracker.advance(1, f"{label} scored")
    return out


def recipe_scores(
    assembled: Assembled, label: str, gold: Sequence[Sequence[int]], dims: Sequence[int]
) -> list[DimScores]:
    """The recipe's rankings (assembled from the folds) scored like any model's."""
    out = [
        score_ranking(label, "tuned", d, assembled.top_idx[d], assembled.top_scores[d], list(gold))
        for d in dims
    ]
    if assembled.fused_idx and any(assembled.fused_idx[d].any() for d in dims[:1]):
        d = dims[0]
        out.append(
            score_ranking(
                f"{label} + BM25 (RRF)",
                "hybrid",
                d,
                assembled.fused_idx[d],
                assembled.fused_scores[d],
                list(gold),
            )
        )
    return out


def bm25_rankings(
    chunks: Sequence[Chunk], questions: Sequence[str], gold: Sequence[Sequence[int]], tie_ranks
) -> tuple[np.ndarray, DimScores]:
    """BM25's (n, N) scores and its scored ranking."""
    from core.evaluation.search import top_k_from_scores

    scores = bm25_scores(bm25_index([c.text for c in chunks]), list(questions))
    top, top_scores = top_k_from_scores(scores, min(SEARCH_DEPTH, len(chunks)), tie_ranks)
    return scores, score_ranking(BM25_LABEL, "bm25", None, top, top_scores, list(gold))


def fold_spread(
    base: Sequence[DimScores],
    recipe: Sequence[DimScores],
    folds: Sequence[int],
    metric: str,
) -> pd.DataFrame:
    """Per fold and dim: its questions, the base and the recipe's mean `metric` and their
    difference: how much the gain varies from one fold model to the next."""
    fold_of = np.asarray(folds)
    base_at = {s.dim: s for s in base if s.kind == "base"}
    rows = []
    for s in recipe:
        if s.kind != "tuned" or s.dim not in base_at:
            continue
        for k in sorted(set(fold_of.tolist())):
            mask = fold_of == k
            b = float(np.mean(base_at[s.dim].per_query[metric][mask]))
            t = float(np.mean(s.per_query[metric][mask]))
            rows.append(
                {
                    "fold": k + 1,
                    "questions": int(mask.sum()),
                    "dim": s.dim,
                    "base": b,
                    "tuned": t,
                    "delta": t - b,
                }
            )
    return pd.DataFrame(rows, columns=["fold", "questions", "dim", "base", "tuned", "delta"])


def evaluated_dims(model: Any, wanted: Sequence[int]) -> list[int]:
    """The dims to evaluate: the wanted ones that fit the base model's native dim."""
    return dims_for(native_dim(model), tuple(wanted))
