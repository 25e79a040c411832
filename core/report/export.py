"""The report as files: `build_report(run_ids)` renders the HTML (core.report.html) and gathers
the CSV/JSON artifacts, the comparison tables and a manifest of every run in the lineage, every
byte scrubbed of secrets (core.report.redaction) and every CSV cell safe to open in a spreadsheet
(core.spreadsheet); `report_zip` packs them."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.report.comparison import _short, compare_runs
from core.report.html import render_html
from core.report.redaction import (
    _strip_secrets,
    known_secrets,
    redact,
    redacted_manifest,
    scrub_text,
)
from core.runs.folders import Run, load_run
from core.runs.lineage import lineage_of
from core.spreadsheet import csv_bytes, safe_csv_bytes

if TYPE_CHECKING:
    from core.report.comparison import Comparison


REPORT_HTML = "report.html"


@dataclass(frozen=True)
class Report:
    """A rendered report: the HTML page and the files that go with it (path in zip -> bytes)."""

    html: str
    files: dict[str, bytes]
    run_ids: tuple[str, ...] = ()
    title: str = ""
    created_at: str = ""


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(redact(obj), indent=2, ensure_ascii=False, default=str) + "\n").encode()


def _artifact_bytes(path: Any) -> bytes:
    """An artifact for export: JSON redacted; text scrubbed of secret-looking strings; CSV with
    no cell a spreadsheet would run as a formula."""
    if path.suffix == ".json":
        return _json_bytes(json.loads(path.read_text(encoding="utf-8")))
    text = scrub_text(path.read_text(encoding="utf-8")).encode("utf-8")
    return safe_csv_bytes(text) if path.suffix == ".csv" else text


EXPORTED_ARTIFACTS = {
    "retrieval_eval": (
        "metrics.csv",
        "deltas.csv",
        "tradeoff.csv",
        "per_query.jsonl",
        "flips.json",
        "similarity.csv",
        "result.json",
    ),
    "ragas_eval": ("scores.csv", "summary.json", "usage.json"),
    "model": ("metrics.json",),
    "rag": ("samples.jsonl", "usage.json"),
}


def report_files(comparison: Comparison, lineage: Sequence[Run]) -> dict[str, bytes]:
    """The report's files: comparison tables, artifacts and redacted manifests."""
    files: dict[str, bytes] = {}
    if not comparison.retrieval.empty:
        long = comparison.retrieval.copy()
        long["metric"] = long["metric"].astype(str)
        files["comparison/retrieval_headline.csv"] = csv_bytes(long)
    if not comparison.ragas.empty:
        files["comparison/ragas_summary.csv"] = csv_bytes(comparison.ragas)
    for run in lineage:
        files[f"manifests/{run.kind}/{run.id}.json"] = _json_bytes(redacted_manifest(run))
        for name in EXPORTED_ARTIFACTS.get(run.kind, ()):
            path = run.artifact(name)
            if path.is_file():
                files[f"runs/{run.id}/{name}"] = _artifact_bytes(path)
    return files


def build_report(run_ids: Sequence[str], *, title: str = "", secrets: Iterable[str] = ()) -> Report:
    """A self-contained report of finished evaluation runs (typically one base-vs-tuned
    retrieval_eval run, optionally with its ragas_eval run): HTML with inline plotly.js plus
    CSV/JSON artifacts and redacted manifests. `secrets` are extra values (an API key typed into
    the UI) that must not appear anywhere in it."""
    comparison = compare_runs(run_ids)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    title = title or "ragbench report: " + " vs ".join(
        load_run(r).manifest.name for r in comparison.run_ids
    )
    lineage = lineage_of(comparison.run_ids)
    hidden = known_secrets(secrets)
    page = render_html(comparison, title, created_at)
    page = _strip_secrets(page.encode("utf-8"), hidden).decode("utf-8")
    files = {
        name: _strip_secrets(data, hidden)
        for name, data in report_files(comparison, lineage).items()
    }
    return Report(
        html=page,
        files=files,
        run_ids=tuple(comparison.run_ids),
        title=title,
        created_at=created_at,
    )


def report_zip(report: Report) -> bytes:
    """The report as a zip: report.html at the top, then the artifacts and manifests."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(REPORT_HTML, report.html)
        for name, data in sorted(report.files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def report_file_name(report: Report, suffix: str) -> str:
    """'ragbench-report-<run>-<date>.html' style names for downloads."""
    stamp = (report.created_at or datetime.now(UTC).isoformat())[:10]
    first = _short(report.run_ids[0]) if report.run_ids else "runs"
    return f"ragbench-report-{first}-{stamp}{suffix}"
