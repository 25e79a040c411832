"""The CLI's commands, one function each, calling the same core functions as the pages (with
their validation and messages). Each prints its result through `Context.out` and returns the id
of the run it made, when it made one."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from core.cli.output import Output, Printer
from core.cli.render import (
    frame_text,
    pairs_text,
    preview_text,
    ragas_text,
    retrieval_json,
    retrieval_text,
)
from core.config import chroma_settings_from_env, llm_settings_from_env
from core.errors import ConfigError, RagbenchError


@dataclass
class Context:
    """What every command shares: progress on stderr and where results go."""

    progress: Printer
    out: Output


def parse_model(text: str) -> Any:
    """'default', 'run:ID' (or a bare model run id), 'hub:org/name' or 'local:/path' -> ModelSpec."""
    from core.embeddings import ModelSpec

    if text in ("", "default", "base"):
        return ModelSpec()
    if text.startswith("model-") and ":" not in text:
        return ModelSpec(source="run", ref=text)
    source, _, ref = text.partition(":")
    if source not in ("run", "hub", "local") or not ref:
        raise ConfigError(
            f"Model {text!r} is not understood.",
            fix="use default, run:<model run id>, hub:<org/name> or local:<folder>",
        )
    return ModelSpec(source=source, ref=ref)  # type: ignore[arg-type]


def ingest(
    ctx: Context,
    paths: list[str],
    *,
    name: str = "",
    chunking: dict[str, Any],
    index: bool,
    reuse: bool = False,
) -> str:
    """Parse, chunk (and by default index) files or the sample corpus; the corpus run id. With
    `reuse`, a finished run of the same files and settings is used instead of a new one."""
    from core.documents.chunking import ChunkingConfig
    from core.documents.stage import (
        UploadedFile,
        build_corpus,
        identical_corpus,
        index_corpus_run,
        sample_files,
    )

    config = ChunkingConfig(**chunking) if chunking else None
    sample = not paths or paths == ["sample"]
    files: list[UploadedFile] = sample_files() if sample else []
    for raw in [] if sample else paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{path} does not exist.", fix="give files or folders that exist")
        targets = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += [UploadedFile(name=t.name, data=t.read_bytes()) for t in targets]
    same = identical_corpus(files, config)
    if same is not None and reuse:
        if index:
            index_corpus_run(same.id, settings=chroma_settings_from_env(), on_progress=ctx.progress)
        ctx.out.emit(
            {"stage": "ingest", "corpus_run": same.id, "reused": True},
            f"corpus run {same.id} has exactly these files and settings: reused",
        )
        return same.id
    if same is not None:  # a note, shown even with --quiet
        print(
            f"note: corpus run {same.id} has exactly these files and settings "
            "(--reuse uses it instead of a new run)",
            file=sys.stderr,
            flush=True,
        )
    result = build_corpus(
        files,
        config,
        name=name or ("Sample: Debian FAQ" if sample else ""),
        on_progress=ctx.progress,
    )
    run_id = result.run.id
    if index:
        index_corpus_run(run_id, settings=chroma_settings_from_env(), on_progress=ctx.progress)
    skipped = [{"file": r.name, "reason": r.reason} for r in result.skipped_files]
    for s in skipped:  # a warning, shown even with --quiet
        print(f"skipped {s['file']}: {s['reason']}", file=sys.stderr, flush=True)
    ctx.out.emit(
        {
            "stage": "ingest",
            "corpus_run": run_id,
            "files_ok": len(result.ok_files),
            "files_skipped": len(result.skipped_files),
            "skipped": skipped,
            "chunks": result.n_chunks,
            "reused": False,
        },
        f"corpus run {run_id}: {len(result.ok_files)} file(s), {result.n_chunks} chunks",
    )
    return run_id


def questions(ctx: Context, corpus_run: str, *, source: str, options: dict[str, Any]) -> str:
    """The hand-written sample set, or LLM generation through the gate; the qa run id."""
    if source == "sample":
        from core.questions.sample import load_sample_qa

        run = load_sample_qa(corpus_run)
        summary = run.manifest.summary
        ctx.out.emit(
            {"stage": "questions", "qa_run": run.id, "source": "sample", **summary},
            f"qa run {run.id}: {summary['n_accepted']} sample question(s) matched to chunks",
        )
        return run.id
    if source != "llm":
        raise ConfigError(f"Question source {source!r} is not understood.", fix="use sample or llm")
    from core.llm.client import make_llm
    from core.questions.generation import GenerationConfig, generate_question_run

    llm = make_llm(llm_settings_from_env())
    result = generate_question_run(
        corpus_run, llm, GenerationConfig(**options), on_progress=ctx.progress
    )
    gate = result.gate
    ctx.out.emit(
        {
            "stage": "questions",
            "qa_run": result.run.id,
            "source": "llm",
            "llm": llm.label,
            **result.run.manifest.summary,
        },
        f"qa run {result.run.id}: {gate['accepted']} accepted, {gate['rejected']} rejected "
        f"by the gate ({', '.join(f'{k} {v}' for k, v in gate.get('by_reason', {}).items())})",
    )
    return result.run.id


def _near_duplicate_model(check: bool) -> Any:
    """The default embedding model for tying near-duplicate questions into one split (None when
    the check is turned off)."""
    if not check:
        return None
    from core.embeddings import ModelSpec, load_model

    return load_model(ModelSpec())


def document_pairs(
    ctx: Context,
    corpus_run: str,
    *,
    options: dict[str, Any],
    dry_run: bool = False,
    near_duplicates: bool = True,
) -> str | None:
    """Heading and cloze pairs from a corpus run's documents (no LLM), through the gate and the
    split; the qa run id (None for a dry run, which saves nothing)."""
    from core.questions.from_documents import (
        DocumentPairsConfig,
        preview_document_pairs,
        save_document_pairs,
    )

    options = dict(options)
    name = options.pop("name", "")
    config = DocumentPairsConfig.from_dict(options)
    preview = preview_document_pairs(
        corpus_run, config, model=_near_duplicate_model(near_duplicates), on_progress=ctx.progress
    )
    dealing = preview.dealing()
    data: dict[str, Any] = {
        "stage": "questions",
        "source": "documents",
        "config": config.to_dict(),
        "n_items": len(preview.items),
        "n_accepted": preview.n_accepted,
        "sources": preview.sources(),
        "rejected_by_reason": {r["reason"]: r["questions"] for r in preview.rejection_rows()},
        "splits": preview.splits(),
        "shares": dealing.rows(),
        "dealing_problems": dealing.problems(),
        "near_duplicates_tied": preview.gate_report.get("near_duplicates_tied"),
        "notes": preview.notes,
    }
    if dry_run:
        ctx.out.emit({**data, "qa_run": None}, pairs_text(preview) + "\n(dry run: nothing saved)")
        return None
    run = save_document_pairs(preview, name)
    ctx.out.emit({**data, "qa_run": run.id}, pairs_text(preview) + f"\nqa run {run.id}")
    return run.id


def import_questions(
    ctx: Context,
    path: str,
    *,
    corpus_run: str | None = None,
    mapping: dict[str, str | None] | None = None,
    gate: bool = True,
    split: dict[str, float] | None = None,
    dry_run: bool = False,
    near_duplicates: bool = True,
) -> str | None:
    """Import a question file (the page's import, with its guesses as defaults); the qa run id
    (None for a dry run, which saves nothing)."""
    from core.questions.columns import ColumnMapping, guess_mapping, read_table
    from core.questions.importing import import_gate_config, preview_import, save_import
    from core.questions.splits import SplitConfig

    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file} is not a file.", fix="give the path of a CSV, JSONL or Parquet file"
        )
    frame = read_table(file.name, file.read_bytes())
    given = {k: v for k, v in (mapping or {}).items() if v}
    guess = guess_mapping(list(frame.columns))
    if guess is None and not {"question", "chunk"} <= set(given):
        raise ConfigError(
            f"Cannot tell which columns of {file.name} hold the questions and the chunks.",
            found=f"columns {', '.join(map(str, frame.columns))}",
            fix="pass --question COLUMN and --chunk COLUMN",
        )
    base = guess.to_dict() if guess else {"chunk_kind": "text"}
    chosen = ColumnMapping(**{**base, **given})
    preview = preview_import(
        file.name,
        frame,
        chosen,
        corpus_run_id=corpus_run,
        split_config=SplitConfig(**(split or {})),
        gate_config=import_gate_config() if gate else None,
        model=_near_duplicate_model(near_duplicates),
    )
    dealing = preview.dealing()
    data: dict[str, Any] = {
        "stage": "import",
        "file": file.name,
        "mapping": chosen.to_dict(),
        "n_items": len(preview.items),
        "n_accepted": preview.n_accepted,
        "n_rejected": preview.n_rejected,
        "rejected_by_reason": preview.rejections(),
        "splits": preview.splits(),
        "shares": dealing.rows(),
        "dealing_problems": dealing.problems(),
        "evidence_notes": preview.evidence_notes(),
        "near_duplicates_tied": preview.near_duplicates,
        "skipped_rows": preview.skipped_rows,
    }
    if dry_run:
        ctx.out.emit({**data, "qa_run": None}, preview_text(preview) + "\n(dry run: nothing saved)")
        return None
    result = save_import(preview)
    ctx.out.emit(
        {
            **data,
            "qa_run": result.run.id,
            "corpus_run": result.corpus_run_id,
            "new_corpus": result.new_corpus,
        },
        preview_text(preview)
        + f"\nqa run {result.run.id} on "
        + ("a new " if result.new_corpus else "")
        + f"corpus run {result.corpus_run_id}",
    )
    return result.run.id


def finetune(ctx: Context, qa_run: str, *, options: dict[str, Any], base: str = "default") -> str:
    """Train in the foreground (the same code as the background job); the model run id."""
    from core.finetune.artifacts import read_metrics, validation_table
    from core.finetune.config import FinetuneConfig
    from core.finetune.control import create_finetune_run
    from core.finetune.trainer import run_finetune
    from core.runs.folders import load_run

    options = dict(options)
    name = options.pop("name", "")
    cfg = FinetuneConfig(qa_run_id=qa_run, base_model=parse_model(base), **options)
    run = create_finetune_run(cfg, name=name)
    ctx.progress.note("finetune", f"model run {run.id}")
    # Anything a library prints goes to stderr: stdout is for results only.
    with contextlib.redirect_stdout(sys.stderr):
        status = run_finetune(run.id, on_event=partial(epoch_line, ctx))
    run = load_run(run.id)
    if status != "done":
        raise RagbenchError(f"Fine-tune {run.id} ended {status}", found=run.manifest.error or "")
    metrics = read_metrics(run) or {}
    ctx.out.emit(
        {"stage": "finetune", "model_run": run.id, "status": status, "metrics": metrics},
        f"model run {run.id}: {status}; validation ndcg@10\n"
        + frame_text(validation_table(metrics)),
    )
    return run.id


def epoch_line(ctx: Context, event: dict[str, Any]) -> None:
    """One readable progress line per validation of a fine-tune (as the page charts it)."""
    if event.get("event") != "eval":
        return
    when = {"base": "base model", "final": "final"}.get(event.get("phase", ""), "")
    when = when or f"epoch {float(event.get('epoch') or 0):g}"
    scores = event.get("ndcg@10") or {}
    shown = ", ".join(
        f"{d}d {float(v):.3f}" for d, v in sorted(scores.items(), key=lambda kv: -int(kv[0]))
    )
    ctx.progress.note(
        "finetune", f"{when} (step {event.get('step', 0)}): validation ndcg@10 {shown}"
    )


def eval_retrieval(ctx: Context, qa_run: str, *, models: list[str], options: dict[str, Any]) -> str:
    """Base vs tuned retrieval per dim; the retrieval_eval run id."""
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.readiness import check_split_size
    from core.evaluation.stage import evaluate_retrieval
    from core.rerankers import parse_reranker

    specs = tuple(parse_model(m) for m in (models or ["default"]))
    if options.get("rerankers"):  # 'run:ID' texts from the command line or the loop's TOML
        options = {**options, "rerankers": tuple(map(parse_reranker, options["rerankers"]))}
    if options.get("split") == "all":  # the loop's TOML says "all" as the command line does
        options = {**options, "split": None}
    config = RetrievalEvalConfig(qa_run_id=qa_run, models=specs, **options)
    check_split_size(qa_run, config.split)  # no statistic from fewer than 2 clusters
    result = evaluate_retrieval(
        config, chroma_settings=chroma_settings_from_env(), on_progress=ctx.progress
    )
    metrics = result.metrics
    headline = metrics[metrics["metric"].isin(["ndcg@10", "hit_rate@5"])]
    primary = result.deltas[result.deltas["metric"] == result.primary_metric]
    ctx.out.emit(
        {
            "stage": "eval-retrieval",
            **retrieval_json(result),
            "figures": headline[["model", "dim", "metric", "value", "ci_low", "ci_high"]].to_dict(
                "records"
            ),
            "primary_deltas": primary.to_dict("records"),
        },
        retrieval_text(result),
    )
    return result.run_id


def _rag_metrics(metrics: list[str] | None, backend: str) -> list[str]:
    """The RAGAS metrics asked for, checked; by default the judge-free ones with the embedded
    LLM, else the default set."""
    from core.rag.metrics import DEFAULT_METRICS, METRICS, NON_LLM_METRICS

    chosen = metrics or list(NON_LLM_METRICS if backend == "embedded" else DEFAULT_METRICS)
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise ConfigError(
            f"Unknown metric(s) {', '.join(unknown)}.", fix=f"choose from {', '.join(METRICS)}"
        )
    return chosen


def _judge(llm: Any, metrics: list[str], judge_url: str, judge_model: str) -> Any:
    """The RAGAS judge: None when no chosen metric needs one, else the answering LLM, or the
    OpenAI-compatible server at `judge_url`."""
    from core.config import LLMSettings
    from core.llm.client import make_llm
    from core.rag.metrics import METRICS

    if not any(METRICS[m].needs_llm for m in metrics):
        return None
    if not judge_url:
        return llm
    return make_llm(LLMSettings(backend="openai", base_url=judge_url, model=judge_model))


def rag_eval(
    ctx: Context,
    qa_run: str,
    *,
    tuned: str | None = None,
    base: str | None = None,
    rag: dict[str, Any] | None = None,
    metrics: list[str] | None = None,
    repeats: int = 1,
    strictness: int = 3,
    judge_url: str = "",
    judge_model: str = "",
    hybrid: bool = False,
    reranker: str = "",
) -> str:
    """Answer with the base (and tuned) retriever and score with RAGAS; the ragas_eval run id.

    The answering LLM comes from the RAGBENCH_LLM_* settings (the embedded model by default);
    the judge is that same LLM unless --judge-url names another OpenAI-compatible server. With
    only judge-free metrics (the default with the embedded model) no judge is used at all.
    `hybrid` adds a retriever: the tuned (or base) model + BM25, fused by rank; `reranker`
    ('run:ID', 'local:…') another: the tuned (or base) model's top N reranked."""
    from core.embeddings import base_model_of, load_model
    from core.llm.client import make_llm
    from core.rag.answering import RagConfig
    from core.rag.job import RagEvalRequest, retriever_choices
    from core.rag.judges import SentenceTransformerEmbeddings
    from core.rag.metrics import RagasConfig
    from core.rag.results import load_ragas_eval
    from core.rag.stage import compare_retrievers
    from core.runs.folders import load_run

    settings = llm_settings_from_env()
    chosen = _rag_metrics(metrics, settings.backend)
    ragas_config = RagasConfig(metrics=tuple(chosen), repeats=repeats, strictness=strictness)
    tuned_spec = parse_model(tuned) if tuned else None
    tuned_run = load_run(tuned_spec.ref) if tuned_spec and tuned_spec.source == "run" else None
    base_spec = parse_model(base) if base else base_model_of([tuned_run])
    request = RagEvalRequest(
        qa_run_id=qa_run,
        base=base_spec,
        tuned=tuned_spec,
        hybrid=hybrid,
        rag_config=RagConfig(**(rag or {})),
        ragas_config=ragas_config,
        reranker=reranker,
    )
    request.check_reranker()  # refused before any work
    llm = make_llm(settings)
    judge = _judge(llm, chosen, judge_url, judge_model)
    retrievers = retriever_choices(request, load_model)
    base_model = retrievers[0].model
    run = compare_retrievers(
        qa_run,
        retrievers,
        llm=llm,
        judge=judge,
        embeddings=SentenceTransformerEmbeddings(
            base_model, label=f"{base_spec.label} (base model)"
        ),
        rag_config=request.rag_config,
        ragas_config=ragas_config,
        chroma=chroma_settings_from_env(),
        on_progress=ctx.progress,
    )
    result = load_ragas_eval(run, with_samples=False)
    ctx.out.emit(
        {
            "stage": "rag-eval",
            "ragas_eval_run": run.id,
            "rag_runs": result.summary.get("rag_runs", {}),
            "summary": result.summary,
        },
        ragas_text(result),
    )
    return run.id
