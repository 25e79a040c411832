"""What training pairs from the documents buy, measured on the hand-written sample questions.

    .venv/bin/python -m bench.document_pairs                  # 2 epochs, batch 32, max length 256

On the sample corpus (the Debian FAQ): the hand-written set, and a set from the documents
(heading and cloze pairs, no LLM) aligned with it, so its validation and test chunks are never
trained on. MiniLM is fine-tuned three times with the sample loop's recipe: on the document pairs,
on the hand-written train split, and on both (one set, every pair weight 1). Each is evaluated
against the base on the hand-written test split; the model trained on document pairs alone (no
hand-written question in its training) is also evaluated on all the hand-written questions. It
prints the primary metric per dimension with intervals and family-adjusted verdicts (core.evaluation.verdict),
and what each model trained on and saw, as markdown. Runs go to a temporary data directory unless
RAGBENCH_DATA_DIR is set.
"""

from __future__ import annotations

import contextlib
import sys
import time


def _train(qa_id: str, name: str, epochs: int, batch: int, length: int, seed: int) -> str:
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune

    cfg = FinetuneConfig(
        qa_run_id=qa_id, epochs=epochs, batch_size=batch, max_seq_length=length, seed=seed
    )
    model = create_finetune_run(cfg, name=name)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log dicts
        status = run_finetune(model)
    if status != "done":
        raise SystemExit(f"fine-tune {name} ended {status}")
    return model.id


def _evaluate(qa_id: str, model_ids: list[str], split: str | None):  # noqa: ANN202
    from core.embeddings import ModelSpec
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval

    return evaluate_retrieval(
        RetrievalEvalConfig(
            qa_run_id=qa_id,
            models=(ModelSpec(), *(ModelSpec("run", m) for m in model_ids)),
            split=split,  # type: ignore[arg-type]
            include_bm25=True,
            frontier=False,
            chroma_check=False,
            similarity_csv=None,
        )
    )


def _tables(result, title: str) -> list[str]:  # noqa: ANN001 - a RetrievalEvalResult
    from core.evaluation.seen import seen_display
    from core.evaluation.verdict import deltas_display

    primary = result.primary_metric
    lines = [
        f"### {title}",
        "",
        f"{result.gold_summary()}; against all {result.corpus_size} chunks.",
        "",
    ]
    lines += [
        "| model | dim | base | tuned | Δ (95% CI) | adjusted p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = result.deltas[result.deltas["metric"] == primary]
    for _, r in deltas_display(rows, confidence=result.confidence).iterrows():
        lines.append(
            f"| {r['model']} | {r['dim']} | {r['base']} | {r['tuned']} | {r['delta']} "
            f"{r['95% CI']} | {r['adjusted p']} | {r['verdict'].split(' (')[0]} |"
        )
    lines += ["", *(f"Verdict: {h.text}" for h in result.headlines()), ""]
    training = result.training_rows()
    if training:
        keys = list(training[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in training]
    seen = seen_display(result.seen_rows())
    if not seen.empty:
        lines += ["", seen.to_markdown(index=False)]
    metrics = result.metrics[result.metrics["metric"] == primary]
    bm25 = metrics[metrics["kind"] == "bm25"]["value"]
    if not bm25.empty:
        lines += ["", f"BM25 {primary} {float(bm25.iloc[0]):.3f}."]
    return [*lines, ""]


def run(epochs: int, batch: int, length: int, seed: int) -> str:
    """Make the sets, train the three models, evaluate; the markdown summary."""
    from core.documents.stage import ingest_sample_corpus
    from core.questions.from_documents import DocumentPairsConfig, make_document_pairs
    from core.questions.sample import load_sample_qa

    started = time.monotonic()
    corpus = ingest_sample_corpus().run
    human = load_sample_qa(corpus.id)
    docs = make_document_pairs(corpus.id, DocumentPairsConfig(align_with=human.id))
    both = make_document_pairs(
        corpus.id, DocumentPairsConfig(align_with=human.id, include_aligned=True)
    )
    recipe = (epochs, batch, length, seed)
    models = {
        "documents": _train(docs.id, "MiniLM on document pairs", *recipe),
        "human": _train(human.id, "MiniLM on hand-written", *recipe),
        "both": _train(both.id, "MiniLM on both", *recipe),
    }
    summary = docs.manifest.summary
    lines = [
        f"Sample corpus: {summary.get('n_accepted')} pairs from the documents "
        f"({', '.join(f'{k}: {v}' for k, v in _sources(docs.id).items())}); recipe: {epochs} "
        f"epochs, batch {batch}, max length {length}, seed {seed}.",
        "",
    ]
    test = _evaluate(human.id, list(models.values()), "test")
    lines += _tables(test, "Hand-written test split")
    every = _evaluate(human.id, [models["documents"]], None)
    lines += _tables(every, "Every hand-written question (the document-pair model only)")
    lines.append(f"Took {time.monotonic() - started:.0f} s.")
    return "\n".join(lines)


def _sources(qa_id: str) -> dict[str, int]:
    from collections import Counter

    from core.questions.dataset import load_qa

    return dict(Counter(i.source for i in load_qa(qa_id, split="train")))


def main() -> None:
    from bench.sample_loop import recipe_main

    recipe_main("python -m bench.document_pairs", __doc__, "ragbench-pairs-", run)


if __name__ == "__main__":
    main()
