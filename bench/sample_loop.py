"""The whole loop on the sample corpus, and the README's results table from it.

    .venv/bin/python -m bench.sample_loop                 # 2 epochs, batch 32, max length 256
    .venv/bin/python -m bench.sample_loop --epochs 1 --max-seq-length 128

Ingests the Debian FAQ with the default chunking, loads the hand-written questions (gold chunks
from their evidence quotes), fine-tunes the packaged MiniLM in this process, evaluates base vs
tuned (and BM25) on the test split against the whole corpus, and prints the headline verdict and
the primary metric per dimension as a markdown table, all through the functions the pages call
(core.evaluation.verdict for every verdict and power figure). Runs go to a temporary data directory unless
RAGBENCH_DATA_DIR is set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable

from core.config import apply_offline_env


def run(epochs: int, batch_size: int, max_seq_length: int, seed: int) -> str:
    """Run the loop and return the markdown summary."""
    from core.documents.stage import ingest_sample_corpus
    from core.embeddings import ModelSpec
    from core.evaluation.config import BM25_LABEL, RetrievalEvalConfig
    from core.evaluation.frontier import frontier_display
    from core.evaluation.stage import evaluate_retrieval
    from core.evaluation.verdict import deltas_display
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune
    from core.questions.sample import load_sample_qa

    started = time.monotonic()
    corpus = ingest_sample_corpus()
    qa = load_sample_qa(corpus.run.id)
    cfg = FinetuneConfig(
        qa_run_id=qa.id,
        epochs=epochs,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        seed=seed,
    )
    model = create_finetune_run(cfg, name=f"MiniLM sample {epochs} epochs")
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log dicts
        status = run_finetune(model)
    if status != "done":
        raise SystemExit(f"fine-tune ended {status}")
    result = evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa.id,
            models=(ModelSpec(), ModelSpec("run", model.id)),
            include_bm25=True,
            hybrid=True,
            chroma_check=False,
        )
    )
    primary = result.primary_metric
    tuned = next(m["label"] for m in result.models if m["kind"] == "tuned")
    rows = result.deltas[(result.deltas["metric"] == primary) & (result.deltas["model"] == tuned)]
    table = deltas_display(rows, confidence=result.confidence)
    metrics = result.metrics[result.metrics["metric"] == primary]
    bm25 = float(metrics.loc[metrics["model"] == BM25_LABEL, "value"].iloc[0])
    counts = qa.manifest.summary
    lines = [
        f"{corpus.n_chunks} chunks; {counts['n_accepted']} questions "
        f"({counts.get('n_multi_gold', 0)} with their evidence in two chunks); test split: "
        f"{result.gold_summary()}; train {sum(1 for _ in _split(qa.id, 'train'))} / "
        f"validation {sum(1 for _ in _split(qa.id, 'validation'))}.",
        "",
        "| dim | base | tuned | Δ (95% CI) | adjusted p | verdict | detectable Δ (80% power) | "
        "questions to detect Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['dim']} | {r['base']} | {r['tuned']} | {r['delta']} {r['95% CI']} | "
            f"{r['adjusted p']} | {r['verdict'].split(' (')[0]} | "
            f"{r['detectable Δ (80% power)']} | {r['queries to detect Δ']} |"
        )
    hybrids = metrics[metrics["kind"] == "hybrid"].merge(
        result.deltas[result.deltas["metric"] == primary][["model", "delta", "p_adj", "verdict"]],
        on="model",
        how="left",
    )
    lines += [
        "",
        *(f"Verdict: {h.text}" for h in result.headlines()),
        "",
        "| hybrid | " + primary + " (95% CI) | Δ vs base | verdict |",
        "|---|---|---|---|",
        *(
            f"| {r.model} | {r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | {r.delta:+.3f} | "
            f"{r.verdict} |"
            for r in hybrids.itertuples()
        ),
        "",
        f"What to ship: {result.recommendation().text}",
        "",
        frontier_display(result.frontier, result.deploy_size, primary).to_markdown(index=False),
        "",
        f"BM25 {primary} {bm25:.3f}; random ranker {result.random_baseline[primary]:.3f}; "
        f"loop took {time.monotonic() - started:.0f} s (evaluation run {result.run_id}).",
    ]
    return "\n".join(lines)


def _split(qa_id: str, split: str) -> list:
    from core.questions.dataset import load_qa

    return load_qa(qa_id, split=split)  # type: ignore[arg-type]


def recipe_main(prog: str, doc: str | None, prefix: str, run_with: Callable[..., str]) -> None:
    """The command line of a loop experiment: the fine-tune recipe's options, a temporary data
    directory unless RAGBENCH_DATA_DIR is set, and the markdown it prints."""
    apply_offline_env()
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if "RAGBENCH_DATA_DIR" not in os.environ:
        os.environ["RAGBENCH_DATA_DIR"] = tempfile.mkdtemp(prefix=prefix)
    print(run_with(args.epochs, args.batch_size, args.max_seq_length, args.seed))


def main() -> None:
    recipe_main("python -m bench.sample_loop", __doc__, "ragbench-sample-", run)


if __name__ == "__main__":
    main()
