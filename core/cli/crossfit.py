"""`ragbench crossfit`: K fine-tunes of one recipe and the evaluation over every question, in the
foreground (Ctrl-C ends it `stopped`; `--resume RUN` continues at its next unfinished fold), or
only the power plan and the cost (`--plan`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from core.cli.commands import Context, parse_model
from core.cli.render import retrieval_json, retrieval_text
from core.errors import RagbenchError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The crossfit command's options: the folds, the fine-tune recipe, what to evaluate."""
    p = sub.add_parser(
        "crossfit",
        parents=[common],
        help="cross-fitted evaluation: K fine-tunes, every question held out once",
        description="Deal the question set's clusters into K folds, fine-tune one model per fold "
        "on the other folds with the same recipe, score every question with the model that never "
        "saw it, and compare with the base over all questions. Prints JSON with "
        "retrieval_eval_run, as eval-retrieval does.",
    )
    p.add_argument("qa_run", nargs="?", help="the question set (omit with --resume)")
    p.add_argument("--folds", type=int, default=5, help="K (default 5)")
    p.add_argument("--seed", type=int, default=42, help="deals the folds")
    p.add_argument("--validation-share", type=float, default=0.15, help="of the other folds")
    p.add_argument("--base", default="default", help="default | run:ID | hub:ID | local:PATH")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--loss", choices=["mnrl", "cached_mnrl"])
    p.add_argument("--hard-negatives", action="store_true", help="mine from the train split")
    p.add_argument("--matryoshka-dims", type=int, nargs="*", help="trained and evaluated dims")
    p.add_argument(
        "--source-weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="weigh a question source (human, llm, heading, cloze), as in finetune",
    )
    p.add_argument("--bm25", action="store_true", help="BM25 on the same questions")
    p.add_argument("--hybrid", action="store_true", help="the recipe and the base + BM25 (RRF)")
    p.add_argument("--final-model", action="store_true", help="also train the model to ship")
    p.add_argument("--primary-metric", default="ndcg@10")
    p.add_argument("--name", default="")
    p.add_argument("--plan", action="store_true", help="only say what it can detect and costs")
    p.add_argument("--plan-from", metavar="EVAL_RUN", help="plan from an evaluation's spread")
    p.add_argument("--resume", metavar="CROSSFIT_RUN", help="continue a stopped cross-fit")


def config_from_args(args: argparse.Namespace) -> Any:
    """The CrossfitConfig the options describe."""
    from core.cli.main import _given, parse_weights
    from core.crossfit.config import CrossfitConfig
    from core.finetune.config import FinetuneConfig

    recipe = _given(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seq_length=args.max_seq_length,
        loss=args.loss,
        hard_negatives=args.hard_negatives or None,
        matryoshka_dims=tuple(args.matryoshka_dims) if args.matryoshka_dims else None,
        source_weights=parse_weights(args.source_weight) or None,
    )
    return CrossfitConfig(
        qa_run_id=args.qa_run or "",
        folds=args.folds,
        seed=args.seed,
        validation_share=args.validation_share,
        recipe=FinetuneConfig(base_model=parse_model(args.base), **recipe),
        include_bm25=args.bm25,
        hybrid=args.hybrid,
        final_model=args.final_model,
        primary_metric=args.primary_metric,
        name=args.name,
    )


def crossfit(ctx: Context, args: argparse.Namespace) -> str | None:
    """Run (or resume, or only plan) a cross-fit from the command line's options."""
    from core.crossfit.config import CrossfitConfig
    from core.runs.folders import load_run

    if args.resume:
        return run_crossfit_command(
            ctx, CrossfitConfig.from_dict(load_run(args.resume).manifest.config), args.resume
        )
    if not args.qa_run:
        raise RagbenchError("Name the question set to cross-fit.", fix="ragbench crossfit QA_RUN")
    config = config_from_args(args)
    if args.plan or args.plan_from:
        return plan_command(ctx, config, args.plan_from)
    return run_crossfit_command(ctx, config)


def config_from_options(
    qa_run: str, recipe: dict[str, Any], base: str, options: dict[str, Any]
) -> Any:
    """The CrossfitConfig of a loop file's [crossfit] section (the recipe: its [finetune])."""
    from core.crossfit.config import CrossfitConfig
    from core.finetune.config import FinetuneConfig

    return CrossfitConfig(
        qa_run_id=qa_run,
        recipe=FinetuneConfig(base_model=parse_model(base), **recipe),
        **options,
    )


def plan_command(ctx: Context, config: Any, plan_from: str | None = None) -> None:
    """What a split and a K-fold evaluation can detect, and what the cross-fit costs."""
    from core.crossfit.plan import estimate_cost, plan_power

    plan = plan_power(config, from_run=plan_from)
    cost = estimate_cost(config)
    ctx.out.emit(
        {"stage": "crossfit-plan", "plan": plan.to_dict(), "cost": cost.to_dict()},
        f"{plan.text()}\ncost: {cost.text()}",
    )


def run_crossfit_command(ctx: Context, config: Any, resume: str | None = None) -> str:
    """Train the folds in the foreground and evaluate; the retrieval_eval run id."""
    from core.crossfit.plan import estimate_cost
    from core.crossfit.stage import create_crossfit_run, run_crossfit

    cost = estimate_cost(config)
    run_id = resume or create_crossfit_run(config).id
    ctx.progress.note("crossfit", f"crossfit run {run_id}: {cost.text()}")
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log dicts
        result = run_crossfit(run_id, on_progress=ctx.progress)
    data = {
        "stage": "crossfit",
        "crossfit_run": run_id,
        "cost": cost.to_dict(),
        "fold_spread": result.fold_spread().to_dict("records"),
        **retrieval_json(result),
    }
    ctx.out.emit(data, retrieval_text(result) + _spread_text(result))
    return result.run_id


def _spread_text(result: Any) -> str:
    from core.cli.render import frame_text

    spread = result.fold_spread()
    if spread.empty:
        return ""
    shown = spread.assign(
        base=spread["base"].map("{:.3f}".format),
        tuned=spread["tuned"].map("{:.3f}".format),
        delta=spread["delta"].map("{:+.3f}".format),
    )
    return (
        f"\n\n{result.primary_metric} per fold (the spread of the recipe's gain):\n"
        + frame_text(shown)
    )
