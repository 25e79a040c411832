"""Entry point of a question-generation job: `python -m core.questions.job <run_id>`.

`start_question_generation` (the Questions page) makes the qa run and starts this job, so a
refresh or a closed tab loses nothing: the LLM settings travel in the environment (the key
never touches the disk), progress goes to the run folder, and Stop ends the run `stopped`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from core.runs.jobs import job_main

if TYPE_CHECKING:
    from core.config import LLMSettings
    from core.progress import ProgressCallback, StopCheck
    from core.questions.generation import GenerationConfig
    from core.runs.folders import Run

JOB_MODULE = "core.questions.job"


def start_question_generation(
    corpus_run_id: str, config: GenerationConfig, settings: LLMSettings, *, name: str = ""
) -> Run:
    """Create the qa run (a corpus without chunks or an unreachable LLM configuration raises
    before any run exists) and generate into it in the background; returns the run."""
    from core.config import llm_env
    from core.llm.client import make_llm
    from core.questions.generation import create_question_run
    from core.runs.jobs import start_job

    run = create_question_run(corpus_run_id, make_llm(settings), config, name=name)
    start_job(run, module=JOB_MODULE, env=llm_env(settings))
    return run


def generate(run: Run, on_progress: ProgressCallback, should_stop: StopCheck) -> None:
    """Generate the run's questions with the environment's LLM (and the default embedding model
    for the near-duplicate check when the gate asks for it)."""
    from core.config import llm_settings_from_env
    from core.embeddings import ModelSpec, load_model
    from core.llm.client import make_llm
    from core.questions.generation import GenerationConfig, fill_question_run

    config = GenerationConfig.from_dict(run.manifest.config["generation"])
    model = load_model(ModelSpec()) if config.gate.check_near_duplicates else None
    fill_question_run(
        run,
        make_llm(llm_settings_from_env()),
        model=model,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def main(argv: list[str] | None = None) -> int:
    """Generate the questions of the qa run named on the command line."""
    return job_main(argv, module=JOB_MODULE, what="question generation", work=generate)


if __name__ == "__main__":
    sys.exit(main())
