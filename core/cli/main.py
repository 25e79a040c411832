"""The CLI's arguments and its entry point (`ragbench`, or `python -m core`): every command
with its options, the exit codes, and the one place where errors become messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.cli import commands, run_commands
from core.cli import crossfit as crossfit_cli
from core.cli import rerank as rerank_cli
from core.cli.loop import run_loop
from core.cli.output import Output, Printer
from core.config import apply_offline_env
from core.errors import ConfigError, RagbenchError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SPLITS = ("test", "validation", "train", "all")
EXAMPLES = """examples:
  ragbench loop data/sample/loop.toml
  ragbench ingest handbook/ --name handbook
  ragbench questions CORPUS_RUN --sample
  ragbench questions CORPUS_RUN --from-documents --align-with QA_RUN
  ragbench import pairs.jsonl --question query --chunk passage
  ragbench finetune QA_RUN --epochs 3 --source-weight cloze=0.5
  ragbench eval-retrieval QA_RUN --model default --model run:MODEL_RUN --bm25
  ragbench rerank-train QA_RUN --epochs 1       # a cross-encoder reranker on the train split
  ragbench eval-retrieval QA_RUN --model run:MODEL_RUN --reranker run:RERANKER_RUN --rerank-top 50
  ragbench crossfit QA_RUN --folds 5 --epochs 2 --plan   # what it can detect, what it costs
  ragbench crossfit QA_RUN --folds 5 --epochs 2 --bm25   # every question held out once
  ragbench rag-eval QA_RUN --tuned run:MODEL_RUN --k 5 --limit 20
  ragbench compare EVAL_RUN [EVAL_RUN ...]
  ragbench report EVAL_RUN --html report.html --zip report.zip
  ragbench export QA_RUN --format csv -o questions.csv
  ragbench delete RUN --yes
  ragbench runs --kind model
  ragbench cache            # the embedding cache's size (--clear empties it)
"""


def _common() -> argparse.ArgumentParser:
    """--quiet and --format, accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress or tables on stderr",
    )
    common.add_argument(
        "--format",
        choices=("json", "table"),
        default=argparse.SUPPRESS,
        help="json (default): JSON on stdout, a table on stderr; table: the table on stdout",
    )
    return common


def _documents(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("loop", parents=[common], help="run the whole loop from a TOML config")
    p.add_argument("config", type=Path)
    p = sub.add_parser(
        "ingest", parents=[common], help="parse, chunk and index files (or 'sample')"
    )
    p.add_argument("paths", nargs="*", default=["sample"])
    p.add_argument("--name", default="")
    p.add_argument("--strategy", choices=["recursive", "token", "markdown"])
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--chunk-overlap", type=int)
    p.add_argument("--no-index", action="store_true", help="skip embedding into Chroma")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="use a finished corpus run of exactly these files and settings instead of a new one",
    )


