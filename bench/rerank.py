"""Fine-tune, rerank, or both, on the sample corpus: the README's reranker table from one run.

    .venv/bin/python -m bench.rerank                      # 2 epochs each, max length 256
    .venv/bin/python -m bench.rerank --epochs 1 --max-seq-length 128
    RAGBENCH_DATA_DIR=DIR .venv/bin/python -m bench.rerank --table RETRIEVAL_EVAL_RUN

Ingests the Debian FAQ, loads the hand-written questions, fine-tunes the packaged MiniLM and
trains a cross-encoder reranker (offline: MiniLM's transformer with a new scoring head, a weak
start) on the same train split with hard negatives, then evaluates base, tuned, BM25 and the
hybrids, and base and tuned each reranked over their top 50, on the test split against the
whole corpus. Prints the primary metric of every arm with its interval, the paired verdicts
(one max-T family) and the measured reranking latency per question, through the functions the
pages call, then which lever helps (core.evaluation.levers) and the reranker's own validation
verdict. Runs go to a temporary data directory unless RAGBENCH_DATA_DIR is set. `--table` prints
the same summary from a finished evaluation run, without training.
"""

from __future__ import annotations

import contextlib
import sys
import time

from bench.sample_loop import recipe_main


def run(epochs: int, batch_size: int, max_seq_length: int, seed: int) -> str:
    """Run the three levers and return the markdown summary."""
    from core.documents.stage import ingest_sample_corpus
    from core.embeddings import ModelSpec
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune
    from core.questions.sample import load_sample_qa
    from core.rerank.config import RerankerConfig
    from core.rerank.control import create_reranker_run
    from core.rerank.trainer import run_rerank_train
    from core.rerankers import RerankerSpec

    started = time.monotonic()
    corpus = ingest_sample_corpus()
    qa = load_sample_qa(corpus.run.id)
    cfg = FinetuneConfig(
        qa_run_id=qa.id, epochs=epochs, batch_size=batch_size, max_seq_length=max_seq_length,
        seed=seed,
    )  # fmt: skip
    model = create_finetune_run(cfg, name=f"MiniLM sample {epochs} epochs")
    reranker = create_reranker_run(
        RerankerConfig(qa_run_id=qa.id, epochs=epochs, max_length=max_seq_length, seed=seed),
        name=f"reranker sample {epochs} epochs",
    )
    with contextlib.redirect_stdout(sys.stderr):  # the trainers print their log dicts
        trained = (run_finetune(model), run_rerank_train(reranker))
    if trained != ("done", "done"):
        raise SystemExit(f"training ended {trained}")
    trained_s = time.monotonic() - started
    result = evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa.id,
            models=(ModelSpec(), ModelSpec("run", model.id)),
            include_bm25=True,
            hybrid=True,
            frontier=False,
            chroma_check=False,
            similarity_csv=None,
            rerankers=(RerankerSpec("run", reranker.id),),
            rerank_kinds=("base", "tuned"),
        )
    )
    extra = f"Training took {trained_s:.0f} s, the whole run {time.monotonic() - started:.0f} s"
    return summary(result, extra)


def summary(result, extra: str = "") -> str:  # noqa: ANN001 - a RetrievalEvalResult
    """The markdown table, the verdicts, the levers and the reranker's validation verdict."""
    from core.rerankers import validation_verdict
    from core.runs.folders import load_run

    primary = result.primary_metric
    metrics = result.metrics[result.metrics["metric"] == primary]
    metrics = metrics.sort_values("dim", ascending=False).drop_duplicates("model")
    deltas = result.deltas[result.deltas["metric"] == primary].set_index(["model", "dim"])
    latency = {m["label"]: m.get("rerank_latency_ms") for m in result.models}
    lines = [
        f"{result.corpus_size} chunks; test split: {result.gold_summary()}.",
        "",
        f"| arm | {primary} (95% CI) | Δ vs base | verdict vs base | rerank ms / question |",
        "|---|---|---|---|---|",
    ]
    for r in metrics.itertuples():
        key = (r.model, r.dim)
        row = deltas.loc[key] if key in deltas.index else None
        ms = latency.get(r.model)
        lines.append(
            f"| {r.model}{'' if r.dim is None or str(r.dim) == '<NA>' else f' ({r.dim}d)'} | "
            f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | "
            f"{'' if row is None else f'{row.delta:+.3f}'} | "
            f"{'' if row is None else row.verdict} | {'' if ms is None else f'{ms:.0f}'} |"
        )
    lines += [
        "",
        *(f"Verdict: {h.text}" for h in result.headlines()),
        *(f"Rerank: {line}" for line in result.rerank_lines()),
        *([f"Levers: {result.levers_text()}"] if result.levers_text() else []),
    ]
    specs = [m.get("reranker_spec") or m for m in result.models if m.get("kind") == "reranked"]
    rankers = {s["ref"] for s in specs if s.get("source") == "run"}
    for ranker in sorted(rankers):
        info = load_run(ranker).manifest.summary
        verdict = validation_verdict(info.get("ndcg@10_retriever"), info.get("ndcg@10_after"))
        lines += [f"Reranker {ranker}: {verdict}"] if verdict else []
    lines += ["", f"{extra} (evaluation run {result.run_id})." if extra else
              f"Evaluation run {result.run_id}."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if "--table" in sys.argv:
        from core.evaluation.results import load_retrieval_eval

        print(summary(load_retrieval_eval(sys.argv[sys.argv.index("--table") + 1])))
        return
    recipe_main("python -m bench.rerank", __doc__, "ragbench-rerank-", run)


if __name__ == "__main__":
    main()
