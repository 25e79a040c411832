"""Headless CLI over core: run any stage, or the whole loop from a TOML config file.

    python -m core loop data/sample/loop.toml
    python -m core ingest docs/*.pdf --name handbook
    python -m core questions CORPUS_RUN --sample
    python -m core finetune QA_RUN --epochs 3
    python -m core eval-retrieval QA_RUN --model default --model run:MODEL_RUN
    python -m core runs

It writes the same runs the UI reads. Exit codes: 0 success, 1 a stage failed (the message says
what, what was found and the fix), 2 bad usage or config, 130 interrupted. Progress goes to
stderr; results (run ids, figures) to stdout, so a CI job can capture them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from core.config import apply_offline_env, chroma_settings_from_env, llm_settings_from_env
from core.errors import ConfigError, RagbenchError
from core.progress import ProgressEvent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Printer:
    """on_progress for terminals: one line per stage, updated at most every half second."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._last = 0.0
        self._stage = ""

    def __call__(self, event: ProgressEvent) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if event.stage == self._stage and now - self._last < 0.5 and not finished:
            return
        self._stage, self._last = event.stage, now
        total = f"/{event.total}" if event.total else ""
        eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None and not finished else ""
        print(
            f"[{event.stage}] {event.done}{total}{eta} {event.message}", file=sys.stderr, flush=True
        )


