"""The CLI's commands over runs already made: compare, report, delete, list, and the embedding
cache. Each prints its result through `Context.out`."""

from __future__ import annotations

from pathlib import Path

from core.cli.commands import Context
from core.cli.render import comparison_text, frame_text
from core.config import chroma_settings_from_env
from core.errors import ConfigError, RagbenchError


def report(
    ctx: Context, run_ids: list[str], *, html: str | None, zip_path: str | None, title: str = ""
) -> None:
    """The self-contained HTML report (and the zip of its files) of finished evaluation runs."""
    from core.report.export import build_report, report_zip
    from core.runs.audit import record_export

    if not html and not zip_path:
        raise ConfigError("Say where the report goes.", fix="pass --html FILE and/or --zip FILE")
    built = build_report(run_ids, title=title)
    record_export(list(built.run_ids), "report (CLI)")
    written = []
    if html:
        Path(html).write_text(built.html, encoding="utf-8")
        written.append(html)
    if zip_path:
        Path(zip_path).write_bytes(report_zip(built))
        written.append(zip_path)
    ctx.out.emit(
        {"stage": "report", "runs": list(built.run_ids), "title": built.title, "files": written},
        f"report of {', '.join(built.run_ids)} written to {', '.join(written)}",
    )


def compare(ctx: Context, run_ids: list[str]) -> None:
    """Evaluation runs side by side, as the Runs page shows them."""
    from core.report.comparison import compare_runs
    from core.report.tables import headline_table

    comparison = compare_runs(run_ids)
    ctx.out.emit(
        {
            "stage": "compare",
            "runs": comparison.run_ids,
            "retrieval": headline_table(comparison.retrieval).to_dict("records"),
            "ragas": comparison.ragas.to_dict("records"),
            "verdicts": {
                rid: [h.to_dict() for h in r.headlines()]
                for rid, r in comparison.retrieval_results.items()
            },
            "warnings": comparison.warnings,
        },
        comparison_text(comparison),
    )


def delete(ctx: Context, run_id: str, *, yes: bool = False) -> None:
    """Delete a run with its dependants and their Chroma collections (only with --yes)."""
    from core.deletion import delete_with_dependants, plan_deletion
    from core.documents.vector_store import collections_of_runs

    settings = chroma_settings_from_env()
    order = plan_deletion(run_id)
    if not yes:
        try:
            collections = collections_of_runs(settings, order)
        except RagbenchError as exc:
            collections = [f"(Chroma not reachable: {exc})"]
        ctx.out.emit(
            {
                "stage": "delete",
                "deleted": False,
                "would_delete": order,
                "collections": collections,
            },
            f"would delete {len(order)} run(s): {', '.join(order)}"
            + (f"\nand {len(collections)} Chroma collection(s)" if collections else "")
            + "\nnothing deleted: pass --yes to delete them",
        )
        return
    done = delete_with_dependants(run_id, settings)
    ctx.out.emit(
        {
            "stage": "delete",
            "deleted": True,
            "runs": done.runs,
            "collections": done.collections,
            "warnings": done.warnings,
        },
        f"deleted {len(done.runs)} run(s) and {len(done.collections)} Chroma collection(s)"
        + "".join(f"\nwarning: {w}" for w in done.warnings),
    )


def cache(ctx: Context, *, clear: bool = False) -> None:
    """The embedding cache's size; with `clear`, empty it first."""
    from core.embedding_cache import clear_data_dir_cache, data_dir_cache, usage_text

    if clear:
        clear_data_dir_cache()
    usage = data_dir_cache().usage()
    ctx.out.emit(
        {
            "stage": "cache",
            "cleared": clear,
            "path": str(usage.path),
            "models": usage.models,
            "files": usage.files,
            "bytes": usage.bytes,
        },
        usage_text(usage),
    )


def runs(ctx: Context, kind: str | None) -> None:
    """Every run, newest first."""
    from core.runs.folders import RUN_KINDS, list_runs, run_rows

    if kind and kind not in RUN_KINDS:
        raise ConfigError(f"{kind!r} is not a run kind.", fix=f"use one of {', '.join(RUN_KINDS)}")
    listed = list_runs(kind)
    for run in listed:
        ctx.out.emit(
            {
                "id": run.id,
                "kind": run.kind,
                "status": run.manifest.status,
                "name": run.manifest.name,
                "parents": run.manifest.parents,
                "summary": run.manifest.summary,
            }
        )
    ctx.out.text(frame_text(run_rows(listed), empty="no runs yet"))


EXPORT_FORMATS = ("csv", "jsonl", "parquet", "hf")


def export(ctx: Context, qa_run: str, *, fmt: str, path: str, everything: bool = False) -> None:
    """A question set to PATH, as the Questions page exports it: CSV (safe to open in a
    spreadsheet), JSONL or Parquet with sentence-transformers' columns, or (hf) a Hugging Face
    `datasets` folder. Accepted questions only unless `everything`; recorded in the audit log."""
    from core.documents.corpus import load_chunks
    from core.questions.dataset import load_qa
    from core.questions.exporting import export_hf_dataset, export_qa
    from core.runs.audit import record_export
    from core.runs.folders import load_run

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}.", fix=f"use {', '.join(EXPORT_FORMATS)}")
    target = Path(path)
    if fmt == "hf" and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target} already exists and is not an empty folder.",
            fix="pass -o with a new folder for the datasets export",
        )
    items = load_qa(qa_run, accepted_only=not everything)
    corpus_id = load_run(qa_run).manifest.parents.get("corpus", "")
    texts = {c.id: c.text for c in load_chunks(corpus_id)} if corpus_id else {}
    if fmt == "hf":
        export_hf_dataset(items, texts, target)
    else:
        target.write_bytes(export_qa(items, texts, fmt))
    record_export([qa_run], f"questions as {fmt} (CLI)")
    ctx.out.emit(
        {"stage": "export", "run": qa_run, "format": fmt, "path": str(target), "n": len(items)},
        f"{len(items)} question(s) of {qa_run} written to {target} ({fmt})",
    )
