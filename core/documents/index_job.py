"""Indexing a corpus into Chroma as a background job: `python -m core.documents.index_job <run_id>`.

`start_indexing` (the Documents page, the CLI) makes an `index` run (parent: the corpus run; config:
the model, the dimension and where Chroma is) and starts this job. Indexing resumes by itself
(chunks already in the collection are skipped), so a stopped or failed indexing loses only the
batch in flight and indexing again finishes the rest.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from core.formatting import count_text
from core.runs.jobs import job_main

if TYPE_CHECKING:
    from core.config import ChromaSettings
    from core.embeddings import ModelSpec
    from core.progress import ProgressCallback, StopCheck
    from core.runs.folders import Run

JOB_MODULE = "core.documents.index_job"


def start_indexing(
    corpus_run_id: str,
    spec: ModelSpec | None = None,
    dim: int | None = None,
    chroma: ChromaSettings | None = None,
) -> Run:
    """Make the index run (a corpus run that is not finished is refused before any run exists)
    and embed its chunks into Chroma in the background; returns the run."""
    from core.config import ChromaSettings, chroma_env
    from core.embeddings import ModelSpec
    from core.errors import RunError
    from core.runs.folders import create_run, load_run
    from core.runs.jobs import start_job

    spec = spec or ModelSpec()
    chroma = chroma or ChromaSettings()
    corpus = load_run(corpus_run_id)
    if corpus.kind != "corpus" or corpus.manifest.status != "done":
        raise RunError(
            f"Run {corpus_run_id} is not a finished corpus run ({corpus.kind}, "
            f"{corpus.manifest.status}).",
            fix="pick a corpus run whose status is done",
        )
    where = f"server {chroma.host}:{chroma.port}" if chroma.is_server else "embedded store"
    run = create_run(
        "index",
        name=f"{spec.label} · {dim or 'native'} dims · {corpus.manifest.name or corpus.id}",
        config={"model": spec.to_dict(), "dim": dim, "store": where},
        parents={"corpus": corpus.id},
    )
    start_job(run, module=JOB_MODULE, env=chroma_env(chroma))
    return run


def index(run: Run, on_progress: ProgressCallback, should_stop: StopCheck) -> None:
    """Embed the corpus's missing chunks into the collection for the run's model and dim."""
    from core.config import chroma_settings_from_env
    from core.documents.stage import index_corpus_run
    from core.embedding_cache import default_cache
    from core.embeddings import ModelSpec
    from core.runs.guard import stage_run

    cache = default_cache()
    before = (cache.stats.hits, cache.stats.misses) if cache else (0, 0)
    run.set_status("running")
    with stage_run(run):
        report = index_corpus_run(
            run.manifest.parents["corpus"],
            ModelSpec.from_dict(run.manifest.config["model"]),
            run.manifest.config.get("dim"),
            chroma_settings_from_env(),
            on_progress=on_progress,
            should_stop=should_stop,
        )
    run.set_status(
        "done",
        collection=report.collection,
        n_added=report.n_added,
        n_skipped=report.n_skipped,
        # Of the chunks added, how many the model encoded and how many came from the cache.
        n_encoded=(cache.stats.misses - before[1]) if cache else report.n_added,
        n_from_cache=(cache.stats.hits - before[0]) if cache else 0,
        seconds=round(report.seconds, 1),
    )


def index_text(summary: dict[str, Any]) -> str:
    """How an indexing ended, from its run's summary: chunks added (embedded by the model, or
    taken from the embedding cache) and chunks the collection already held."""
    added, cached = int(summary.get("n_added", 0)), int(summary.get("n_from_cache", 0))
    encoded = int(summary.get("n_encoded", added))
    if cached:
        how = f" ({encoded} embedded, {cached} from the embedding cache)"
    else:
        how = " (embedded)" if added else ""
    return (
        f"Collection **{summary.get('collection')}**: {count_text(added, 'chunk')} added{how}, "
        f"{summary.get('n_skipped', 0)} already there ({summary.get('seconds', 0):.1f} s)."
    )


def main(argv: list[str] | None = None) -> int:
    """Index the corpus of the index run named on the command line."""
    return job_main(argv, module=JOB_MODULE, what="indexing", work=index)


if __name__ == "__main__":
    sys.exit(main())
