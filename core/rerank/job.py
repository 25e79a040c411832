"""Entry point of a reranker training job: `python -m core.rerank.job <run_id>`.

Started in the background by `core.rerank.control.start_reranker` (the Fine-tune page, or the
CLI with --background); it runs `core.rerank.trainer.run_rerank_train`, which records everything
in the run folder. Exit status: 0 when the run ends done or stopped, 1 when it failed.
"""

from __future__ import annotations

import argparse
import sys

from core.runs.jobs import prepare_job_process

JOB_MODULE = "core.rerank.job"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set the offline environment, train the reranker."""
    parser = argparse.ArgumentParser(prog=f"python -m {JOB_MODULE}", description=__doc__)
    parser.add_argument("run_id", help="the reranker run to train (made by the page or the CLI)")
    args = parser.parse_args(argv)
    prepare_job_process()  # before any Hugging Face import: nothing is looked up on the hub
    from core.rerank.trainer import run_rerank_train

    status = run_rerank_train(args.run_id)
    print(f"reranker {args.run_id} ended: {status}", flush=True)
    return 0 if status in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
