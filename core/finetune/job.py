"""Entry point of a fine-tune job: `python -m core.finetune.job <run_id> [--resume]`.

Started in the background by `core.runs.jobs.start_job` (or by hand, or under
`torchrun --nproc_per_node N -m core.finetune.job <run_id>` for several GPUs; see docs/multi_gpu.md).
It runs `core.finetune.trainer.run_finetune`, which records everything in the run folder. Exit status:
0 when the run ends done or stopped, 1 when it failed.
"""

from __future__ import annotations

import argparse
import sys

from core.runs.jobs import prepare_job_process


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set the offline environment, run the fine-tune."""
    parser = argparse.ArgumentParser(prog="python -m core.finetune.job", description=__doc__)
    parser.add_argument("run_id", help="the model run to train (created by the Fine-tune page)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    # Before any Hugging Face import: the model card save must not look anything up on the hub.
    prepare_job_process()
    from core.finetune.trainer import run_finetune

    status = run_finetune(args.run_id, resume=args.resume)
    print(f"fine-tune {args.run_id} ended: {status}", flush=True)
    return 0 if status in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