def _questions(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("questions", parents=[common], help="question set for a corpus run")
    p.add_argument("corpus_run")
    p.add_argument("--sample", action="store_true", help="use the hand-written sample set")
    p.add_argument(
        "--from-documents",
        action="store_true",
        help="heading and cloze pairs from the documents themselves (no LLM)",
    )
    p.add_argument("--n-per-chunk", type=int, default=2, help="LLM questions per chunk")
    p.add_argument("--max-chunks", type=int, default=0, help="0: every chunk")
    p.add_argument("--no-headings", action="store_true", help="documents: no heading pairs")
    p.add_argument("--no-cloze", action="store_true", help="documents: no cloze pairs")
    p.add_argument("--cloze-per-chunk", type=int, default=1, help="documents: sentences a chunk")
    p.add_argument(
        "--align-with",
        metavar="QA_RUN",
        help="documents: keep the splits of this question set's chunks (the one you evaluate on)",
    )
    p.add_argument(
        "--include-aligned",
        action="store_true",
        help="documents: copy the aligned set's questions in (then weigh sources in finetune)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--name", default="")
    p.add_argument("--dry-run", action="store_true", help="documents: show, save nothing")
    p.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="do not load the embedding model to tie near-duplicate questions into one split",
    )
    p = sub.add_parser(
        "import",
        parents=[common],
        help="import a question file (CSV, TSV, JSONL, JSON, Parquet)",
        description="Columns default to the Questions page's guesses (question/anchor/query, "
        "positive/context/passage or chunk_id, answer, split, evidence).",
    )
    p.add_argument("file")
    p.add_argument("--corpus-run", help="match the chunk column to this corpus run's chunks")
    p.add_argument("--question", help="the question column")
    p.add_argument("--chunk", help="the chunk column (texts, or ids with --chunk-kind id)")
    p.add_argument("--chunk-kind", choices=["text", "id"])
    p.add_argument("--answer", help="the reference answer column")
    p.add_argument("--split-column", help="a column of train/validation/test to keep")
    p.add_argument("--evidence", help="a column of verbatim answer quotes")
    p.add_argument(
        "--no-gate", action="store_true", help="skip the gate's text and duplicate rules"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--train", type=float, default=0.7)
    p.add_argument("--validation", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--dry-run", action="store_true", help="show what would be saved; save nothing")
    p.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="do not load the embedding model to tie near-duplicate questions into one split",
    )


def _finetune(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune in the foreground",
        description="Fine-tune an embedding model on a question set's train split with "
        "MatryoshkaLoss over MultipleNegativesRankingLoss (NO_DUPLICATES batches), validated on "
        "its validation split at every dim each epoch; prints one line per epoch, then the "
        "validation table. Unset options keep the Fine-tune page's defaults.",
    )
    p.add_argument("qa_run", help="the question set (qa run) to train on")
    p.add_argument("--base", default="default", help="default | run:ID | hub:ID | local:PATH")
    p.add_argument("--epochs", type=int, help="passes over the training pairs (default 3)")
    p.add_argument(
        "--batch-size", type=int, help="pairs per batch: in-batch negatives (default 32)"
    )
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default 2e-5)")
    p.add_argument("--max-seq-length", type=int, help="tokens per text (default: the model's)")
    p.add_argument(
        "--dims",
        type=int,
        nargs="+",
        metavar="DIM",
        help="Matryoshka dims, largest first (default: the native dim and 512/256/128/64 below)",
    )
    p.add_argument(
        "--loss",
        choices=("mnrl", "cached_mnrl"),
        help="mnrl (default), or cached_mnrl: big batches on a small GPU (with --mini-batch-size)",
    )
    p.add_argument("--mini-batch-size", type=int, help="cached_mnrl's chunk size (default 32)")
    p.add_argument(
        "--hard-negatives",
        action="store_true",
        help="mine hard negatives from the corpus (never from validation or test chunks)",
    )
    p.add_argument("--num-negatives", type=int, help="hard negatives per question (default 1)")
    p.add_argument(
        "--source-weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="weigh a question source (human, llm, heading, cloze): 0 leaves it out, 0.5 keeps "
        "half, 2 uses each pair twice; repeat for several",
    )
    p.add_argument("--name", default="", help="the model run's name")


def _models(sub: Any, common: argparse.ArgumentParser) -> None:
    _finetune(sub, common)
    p = sub.add_parser(
        "eval-retrieval", parents=[common], help="base vs tuned retrieval evaluation"
    )
    p.add_argument("qa_run")
    p.add_argument(
        "--model", action="append", default=[], help="default | run:ID | hub:ID | local:PATH"
    )
    p.add_argument("--dims", type=int, nargs="*")
    p.add_argument("--bm25", action="store_true")
    p.add_argument("--split", default="test", choices=SPLITS, help="all: every accepted question")
    p.add_argument("--primary-metric", default="ndcg@10", help="its family's adjusted tests decide")
    p.add_argument("--hybrid", action="store_true", help="add BM25 fused with each model")
    p.add_argument("--no-frontier", action="store_true", help="skip the dim x precision cells")
    p.add_argument("--deploy-size", type=int, help="chunks in production (memory, advice)")
    p.add_argument("--latency-size", type=int, help="synthetic vectors to time each cell on")
    p.add_argument(
        "--reranker",
        action="append",
        default=[],
        help="run:RERANKER_RUN | local:PATH | hub:ID: rerank every retriever's top hits with it",
    )
    p.add_argument("--rerank-top", type=int, help="hits each reranker reorders (default 50)")
    p = sub.add_parser("rag-eval", parents=[common], help="RAG answers scored with RAGAS")
    p.add_argument("qa_run")
    p.add_argument("--tuned", help="the tuned retriever: run:MODEL_RUN (none: the base alone)")
    p.add_argument("--base", help="the base retriever (default: the tuned run's base model)")
    p.add_argument("--k", type=int, default=5, help="passages per question")
    p.add_argument("--dim", type=int, help="Matryoshka dimension (default: native)")
    p.add_argument("--limit", type=int, help="the first N test questions")
    p.add_argument("--metrics", help="comma-separated; default judge-free with the embedded LLM")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--strictness", type=int, default=3)
    p.add_argument("--judge-url", default="", help="an OpenAI-compatible judge (default: the LLM)")
    p.add_argument("--judge-model", default="")
    p.add_argument("--hybrid", action="store_true", help="also the tuned (or base) model + BM25")
    p.add_argument(
        "--reranker",
        default="",
        help="also the tuned (or base) model with its top N reranked: run:RERANKER_RUN, "
        "local:<cross-encoder folder> or hub:<id> (online)",
    )
    p.add_argument("--rerank-top", type=int, help="hits the reranker reorders (default 50)")


