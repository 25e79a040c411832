"""`python -m tests.support.slow_finetune_job <run_id>`: the real fine-tune job (core.finetune.job)
with every training step slowed by `RAGBENCH_TEST_STEP_DELAY` seconds (default 0.5), so a test
can kill it mid-epoch. Started through core.runs.jobs.start_job(run, module=...)."""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    """Slow down Trainer.training_step, then hand over to the real job entry point."""
    from transformers import Trainer

    delay = float(os.environ.get("RAGBENCH_TEST_STEP_DELAY", "0.5"))
    original = Trainer.training_step

    def slow_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        time.sleep(delay)
        return original(self, *args, **kwargs)

    Trainer.training_step = slow_step
    from core.finetune.job import main as job_main

    return job_main()


if __name__ == "__main__":
    sys.exit(main())
