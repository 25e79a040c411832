"""Entry point of a retrieval-evaluation job: `python -m core.evaluation.job <run_id>`.

Started in the background by `start_retrieval_eval` (the Retrieval eval page), so closing the tab
or refreshing loses nothing: the job reports its progress to `progress.jsonl` in the run folder,
checks the STOP file between steps, and sets the run done, stopped or failed. Exit status: 0 when
the run ends done or stopped, 1 when it failed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from core.runs.jobs import job_main

if TYPE_CHECKING:
    from core.config import ChromaSettings
    from core.evaluation.config import RetrievalEvalConfig
    from core.runs.folders import Run

JOB_MODULE = "core.evaluation.job"


def start_retrieval_eval(config: RetrievalEvalConfig, chroma: ChromaSettings | None = None) -> Run:
    """Create the retrieval_eval run (a refused configuration, or a split with too few
    questions for any statistic, raises before any run exists) and run it as a background job
    against `chroma` (default: the environment's); returns the run, which is `running`."""
    from core.config import chroma_env
    from core.evaluation.readiness import check_split_size
    from core.evaluation.stage import create_retrieval_eval_run
    from core.runs.jobs import start_job

    check_split_size(config.qa_run_id, config.split)
    run = create_retrieval_eval_run(config)
    start_job(run, module=JOB_MODULE, env=chroma_env(chroma) if chroma else None)
    return run


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation of the run named on the command line."""

    def work(run: Run, on_progress, should_stop) -> None:  # noqa: ANN001 - see StageWork
        from core.config import chroma_settings_from_env
        from core.embedding_cache import default_cache
        from core.evaluation.stage import run_retrieval_eval
        from core.runs.folders import load_run

        cache = default_cache()
        before = (cache.stats.hits, cache.stats.misses) if cache else (0, 0)
        run_retrieval_eval(
            run,
            chroma_settings=chroma_settings_from_env(),
            on_progress=on_progress,
            should_stop=should_stop,
        )
        if cache is not None:  # what the embedding cache saved this evaluation, for the record
            fresh = load_run(run.id)
            fresh.set_status(
                fresh.manifest.status,
                texts_encoded=cache.stats.misses - before[1],
                texts_from_cache=cache.stats.hits - before[0],
            )

    return job_main(argv, module=JOB_MODULE, what="retrieval eval", work=work)


if __name__ == "__main__":
    sys.exit(main())
