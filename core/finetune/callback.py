"""The trainer callback every training stage shares (the fine-tune, the reranker): it writes
loss, steps/s, ETA and GPU memory to the run's progress.jsonl, records each evaluation, and stops
training at the next step when the run's STOP file appears (a checkpoint is saved at the stop)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.finetune.evaluator import HEADLINE_METRIC, headline, parse_eval_metrics


def make_progress_callback(  # noqa: ANN201 - a transformers TrainerCallback
    run_path: Path,
    emit: Callable[[dict[str, Any]], None],
    stop_now: Callable[[Path], bool],
    parse: Callable[[dict[str, float]], dict[Any, dict[str, float]]] = parse_eval_metrics,
    summarize: Callable[[dict[Any, dict[str, float]]], dict[str, float]] = headline,
):
    """A TrainerCallback that writes progress events and honours the STOP file (`stop_now`).
    Each evaluation is read by `parse` ({series: {metric: value}}, per dim by default) and
    charted by `summarize` ({series: headline value})."""
    import torch
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False
            self.train_seconds = 0.0
            self.steps_timed = 0
            self._step_start: float | None = None
            self.evals: list[dict[str, Any]] = []

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            emit(
                {"event": "train_begin", "total_steps": state.max_steps, "step": state.global_step}
            )

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self._step_start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self._step_start is not None:
                self.train_seconds += time.monotonic() - self._step_start
                self.steps_timed += 1
            if stop_now(run_path):
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at this step, so resume starts here
            return control

        def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.stopped:
                control.should_evaluate = False  # stop promptly; the final evaluation follows
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = logs or {}
            if "loss" not in logs:
                return
            rate = self.steps_timed / self.train_seconds if self.train_seconds > 0 else None
            remaining = max(0, state.max_steps - state.global_step)
            event = {
                "event": "log",
                "step": state.global_step,
                "total_steps": state.max_steps,
                "epoch": round(float(state.epoch or 0), 4),
                "loss": float(logs["loss"]),
                "lr": float(logs.get("learning_rate", 0.0)),
                "steps_per_s": round(rate, 4) if rate else None,
                "eta_s": round(remaining / rate, 1) if rate else None,
            }
            if torch.cuda.is_available():
                event["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            emit(event)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
            per_dim = parse(metrics or {})
            if not per_dim:
                return
            record = {
                "epoch": round(float(state.epoch or 0), 4),
                "step": state.global_step,
                "metrics": {str(d): m for d, m in per_dim.items()},
            }
            self.evals.append(record)
            emit({"event": "eval", "phase": "epoch", HEADLINE_METRIC: summarize(per_dim), **record})

    return ProgressCallback()
