"""The Documents stage: uploaded files -> a corpus run; a corpus run -> a Chroma collection.

A corpus run holds:
- `files/<name>`: the original bytes of every file that went in,
- `documents.json`: one report per uploaded file (ok or skipped, with the reason),
- `chunks.jsonl`: the chunks (`core.documents.corpus`).

Runs are immutable: adding or deleting a document makes a new corpus run (its manifest's
config names the run it was derived from). One bad file never stops the others; it is skipped
with a reason. A failed or stopped build marks its run so and never touches earlier runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from core.config import SAMPLE_DIR, ChromaSettings
from core.documents.chunking import ChunkingConfig, chunk_documents
from core.documents.corpus import save_chunks
from core.documents.parsing import (
    DEFAULT_MAX_BYTES,
    ParsedDocument,
    count_pages,
    doc_id_for,
    parse_file,
    sanitize_filename,
)
from core.errors import ConfigError, InputError, RunError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.runs.folders import Run, create_run, load_run, write_bytes_atomic
from core.runs.guard import stage_run

if TYPE_CHECKING:
    from core.documents.vector_store import IndexReport
    from core.embeddings import ModelSpec

logger = logging.getLogger(__name__)

DOCUMENTS_FILE = "documents.json"
FILES_DIR = "files"
SAMPLE_PDF = SAMPLE_DIR / "debian-faq.en.pdf"


@dataclass(frozen=True)
class UploadedFile:
    """A file as uploaded: its name (unsanitised) and bytes."""

    name: str
    data: bytes


class FileReport(BaseModel):
    """What happened to one uploaded file."""

    name: str  # sanitised, unique within the corpus run; the name under files/
    original_name: str
    status: Literal["ok", "skipped"]
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)
    doc_id: str = ""
    kind: str = ""
    size_bytes: int = 0
    pages: int = 0
    chars: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class CorpusBuildResult:
    """A finished corpus run and the per-file reports."""

    run: Run
    files: list[FileReport]
    n_chunks: int
    duplicates_removed: int
    warnings: list[str]
    reused: bool = False  # an earlier run of the same files and settings, no new run made

    @property
    def ok_files(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "ok"]

    @property
    def skipped_files(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "skipped"]


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    n = 2
    while True:
        candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
        if candidate not in taken:
            return candidate
        n += 1


def parse_files(
    files: list[UploadedFile],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[list[ParsedDocument], list[FileReport]]:
    """Parse each file; a file that fails is reported as skipped and the others go on.

    Progress counts pages (a PDF's page count, 1 for other files). Two files with the same
    content keep the first; two different files with the same name get `name (2).ext`.
    """
    totals = [count_pages(f.name, f.data) for f in files]
    tracker = ProgressTracker("parsing", sum(totals), on_progress, should_stop)
    tracker.report("reading files")
    docs: list[ParsedDocument] = []
    reports: list[FileReport] = []
    taken: set[str] = set()
    seen_docs: dict[str, str] = {}
    for index, (upload, expected) in enumerate(zip(files, totals, strict=True)):
        label = f"file {index + 1}/{len(files)}"
        pages_done = 0

        def on_page(done: int, total: int, _label: str = label) -> None:
            nonlocal pages_done
            step = done - pages_done
            pages_done = done
            tracker.advance(step, f"{_label} · page {done}/{total}")

        try:
            doc = parse_file(upload.name, upload.data, max_bytes=max_bytes, on_page=on_page)
        except InputError as exc:
            name = _unique_name(sanitize_filename(upload.name), taken)
            reports.append(
                FileReport(
                    name=name,
                    original_name=upload.name,
                    status="skipped",
                    reason=str(exc),
                    size_bytes=len(upload.data),
                )
            )
            logger.info("skipped %s: %s", upload.name, exc)
        else:
            if doc.doc_id in seen_docs:
                reports.append(
                    FileReport(
                        name=doc.source,
                        original_name=upload.name,
                        status="skipped",
                        reason=f"{doc.source}: same content as {seen_docs[doc.doc_id]}.",
                        doc_id=doc.doc_id,
                        size_bytes=doc.size_bytes,
                    )
                )
            else:
                name = _unique_name(doc.source, taken)
                taken.add(name)
                if name != doc.source:
                    doc = ParsedDocument(
                        source=name,
                        doc_id=doc.doc_id,
                        kind=doc.kind,
                        pages=doc.pages,
                        size_bytes=doc.size_bytes,
                        warnings=(*doc.warnings, f"renamed to {name!r}: the name was taken"),
                    )
                seen_docs[doc.doc_id] = name
                docs.append(doc)
                reports.append(
                    FileReport(
                        name=name,
                        original_name=upload.name,
                        status="ok",
                        warnings=list(doc.warnings),
                        doc_id=doc.doc_id,
                        kind=doc.kind,
                        size_bytes=doc.size_bytes,
                        pages=doc.n_pages,
                        chars=doc.n_chars,
                    )
                )
        if expected > pages_done:  # rejected files and failures still count as read
            tracker.advance(expected - pages_done, f"{label} · {upload.name}")
    return docs, reports


def build_corpus(
    files: list[UploadedFile],
    config: ChunkingConfig | None = None,
    *,
    name: str = "",
    derived_from: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    tokenizer: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """Parse and chunk the files into a new corpus run.

    Files that cannot be used are skipped with a reason in `documents.json`. Raises InputError,
    before any run is made, when no file could be used.
    """
    config = config or ChunkingConfig()
    if not files:
        raise ConfigError("No files to build a corpus from.", fix="upload at least one file")
    # Parsed before the run exists: files that cannot be used refuse the stage and leave no run.
    docs, reports = parse_files(
        files, max_bytes=max_bytes, on_progress=on_progress, should_stop=should_stop
    )
    if not docs:
        reasons = "; ".join(r.reason.rstrip(" .") for r in reports)
        raise InputError("None of the files could be used.", found=reasons)
    run = create_run(
        "corpus",
        name=name,
        config={
            "chunking": config.to_dict(),
            "max_bytes": max_bytes,
            "derived_from": derived_from,
            "files": files_fingerprint(files),
        },
    )
    run.set_status("running")
    with stage_run(run):
        result = chunk_documents(
            docs, config, tokenizer=tokenizer, on_progress=on_progress, should_stop=should_stop
        )
        for report in reports:
            if report.status == "ok":
                report.chunks = result.per_doc.get(report.doc_id, 0)
                if report.chunks == 0:
                    report.warnings.append("all of its chunks duplicate other documents")
        _store_originals(run, files, reports)
        save_chunks(run, result.chunks)
        run.write_json(DOCUMENTS_FILE, [r.model_dump() for r in reports])
    run.set_status(
        "done",
        n_documents=len(docs),
        n_skipped=sum(r.status == "skipped" for r in reports),
        n_pages=sum(d.n_pages for d in docs),
        n_chars=sum(d.n_chars for d in docs),
        n_chunks=len(result.chunks),
        duplicates_removed=result.duplicates_removed,
    )
    return CorpusBuildResult(
        run=run,
        files=reports,
        n_chunks=len(result.chunks),
        duplicates_removed=result.duplicates_removed,
        warnings=result.warnings,
    )


def files_fingerprint(files: list[UploadedFile]) -> list[str]:
    """Each file's name and SHA-256, in upload order: what makes two uploads the same corpus
    (a name decides how a file is parsed, and the order which copy of a duplicate chunk stays)."""
    return [f"{f.name}:{hashlib.sha256(f.data).hexdigest()}" for f in files]


def identical_corpus(
    files: list[UploadedFile],
    config: ChunkingConfig | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Run | None:
    """The newest finished corpus run built from exactly these files (names, bytes and order)
    with these settings, so it holds the very chunks a new build would make; or None. Runs made
    before files were fingerprinted are never matched."""
    from core.runs.folders import list_runs

    if not files:
        return None
    want = files_fingerprint(files)
    settings = (config or ChunkingConfig()).to_dict()
    for run in list_runs("corpus"):  # newest first
        cfg = run.manifest.config
        if run.manifest.status != "done":
            continue
        if cfg.get("chunking") != settings or cfg.get("max_bytes", DEFAULT_MAX_BYTES) != max_bytes:
            continue
        if cfg.get("files") == want:
            return run
    return None


def _store_originals(run: Run, files: list[UploadedFile], reports: list[FileReport]) -> None:
    """Write each accepted file's bytes under files/ (names are sanitised and unique)."""
    data_by_id = {doc_id_for(f.data): f.data for f in files}
    for report in reports:
        if report.status == "ok":
            path = run.artifact(f"{FILES_DIR}/{report.name}")  # refuses names leaving the run
            write_bytes_atomic(path, data_by_id[report.doc_id])


def load_documents(run: Run | str) -> list[FileReport]:
    """The per-file reports of a corpus run."""
    run = load_run(run) if isinstance(run, str) else run
    if run.kind != "corpus":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a corpus run.")
    return [FileReport.model_validate(r) for r in run.read_json(DOCUMENTS_FILE)]


def corpus_files(run: Run | str) -> list[UploadedFile]:
    """The original files of a corpus run's accepted documents (in upload order)."""
    run = load_run(run) if isinstance(run, str) else run
    files = []
    for report in load_documents(run):
        if report.status != "ok":
            continue
        path = run.artifact(f"{FILES_DIR}/{report.name}")
        if not path.exists():
            raise RunError(
                f"Corpus run {run.id} lacks its copy of {report.name}.",
                fix="rebuild the corpus from the original files",
            )
        files.append(UploadedFile(report.name, path.read_bytes()))
    return files


def corpus_settings(run: Run) -> tuple[ChunkingConfig, int]:
    """The chunking config and size limit of a corpus run built from files."""
    if run.kind != "corpus" or not run.artifact(FILES_DIR).is_dir():
        raise RunError(
            f"Run {run.id} has no original files (it was not built from uploaded documents), "
            "so documents cannot be added to it or deleted from it.",
            fix="build a new corpus from files on the Documents page",
        )
    cfg = run.manifest.config
    return (
        ChunkingConfig.from_dict(cfg.get("chunking") or {}),
        int(cfg.get("max_bytes") or DEFAULT_MAX_BYTES),
    )


def add_documents(
    corpus_run_id: str,
    files: list[UploadedFile],
    *,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """A new corpus run: the documents of `corpus_run_id` plus `files`, chunked the same way.
    Files the corpus already holds (the same bytes) are left out; when that leaves none, the
    request is refused (InputError) and no run is made."""
    base = load_run(corpus_run_id)
    config, max_bytes = corpus_settings(base)
    files = new_files(base, files)
    return build_corpus(
        corpus_files(base) + files,
        config,
        name=name or f"{base.manifest.name} + {len(files)} file(s)",
        derived_from=base.id,
        max_bytes=max_bytes,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def new_files(base: Run, files: list[UploadedFile]) -> list[UploadedFile]:
    """The files whose bytes corpus run `base` does not hold yet; InputError when none is new."""
    held = {hashlib.sha256(f.data).hexdigest() for f in corpus_files(base)}
    fresh = [f for f in files if hashlib.sha256(f.data).hexdigest() not in held]
    if files and not fresh:
        raise InputError(
            f"Corpus run {base.id} already holds the {len(files)} uploaded file(s).",
            found=", ".join(f.name for f in files),
            fix="upload files it does not hold yet, or keep using this corpus run",
        )
    return fresh


def remove_documents(
    corpus_run_id: str,
    names: list[str],
    *,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """A new corpus run without the named documents (names or doc ids); the old run stays."""
    base = load_run(corpus_run_id)
    config, max_bytes = corpus_settings(base)
    reports = {r.name: r for r in load_documents(base) if r.status == "ok"}
    wanted = set(names)
    unknown = wanted - set(reports) - {r.doc_id for r in reports.values()}
    if unknown:
        raise InputError(
            f"Corpus run {base.id} has no document {sorted(unknown)[0]!r}.",
            fix=f"pick one of {', '.join(sorted(reports))}",
        )
    keep = [
        f
        for f in corpus_files(base)
        if f.name not in wanted and reports[f.name].doc_id not in wanted
    ]
    if not keep:
        raise InputError(
            "Deleting these documents would leave the corpus empty.",
            fix="build a new corpus instead",
        )
    return build_corpus(
        keep,
        config,
        name=name or f"{base.manifest.name} - {len(wanted)} doc(s)",
        derived_from=base.id,
        max_bytes=max_bytes,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def sample_files() -> list[UploadedFile]:
    """The bundled sample corpus as an upload."""
    if not SAMPLE_PDF.exists():
        raise InputError(f"The sample corpus {SAMPLE_PDF} is missing.", fix="restore data/sample")
    return [UploadedFile(SAMPLE_PDF.name, SAMPLE_PDF.read_bytes())]


def ingest_sample_corpus(
    config: ChunkingConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """A corpus run from the bundled sample, the Debian FAQ (73-page PDF)."""
    return build_corpus(
        sample_files(),
        config,
        name="Sample: Debian FAQ",
        on_progress=on_progress,
        should_stop=should_stop,
    )


def index_corpus_run(
    corpus_run_id: str,
    model_spec: ModelSpec | None = None,
    dim: int | None = None,
    settings: ChromaSettings | None = None,
    *,
    model: Any = None,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> IndexReport:
    """Index a corpus run into Chroma for a model (loaded here unless given) and dimension."""
    from core.documents.vector_store import index_corpus
    from core.embeddings import ModelSpec, load_model

    model_spec = model_spec or ModelSpec()
    run = load_run(corpus_run_id)
    if run.kind != "corpus" or run.manifest.status != "done":
        raise RunError(
            f"Run {corpus_run_id} is not a finished corpus run ({run.kind}, {run.manifest.status}).",
            fix="pick a corpus run whose status is done",
        )
    if model is None:
        model = load_model(model_spec, device=device)
    return index_corpus(
        corpus_run_id,
        model,
        model_spec,
        dim,
        settings or ChromaSettings(),
        on_progress=on_progress,
        should_stop=should_stop,
    )