def _runs(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compare", parents=[common], help="evaluation runs side by side")
    p.add_argument("runs", nargs="+")
    p = sub.add_parser("report", parents=[common], help="HTML report and zip of evaluation runs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--html", help="write the HTML report here")
    p.add_argument("--zip", dest="zip_path", help="write the report zip here")
    p.add_argument("--title", default="")
    p = sub.add_parser("delete", parents=[common], help="delete a run, its dependants, its indexes")
    p.add_argument("run")
    p.add_argument(
        "--yes", action="store_true", help="really delete (otherwise: list what would go)"
    )
    p = sub.add_parser("runs", parents=[common], help="list runs")
    p.add_argument("--kind")
    p = sub.add_parser("export", help="a question set as a file (the Questions page's export)")
    p.add_argument("qa_run")
    p.add_argument(
        "--format", dest="export_format", choices=run_commands.EXPORT_FORMATS, required=True
    )
    p.add_argument("-o", "--output", required=True, help="a file (a folder for hf)")
    p.add_argument("--all", action="store_true", help="rejected questions too")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(handler=_export_command)
    p = sub.add_parser("cache", parents=[common], help="the embedding cache: its size, or --clear")
    p.add_argument("--clear", action="store_true", help="delete every cached vector")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragbench",
        description="ragbench without a browser: every page action, writing the runs the pages read.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or tables on stderr")
    parser.add_argument("--format", choices=("json", "table"), default="json")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    common = _common()
    for add in (
        _documents,
        _questions,
        _models,
        rerank_cli.add_parser,
        crossfit_cli.add_parser,
        _runs,
    ):
        add(sub, common)
    return parser


def parse_weights(pairs: list[str]) -> dict[str, float]:
    """['heading=1', 'cloze=0.5'] -> {'heading': 1.0, 'cloze': 0.5}."""
    weights = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(
                f"--source-weight {pair!r} is not SOURCE=WEIGHT.", fix="write e.g. cloze=0.5"
            )
    return weights


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _ingest_command(args: argparse.Namespace, ctx: commands.Context) -> None:
    """`ingest`: files or the sample into a corpus run (or an identical one with --reuse)."""
    chunking = _given(
        strategy=args.strategy, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap
    )
    commands.ingest(
        ctx,
        args.paths,
        name=args.name,
        chunking=chunking,
        index=not args.no_index,
        reuse=args.reuse,
    )


def _import_command(args: argparse.Namespace, ctx: commands.Context) -> None:
    """`import`: a question file, with the page's column guesses unless columns are named."""
    mapping = _given(
        question=args.question,
        chunk=args.chunk,
        chunk_kind=args.chunk_kind,
        answer=args.answer,
        split=args.split_column,
        evidence=args.evidence,
    )
    split = {"train": args.train, "validation": args.validation, "test": args.test}
    commands.import_questions(
        ctx,
        args.file,
        corpus_run=args.corpus_run,
        mapping=mapping,
        gate=not args.no_gate,
        split={**split, "seed": args.seed},
        dry_run=args.dry_run,
        near_duplicates=not args.no_near_duplicates,
    )