def _plain(value: Any) -> Any:
    """JSON-ready: numpy and pandas scalars to Python, NaN and NA to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy scalars
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if str(value) in ("<NA>", "NaT"):
        return None
    return str(value)


def _out(obj: dict[str, Any]) -> None:
    print(json.dumps(_plain(obj), allow_nan=False), flush=True)


def parse_model(text: str) -> Any:
    """'default', 'run:ID', 'hub:org/name' or 'local:/path' -> ModelSpec."""
    from core.embeddings import ModelSpec

    if text in ("", "default", "base"):
        return ModelSpec()
    source, _, ref = text.partition(":")
    if source not in ("run", "hub", "local") or not ref:
        raise ConfigError(
            f"Model {text!r} is not understood.",
            fix="use default, run:<model run id>, hub:<org/name> or local:<folder>",
        )
    return ModelSpec(source=source, ref=ref)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- stages


def stage_ingest(
    paths: list[str], *, name: str, chunking: dict[str, Any], index: bool, progress: _Printer
) -> str:
    """Parse, chunk (and by default index) files or the sample corpus; returns the corpus run id."""
    from core.documents.chunking import ChunkingConfig
    from core.documents.stage import (
        UploadedFile,
        build_corpus,
        index_corpus_run,
        ingest_sample_corpus,
    )

    config = ChunkingConfig(**chunking) if chunking else None
    if not paths or paths == ["sample"]:
        result = ingest_sample_corpus(config, on_progress=progress)
    else:
        files: list[UploadedFile] = []
        for raw in paths:
            path = Path(raw)
            targets = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for target in targets:
                if not target.exists():
                    raise ConfigError(f"{target} does not exist.")
                files.append(UploadedFile(name=target.name, data=target.read_bytes()))
        result = build_corpus(files, config, name=name, on_progress=progress)
    for report in result.skipped_files:
        print(f"skipped {report.name}: {report.reason}", file=sys.stderr)
    run_id = result.run.id
    if index:
        index_corpus_run(run_id, settings=chroma_settings_from_env(), on_progress=progress)
    _out(
        {
            "stage": "ingest",
            "corpus_run": run_id,
            "files_ok": len(result.ok_files),
            "files_skipped": len(result.skipped_files),
            "chunks": result.n_chunks,
        }
    )
    return run_id


def stage_questions(
    corpus_run: str, *, source: str, options: dict[str, Any], progress: _Printer
) -> str:
    """The hand-written sample set, or LLM generation with the gate; returns the qa run id."""
    if source == "sample":
        from core.questions.sample import load_sample_qa

        run = load_sample_qa(corpus_run)
        _out({"stage": "questions", "qa_run": run.id, "source": "sample", **run.manifest.summary})
        return run.id
    if source != "llm":
        raise ConfigError(f"Question source {source!r} is not understood.", fix="use sample or llm")
    from core.llm.client import make_llm
    from core.questions.generation import GenerationConfig, generate_question_run

    llm = make_llm(llm_settings_from_env())
    config = GenerationConfig(**options)
    result = generate_question_run(corpus_run, llm, config, on_progress=progress)
    _out(
        {
            "stage": "questions",
            "qa_run": result.run.id,
            "source": "llm",
            "llm": llm.label,
            **result.run.manifest.summary,
        }
    )
    return result.run.id


def stage_finetune(qa_run: str, *, options: dict[str, Any], base: str, progress: _Printer) -> str:
    """Train in the foreground (same code as the background job); returns the model run id."""
    from core.finetune.artifacts import read_metrics
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune
    from core.runs.folders import load_run

    name = options.pop("name", "")
    cfg = FinetuneConfig(qa_run_id=qa_run, base_model=parse_model(base), **options)
    run = create_finetune_run(cfg, name=name)
    print(f"[finetune] model run {run.id}", file=sys.stderr, flush=True)
    # The Hugging Face trainer prints its log dicts to stdout; keep stdout for results only.
    with contextlib.redirect_stdout(sys.stderr):
        status = run_finetune(run.id)
    run = load_run(run.id)
    if status != "done":
        raise RagbenchError(f"Fine-tune {run.id} ended {status}.", found=run.manifest.error or "")
    _out({"stage": "finetune", "model_run": run.id, "status": status, "metrics": read_metrics(run)})
    return run.id


def stage_eval_retrieval(
    qa_run: str, *, models: list[str], options: dict[str, Any], progress: _Printer
) -> str:
    """Base vs tuned retrieval per dim with CIs; returns the retrieval_eval run id. The verdicts
    (core.evaluation.verdict) go to stderr as text and to stdout in the JSON result."""
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval
    from core.evaluation.verdict import deltas_display

    specs = tuple(parse_model(m) for m in (models or ["default"]))
    config = RetrievalEvalConfig(qa_run_id=qa_run, models=specs, **options)
    result = evaluate_retrieval(
        config, chroma_settings=chroma_settings_from_env(), on_progress=progress
    )
    metrics = result.metrics
    headline = (
        metrics[metrics["metric"].isin(["ndcg@10", "hit_rate@5"])] if len(metrics) else metrics
    )
    primary = (
        result.deltas[result.deltas["metric"] == result.primary_metric]
        if len(result.deltas)
        else result.deltas
    )
    headlines = result.headlines()
    if not progress.quiet:
        print(f"[eval-retrieval] gold chunks: {result.gold_summary()}", file=sys.stderr)
        for h in headlines:
            print(f"[eval-retrieval] verdict: {h.text}", file=sys.stderr)
        if len(primary):
            table = deltas_display(primary, confidence=result.confidence)
            print(
                table.drop(columns=["warning"]).to_string(index=False), file=sys.stderr, flush=True
            )
    delta_columns = [
        "model",
        "dim",
        "metric",
        "family",
        "delta",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "significant",
        "direction",
        "verdict",
        "mde",
        "n_needed",
    ]
    _out(
        {
            "stage": "eval-retrieval",
            "retrieval_eval_run": result.run_id,
            "corpus_size": result.corpus_size,
            "n_queries": result.n_queries,
            "gold_counts": result.gold_counts,
            "primary_metric": result.primary_metric,
            "figures": headline[["model", "dim", "metric", "value", "ci_low", "ci_high"]].to_dict(
                "records"
            ),
            "verdicts": [h.to_dict() for h in headlines],
            "deltas": primary[delta_columns].to_dict("records") if len(primary) else [],
            "warnings": result.warnings,
        }
    )
    return result.run_id


def stage_list_runs(kind: str | None) -> None:
    """Print every run, newest first."""
    from core.runs.folders import list_runs

    for run in list_runs(kind):
        _out(
            {
                "id": run.id,
                "kind": run.kind,
                "status": run.manifest.status,
                "name": run.manifest.name,
                "parents": run.manifest.parents,
                "summary": run.manifest.summary,
            }
        )


def run_loop(config_path: Path, progress: _Printer) -> dict[str, str]:
    """The whole loop from one TOML file; returns the run id of each stage."""
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the loop config {config_path}.", found=str(exc)) from exc
    docs = config.get("documents", {})
    ids: dict[str, str] = {}
    ids["corpus"] = stage_ingest(
        docs.get("paths", ["sample"]),
        name=docs.get("name", ""),
        chunking=docs.get("chunking", {}),
        index=docs.get("index", True),
        progress=progress,
    )
    q = config.get("questions", {})
    ids["qa"] = stage_questions(
        ids["corpus"],
        source=q.get("source", "sample"),
        options=q.get("generation", {}),
        progress=progress,
    )
    models = ["default"]
    ft = config.get("finetune", {})
    if ft.get("enabled", True):
        ids["model"] = stage_finetune(
            ids["qa"],
            options=ft.get("options", {}),
            base=ft.get("base", "default"),
            progress=progress,
        )
        models.append(f"run:{ids['model']}")
    ev = config.get("retrieval_eval", {})
    if ev.get("enabled", True):
        ids["retrieval_eval"] = stage_eval_retrieval(
            ids["qa"], models=models, options=ev.get("options", {}), progress=progress
        )
    _out({"stage": "loop", "runs": ids})
    return ids


# --------------------------------------------------------------------------- argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("loop", help="run the whole loop from a TOML config")
    p.add_argument("config", type=Path)

    p = sub.add_parser("ingest", help="parse, chunk and index files (or 'sample')")
    p.add_argument("paths", nargs="*", default=["sample"])
    p.add_argument("--name", default="")
    p.add_argument("--strategy", choices=["recursive", "token", "markdown"])
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--chunk-overlap", type=int)
    p.add_argument("--no-index", action="store_true", help="skip embedding into Chroma")

    p = sub.add_parser("questions", help="question set for a corpus run")
    p.add_argument("corpus_run")
    p.add_argument("--sample", action="store_true", help="use the hand-written sample set")
    p.add_argument("--n-per-chunk", type=int, default=2)
    p.add_argument("--max-chunks", type=int, default=0)

    p = sub.add_parser("finetune", help="fine-tune in the foreground")
    p.add_argument("qa_run")
    p.add_argument("--base", default="default")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--max-seq-length", type=int)

    p = sub.add_parser("eval-retrieval", help="base vs tuned retrieval evaluation")
    p.add_argument("qa_run")
    p.add_argument(
        "--model", action="append", default=[], help="default | run:ID | hub:ID | local:PATH"
    )
    p.add_argument("--dims", type=int, nargs="*")
    p.add_argument("--bm25", action="store_true")
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "validation", "train", "all"],
        help="the questions to evaluate (all: every accepted question)",
    )
    p.add_argument(
        "--primary-metric",
        default="ndcg@10",
        help="the metric whose Holm-adjusted tests across dims decide the verdict",
    )

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--kind")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    apply_offline_env()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    progress = _Printer(args.quiet)
    try:
        if args.command == "loop":
            run_loop(args.config, progress)
        elif args.command == "ingest":
            chunking = {
                k: v
                for k, v in {
                    "strategy": args.strategy,
                    "chunk_size": args.chunk_size,
                    "chunk_overlap": args.chunk_overlap,
                }.items()
                if v is not None
            }
            stage_ingest(
                args.paths,
                name=args.name,
                chunking=chunking,
                index=not args.no_index,
                progress=progress,
            )
        elif args.command == "questions":
            stage_questions(
                args.corpus_run,
                source="sample" if args.sample else "llm",
                options={"n_per_chunk": args.n_per_chunk, "max_chunks": args.max_chunks},
                progress=progress,
            )
        elif args.command == "finetune":
            options = {
                k: v
                for k, v in {
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "learning_rate": args.learning_rate,
                    "max_seq_length": args.max_seq_length,
                }.items()
                if v is not None
            }
            stage_finetune(args.qa_run, options=options, base=args.base, progress=progress)
        elif args.command == "eval-retrieval":
            options: dict[str, Any] = {
                "include_bm25": args.bm25,
                "split": None if args.split == "all" else args.split,
                "primary_metric": args.primary_metric,
            }
            if args.dims:
                options["dims"] = tuple(args.dims)
            stage_eval_retrieval(args.qa_run, models=args.model, options=options, progress=progress)
        elif args.command == "runs":
            stage_list_runs(args.kind)
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
