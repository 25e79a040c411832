"""Split evaluation against a K-fold cross-fit of the same recipe, on the sample corpus.

    .venv/bin/python -m bench.crossfit                 # 5 folds, 2 epochs, batch 32, length 256
    .venv/bin/python -m bench.crossfit --folds 10 --epochs 1

Both start from the sample corpus and its 163 hand-written questions. The split evaluation
fine-tunes once on the train split and tests the held-out test split; the cross-fit fine-tunes
one model per fold with the same recipe and scores every question with the model that never saw
it. Prints, per protocol and dim, the questions (clusters), Δ nDCG@10 with its interval, the
adjusted p, the verdict and the detectable Δ, then the fold spread, the headline verdicts and
the time of each, all through the functions the pages call.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

from core.config import apply_offline_env


def _rows(label: str, result) -> list[str]:  # noqa: ANN001 - RetrievalEvalResult
    from core.evaluation.verdict import deltas_display

    primary = result.primary_metric
    rows = result.deltas[result.deltas["metric"] == primary]  # every compared model vs the base
    rows = rows[~rows["model"].str.contains("BM25")]
    out = []
    for _, r in deltas_display(rows, confidence=result.confidence).iterrows():
        out.append(
            f"| {label} | {r['questions']} | {r['dim']} | {r['base']} | {r['tuned']} | "
            f"{r['delta']} {r['95% CI']} | {r['adjusted p']} | {r['verdict'].split(' (')[0]} | "
            f"{r['detectable Δ (80% power)'] or '—'} |"
        )
    return out


def run(folds: int, epochs: int, batch_size: int, max_seq_length: int, seed: int) -> str:
    """Both protocols on the sample; the markdown summary."""
    from core.crossfit.config import CrossfitConfig
    from core.crossfit.plan import estimate_cost
    from core.crossfit.stage import create_crossfit_run, run_crossfit
    from core.documents.stage import ingest_sample_corpus
    from core.embeddings import ModelSpec
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune
    from core.questions.sample import load_sample_qa

    corpus = ingest_sample_corpus()
    qa = load_sample_qa(corpus.run.id)
    recipe = FinetuneConfig(
        epochs=epochs, batch_size=batch_size, max_seq_length=max_seq_length, seed=seed
    )
    started = time.monotonic()
    model = create_finetune_run(recipe.update(qa_run_id=qa.id), name="split recipe")
    with contextlib.redirect_stdout(sys.stderr):
        if run_finetune(model) != "done":
            raise SystemExit("the split fine-tune did not finish")
    split = evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa.id,
            models=(ModelSpec(), ModelSpec("run", model.id)),
            frontier=False,
            chroma_check=False,
            similarity_csv=None,
        )
    )
    split_s = time.monotonic() - started
    config = CrossfitConfig(qa_run_id=qa.id, folds=folds, seed=seed, recipe=recipe)
    cost = estimate_cost(config)
    started = time.monotonic()
    crossfit = create_crossfit_run(config)
    with contextlib.redirect_stdout(sys.stderr):
        fitted = run_crossfit(crossfit.id)
    crossfit_s = time.monotonic() - started
    return "\n".join(
        [
            tables(split, fitted, folds),
            "",
            f"Time on this machine: split {split_s:.0f} s (one fine-tune and one evaluation); "
            f"cross-fit {crossfit_s:.0f} s ({cost.text()})",
        ]
    )


def tables(split, fitted, folds: int) -> str:  # noqa: ANN001 - RetrievalEvalResults
    """Both protocols' rows, their verdicts and the fold spread, as markdown."""
    spread = fitted.fold_spread()
    return "\n".join(
        [
            "| protocol | questions | dim | base | tuned | Δ (95% CI) | adjusted p | verdict | "
            "detectable Δ (80% power) |",
            "|---|---|---|---|---|---|---|---|---|",
            *_rows("split (test split)", split),
            *_rows(f"{folds}-fold cross-fit", fitted),
            "",
            f"Split: {split.headlines()[0].text}",
            "",
            f"Cross-fit: {fitted.headlines()[0].text}",
            "",
            "Fold spread (Δ ndcg@10 per fold):",
            "",
            spread.pivot_table(index="fold", columns="dim", values="delta").round(3).to_markdown(),
        ]
    )


def main() -> None:
    apply_offline_env()
    parser = argparse.ArgumentParser(prog="python -m bench.crossfit", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--tables",
        nargs=2,
        metavar=("SPLIT_EVAL", "CROSSFIT_EVAL"),
        help="only print the tables of two finished retrieval_eval runs (no training)",
    )
    args = parser.parse_args()
    if args.tables:
        from core.evaluation.results import load_retrieval_eval

        split, fitted = (load_retrieval_eval(run_id) for run_id in args.tables)
        print(tables(split, fitted, int(fitted.crossfit["folds"])))
        return
    if "RAGBENCH_DATA_DIR" not in os.environ:
        os.environ["RAGBENCH_DATA_DIR"] = tempfile.mkdtemp(prefix="ragbench-crossfit-")
    print(run(args.folds, args.epochs, args.batch_size, args.max_seq_length, args.seed))


if __name__ == "__main__":
    main()
