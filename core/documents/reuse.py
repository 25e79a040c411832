"""Building the same corpus twice makes no copy: a build, the sample or an addition whose files
and settings match a finished corpus run (core.documents.stage.identical_corpus) returns that run,
marked `reused`, so its question sets, models and indexes stay the ones the user works with."""

from __future__ import annotations

from core.documents.chunking import ChunkingConfig
from core.documents.parsing import DEFAULT_MAX_BYTES
from core.documents.stage import (
    CorpusBuildResult,
    UploadedFile,
    add_documents,
    build_corpus,
    corpus_files,
    corpus_settings,
    identical_corpus,
    ingest_sample_corpus,
    load_documents,
    new_files,
    sample_files,
)
from core.progress import ProgressCallback, StopCheck
from core.runs.folders import Run, load_run


def existing_build(run: Run) -> CorpusBuildResult:
    """A finished corpus run as the result of a build that made nothing new."""
    summary = run.manifest.summary
    return CorpusBuildResult(
        run=run,
        files=load_documents(run),
        n_chunks=int(summary.get("n_chunks", 0)),
        duplicates_removed=int(summary.get("duplicates_removed", 0)),
        warnings=[],
        reused=True,
    )


def build_or_reuse(
    files: list[UploadedFile],
    config: ChunkingConfig | None = None,
    *,
    name: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """The corpus run of exactly these files and settings if one is finished, else a new one."""
    same = identical_corpus(files, config, max_bytes)
    if same is not None:
        return existing_build(same)
    return build_corpus(
        files,
        config,
        name=name,
        max_bytes=max_bytes,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def sample_or_reuse(
    config: ChunkingConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """The sample corpus run with these settings if one is finished, else a new one."""
    same = identical_corpus(sample_files(), config)
    if same is not None:
        return existing_build(same)
    return ingest_sample_corpus(config, on_progress=on_progress, should_stop=should_stop)


def add_or_reuse(
    corpus_run_id: str,
    files: list[UploadedFile],
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> CorpusBuildResult:
    """The documents of a corpus run plus the uploaded files it does not hold yet (refused when
    it holds them all): an existing run of that whole set if one is finished, else a new one."""
    base = load_run(corpus_run_id)
    config, max_bytes = corpus_settings(base)
    fresh = new_files(base, files)
    same = identical_corpus(corpus_files(base) + fresh, config, max_bytes)
    if same is not None:
        return existing_build(same)
    return add_documents(corpus_run_id, fresh, on_progress=on_progress, should_stop=should_stop)
