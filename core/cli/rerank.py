"""`ragbench rerank-train`: a cross-encoder reranker trained on a question set's train split with
hard negatives (core.rerank), in the foreground (the same code as the background job), or in
the background with `--background`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from functools import partial
from typing import Any

from core.cli.commands import Context, parse_model
from core.errors import RagbenchError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The rerank-train command's options; unset ones keep RerankerConfig's defaults."""
    p = sub.add_parser(
        "rerank-train",
        parents=[common],
        help="train a cross-encoder reranker on a question set",
        description="Train a cross-encoder on the train split's (question, passage) pairs with "
        "hard negatives mined from the corpus (never a validation or test chunk), validated by "
        "reranking the miner's top N for each validation question. Offline with no "
        "cross-encoder at hand it starts from the default embedding model's transformer with a "
        "new scoring head: a weak start, said so in the run and the card. Prints JSON with "
        "reranker_run; evaluate it with eval-retrieval --reranker run:RERANKER_RUN.",
    )
    p.add_argument("qa_run", help="the question set (qa run) to train on")
    p.add_argument(
        "--start", default="default", help="default | run:RERANKER_RUN | local:PATH | hub:ID"
    )
    p.add_argument("--miner", default="default", help="embedding model mining the negatives")
    p.add_argument("--epochs", type=int, help="passes over the pairs (default 2)")
    p.add_argument("--batch-size", type=int, help="pairs per batch (default 16)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default 2e-5)")
    p.add_argument("--max-length", type=int, help="tokens per (question, passage) (default 256)")
    p.add_argument("--num-negatives", type=int, help="hard negatives per question (default 4)")
    p.add_argument("--rerank-top", type=int, help="miner hits validation reranks (default 50)")
    p.add_argument(
        "--source-weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="weigh a question source (human, llm, heading, cloze), as in finetune",
    )
    p.add_argument("--name", default="", help="the reranker run's name")
    p.add_argument("--background", action="store_true", help="start a job and return at once")


def config_from_options(
    qa_run: str, options: dict[str, Any], start: str = "default", miner: str = "default"
) -> Any:
    """A RerankerConfig from the loop TOML's [reranker] section (names as in RerankerConfig)."""
    from core.rerank.config import RerankerConfig
    from core.rerankers import parse_reranker

    start_spec, miner_spec = parse_reranker(start), parse_model(miner)
    # from_dict: an unknown name in the TOML is refused with a guess at the one meant
    return RerankerConfig.from_dict(
        {**options, "qa_run_id": qa_run, "start": start_spec, "miner": miner_spec}
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The RerankerConfig the options describe."""
    from core.cli.main import _given, parse_weights

    options = _given(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        num_negatives=args.num_negatives,
        rerank_top=args.rerank_top,
        source_weights=parse_weights(args.source_weight) or None,
    )
    return config_from_options(args.qa_run, options, args.start, args.miner)


def _eval_line(ctx: Context, event: dict[str, Any]) -> None:
    """One progress line per validation: the miner's order and the reranked one."""
    if event.get("event") == "warning" or (event.get("event") == "phase"):
        ctx.progress.note("rerank-train", str(event.get("message", "")))
    if event.get("event") != "eval":
        return
    scores = event.get("ndcg@10") or {}
    shown = ", ".join(f"{k} {float(v):.3f}" for k, v in scores.items())
    ctx.progress.note(
        "rerank-train",
        f"{event.get('phase')} (step {event.get('step', 0)}): validation ndcg@10 {shown}",
    )


def rerank_train(ctx: Context, args: argparse.Namespace) -> str:
    """`rerank-train`: train (or start) a reranker; the reranker run id."""
    return train_reranker(ctx, config_from_args(args), args.name, background=args.background)


def train_reranker(ctx: Context, cfg: Any, name: str = "", *, background: bool = False) -> str:
    """Train a reranker for `cfg` in the foreground (or start its job); the reranker run id."""
    from core.finetune.artifacts import read_metrics
    from core.rerank.control import create_reranker_run, start_reranker
    from core.rerank.trainer import run_rerank_train
    from core.rerankers import validation_verdict
    from core.runs.folders import load_run

    if background:
        run = start_reranker(cfg, name)
        ctx.out.emit(
            {"stage": "rerank-train", "reranker_run": run.id, "status": "started"},
            f"reranker run {run.id}: started in the background",
        )
        return run.id
    run = create_reranker_run(cfg, name)
    ctx.progress.note("rerank-train", f"reranker run {run.id}")
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for results only
        status = run_rerank_train(run, on_event=partial(_eval_line, ctx))
    run = load_run(run.id)
    if status != "done":
        raise RagbenchError(f"Reranker {run.id} ended {status}", found=run.manifest.error or "")
    metrics = read_metrics(run) or {}
    summary = run.manifest.summary
    ctx.out.emit(
        {"stage": "rerank-train", "reranker_run": run.id, "status": status, "metrics": metrics},
        f"reranker run {run.id}: {status}; validation ndcg@10 of the miner's top "
        f"{cfg.rerank_top}: miner alone {summary.get('ndcg@10_retriever')}, reranker before "
        f"{summary.get('ndcg@10_before')}, after {summary.get('ndcg@10_after')}. "
        + validation_verdict(
            summary.get("ndcg@10_retriever"), summary.get("ndcg@10_after"), cfg.rerank_top
        ),
    )
    return run.id
