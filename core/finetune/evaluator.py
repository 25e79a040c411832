"""Validation during training: sentence-transformers' InformationRetrievalEvaluator per Matryoshka
dim over the whole corpus, and its flat metric keys read back as {dim: {metric: value}}."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.finetune.data import FinetuneData


HEADLINE_METRIC = "ndcg@10"


_ST_TO_OURS = {"accuracy": "hit_rate"}


def build_evaluator(
    data: FinetuneData,
    dims: tuple[int, ...],
    *,
    query_prompt: str | None,
    corpus_prompt: str | None,
    batch_size: int = 64,
):  # noqa: ANN201 - a SequentialEvaluator
    """One InformationRetrievalEvaluator per dim (truncate_dim), over the full corpus, in a
    SequentialEvaluator; the query prompt is the one used in training."""
    from sentence_transformers.base.evaluation import SequentialEvaluator
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    evaluators = [
        InformationRetrievalEvaluator(
            queries=data.val_queries,
            corpus=data.corpus,
            relevant_docs=data.val_relevant,
            name=f"dim_{dim}",
            truncate_dim=dim,
            batch_size=batch_size,
            query_prompt=query_prompt,
            corpus_prompt=corpus_prompt,
            write_csv=False,
            show_progress_bar=False,
        )
        for dim in dims
    ]
    return SequentialEvaluator(evaluators)


def parse_eval_metrics(metrics: dict[str, float]) -> dict[int, dict[str, float]]:
    """ST's flat keys ('eval_dim_128_cosine_accuracy@5') -> {128: {'hit_rate@5': ...}}."""
    import re

    pattern = re.compile(r"(?:^|_)dim_(\d+)_[a-z]+_([a-z]+)@(\d+)$")
    out: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        match = pattern.search(key)
        if not match:
            continue
        dim, family, k = int(match.group(1)), match.group(2), match.group(3)
        out.setdefault(dim, {})[f"{_ST_TO_OURS.get(family, family)}@{k}"] = float(value)
    return out


def headline(per_dim: dict[int, dict[str, float]]) -> dict[str, float]:
    """{dim (as str): ndcg@10} for JSON."""
    return {str(d): m[HEADLINE_METRIC] for d, m in sorted(per_dim.items(), reverse=True)}


class EvaluationStopped(Exception):
    """An evaluation given up because `should_stop()` said so (the run's STOP file)."""


@contextlib.contextmanager
def stop_between_batches(model: Any, should_stop: Callable[[], bool]) -> Iterator[None]:
    """Within it, every batch `model` encodes or scores first asks `should_stop`, and True
    raises EvaluationStopped (a forward pre-hook: encode() and a cross-encoder's predict() call
    the model once per batch), so a stop waits for one batch, not a whole evaluation."""

    def check(_module: Any, _args: Any) -> None:
        if should_stop():
            raise EvaluationStopped

    handle = model.register_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def evaluate_model(
    model,  # noqa: ANN001 - a SentenceTransformer
    evaluator,  # noqa: ANN001 - a SequentialEvaluator
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, dict[str, float]]:
    """Run the per-dim evaluator once: {dim: {metric: value}}. With `should_stop`, a True
    answer before any batch raises EvaluationStopped (see stop_between_batches)."""
    if should_stop is None:
        return parse_eval_metrics(evaluator(model))
    with stop_between_batches(model, should_stop):
        return parse_eval_metrics(evaluator(model))
