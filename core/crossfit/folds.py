"""Folds by cluster, and each fold's question set.

How it works:
1. Every accepted question's cluster (core.questions.splits.question_clusters: questions that
   share a gold or linked chunk, the same text or a near-duplicate tie) goes whole into one of
   K folds: clusters are shuffled with the seed, then dealt largest first, each to the fold with
   the fewest questions so far, so the folds are balanced by questions and no chunk sits in two.
2. Fold k's question set puts its own questions in the test split and deals the other folds'
   clusters into train and validation (the trainer's own validation, `validation_share` of their
   questions), by cluster again. It is saved as a qa run (source `crossfit_fold`, parents: the
   question set and the crossfit run), so the leak check that guards every qa run refuses it
   if a test chunk or question of fold k could reach training.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from core.questions.dataset import QAItem, load_qa
from core.questions.qa_runs import corpus_of, save_qa_run
from core.questions.splits import question_clusters
from core.runs.folders import Run, load_run

FOLD_SOURCE = "crossfit_fold"


def deal_folds(items: Sequence[QAItem], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each item, whole clusters at a time, balanced by questions."""
    clusters = question_clusters(items)
    members: dict[int, list[int]] = defaultdict(list)
    for n, c in enumerate(clusters):
        members[c].append(n)
    order = list(members)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda c: len(members[c]), reverse=True)  # stable: shuffled within a size
    sizes = [0] * k
    fold_of = [0] * len(items)
    for c in order:
        fold = min(range(k), key=lambda f: (sizes[f], f))
        sizes[fold] += len(members[c])
        for n in members[c]:
            fold_of[n] = fold
    return fold_of


def fold_items(
    items: Sequence[QAItem], folds: Sequence[int], fold: int, validation_share: float, seed: int
) -> list[QAItem]:
    """The items with fold `fold` as the test split and the other folds dealt, by cluster, into
    train and validation (`validation_share` of their questions in validation)."""
    clusters = question_clusters(items)
    others: dict[int, list[int]] = defaultdict(list)
    for n, (c, f) in enumerate(zip(clusters, folds, strict=True)):
        if f != fold:
            others[c].append(n)
    order = list(others)
    random.Random(seed * 1009 + fold).shuffle(order)
    want = round(validation_share * sum(len(v) for v in others.values()))
    split = ["test" if f == fold else "train" for f in folds]
    taken = 0
    for c in order:
        if taken >= want:
            break
        if taken + len(others[c]) > want and taken:
            continue  # a cluster that overshoots: try a smaller one
        for n in others[c]:
            split[n] = "validation"
        taken += len(others[c])
    return [i.model_copy(update={"split": s}) for i, s in zip(items, split, strict=True)]


def save_fold_sets(crossfit: Run, items: Sequence[QAItem], folds: Sequence[int]) -> list[Run]:
    """One qa run per fold (core.questions.qa_runs.save_qa_run checks it for leaks)."""
    from core.crossfit.config import CrossfitConfig

    config = CrossfitConfig.from_dict(crossfit.manifest.config)
    qa = load_run(config.qa_run_id)
    runs = []
    for fold in range(config.folds):
        fold_set = fold_items(items, folds, fold, config.validation_share, config.seed)
        runs.append(
            save_qa_run(
                fold_set,
                corpus_of(qa),
                name=f"{qa.manifest.name or qa.id} · fold {fold + 1} of {config.folds}",
                config={
                    "source": FOLD_SOURCE,
                    "fold": fold,
                    "folds": config.folds,
                    "crossfit": crossfit.id,
                    "seed": config.seed,
                },
                extra_parents={"source": qa.id, "crossfit": crossfit.id},
            )
        )
    return runs


def accepted_items(qa_run_id: str) -> list[QAItem]:
    """The question set's accepted items, every split: each one is a test question once."""
    return load_qa(qa_run_id)