def _questions_command(args: argparse.Namespace, ctx: commands.Context) -> None:
    """`questions`: the sample set, pairs from the documents, or LLM generation."""
    if args.from_documents:
        options = {
            "headings": not args.no_headings,
            "cloze": not args.no_cloze,
            "cloze_per_chunk": args.cloze_per_chunk,
            "max_chunks": args.max_chunks,
            "seed": args.seed,
            "align_with": args.align_with,
            "include_aligned": args.include_aligned,
            "name": args.name,
        }
        commands.document_pairs(
            ctx,
            args.corpus_run,
            options=options,
            dry_run=args.dry_run,
            near_duplicates=not args.no_near_duplicates,
        )
        return
    options = {"n_per_chunk": args.n_per_chunk, "max_chunks": args.max_chunks}
    source = "sample" if args.sample else "llm"
    commands.questions(ctx, args.corpus_run, source=source, options=options)


def _export_command(args: argparse.Namespace, ctx: commands.Context) -> None:
    """`export`: a question set as CSV, JSONL, Parquet or a datasets folder."""
    run_commands.export(
        ctx, args.qa_run, fmt=args.export_format, path=args.output, everything=args.all
    )


def dispatch(args: argparse.Namespace, ctx: commands.Context) -> None:
    """Run the chosen command."""
    c = args.command
    if c == "loop":
        run_loop(ctx, args.config)
    elif c == "ingest":
        _ingest_command(args, ctx)
    elif c == "questions":
        _questions_command(args, ctx)
    elif c == "import":
        _import_command(args, ctx)
    elif c == "finetune":
        options = _given(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_seq_length=args.max_seq_length,
            matryoshka_dims=tuple(args.dims) if args.dims else None,
            loss=args.loss,
            mini_batch_size=args.mini_batch_size,
            hard_negatives=args.hard_negatives or None,
            num_negatives=args.num_negatives,
            name=args.name or None,
            source_weights=parse_weights(args.source_weight) or None,
        )
        commands.finetune(ctx, args.qa_run, options=options, base=args.base)
    elif c == "crossfit":
        crossfit_cli.crossfit(ctx, args)
    elif c == "rerank-train":
        rerank_cli.rerank_train(ctx, args)
    elif c == "eval-retrieval":
        options: dict[str, Any] = {
            "include_bm25": args.bm25,
            "split": None if args.split == "all" else args.split,
            "primary_metric": args.primary_metric,
            "hybrid": args.hybrid,
            "frontier": not args.no_frontier,
            **_given(
                deploy_size=args.deploy_size,
                latency_size=args.latency_size,
                rerank_top=args.rerank_top,
            ),
        }
        if args.reranker:
            options["rerankers"] = args.reranker
        if args.dims:
            options["dims"] = tuple(args.dims)
        commands.eval_retrieval(ctx, args.qa_run, models=args.model, options=options)
    elif c == "rag-eval":
        commands.rag_eval(
            ctx,
            args.qa_run,
            tuned=args.tuned,
            base=args.base,
            rag=_given(k=args.k, dim=args.dim, limit=args.limit, rerank_top=args.rerank_top),
            metrics=[m.strip() for m in args.metrics.split(",") if m.strip()]
            if args.metrics
            else None,
            repeats=args.repeats,
            strictness=args.strictness,
            judge_url=args.judge_url,
            judge_model=args.judge_model,
            hybrid=args.hybrid,
            reranker=args.reranker,
        )
    elif c == "compare":
        run_commands.compare(ctx, args.runs)
    elif c == "report":
        run_commands.report(
            ctx, args.runs, html=args.html, zip_path=args.zip_path, title=args.title
        )
    elif c == "delete":
        run_commands.delete(ctx, args.run, yes=args.yes)
    elif c == "runs":
        run_commands.runs(ctx, args.kind)
    elif c == "cache":
        run_commands.cache(ctx, clear=args.clear)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    apply_offline_env()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    ctx = commands.Context(Printer(args.quiet), Output(args.format, args.quiet))
    try:
        getattr(args, "handler", dispatch)(args, ctx)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RagbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def console() -> None:
    """The `ragbench` console script."""
    sys.exit(main())
