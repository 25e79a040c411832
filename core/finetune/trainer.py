"""Fine-tuning an embedding model on our own questions: MatryoshkaLoss over MNRL, with guard-rails.

How it works:
1. `FinetuneConfig` holds every choice (validated on construction; messages name the fix) and is
   saved in the model run's manifest. `check_config` returns the guard-rail warnings that are legal
   but dubious (native dimension left out, small batches, a tiny dataset, ...).
2. `start_finetune(cfg)` creates a `model` run (parent: the qa run) and launches
   `python -m core.finetune.job <run_id>` in the background (core.runs.jobs), so a browser refresh
   loses nothing.
3. The job (`run_finetune`) loads the train split as (anchor=question, positive=chunk text) pairs in
   that order, evaluates the base model on the validation split against the FULL corpus at every
   Matryoshka dimension, trains with sentence-transformers' trainer (NO_DUPLICATES batches, the
   model's query prompt on the anchors, per-epoch evaluation), and writes `progress.jsonl`,
   `metrics.json` (base and final ndcg@10 per dimension), the model and its card.
4. Stop: a `STOP` file makes the trainer save a checkpoint and the model, then end `stopped`;
   before the first step (the base model's validation included, at its next batch) the run
   ends `stopped` with no model.
   Resume: `resume_finetune(run_id)` continues from the last checkpoint in a NEW model run (the
   stopped run's weights never change under its id).

Heavy libraries (torch, sentence_transformers, datasets) are imported inside functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.embeddings import document_prompt
from core.errors import RagbenchError, RunError
from core.finetune.artifacts import CHECKPOINT_DIR, METRICS_FILE, MODEL_DIR, last_checkpoint
from core.finetune.callback import make_progress_callback
from core.finetune.config import FinetuneConfig, check_config, resolve_dims, resolve_precision
from core.finetune.data import FinetuneData, mine_negatives, prepare_data
from core.finetune.evaluator import (
    HEADLINE_METRIC,
    EvaluationStopped,
    build_evaluator,
    evaluate_model,
    headline,
)
from core.runs.folders import Run, load_run
from core.runs.jobs import append_event, process_start_time, stop_requested

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


OOM_HINT = "lower the batch size or use cached_mnrl"


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(message, hint) for a failed job. CUDA out-of-memory gets the batch-size hint."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    is_oom = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in lowered
    if is_oom:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return f"Out of GPU memory: {first[:300]}", OOM_HINT
    if isinstance(exc, RagbenchError):
        return text, exc.fix or ""
    return f"{type(exc).__name__}: {text[:500]}", "see job.log in the run folder for the traceback"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _stop_now(run_path: Path) -> bool:
    """Whether to stop; under DDP rank 0 decides for all ranks, so every rank stops at the same
    step (ranks that stop apart would hang in the next all-reduce)."""
    flag = stop_requested(run_path)
    if _world_size() > 1:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = (
                f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
            )
            tensor = torch.tensor([1 if flag else 0], device=device)
            dist.broadcast(tensor, src=0)
            flag = bool(tensor.item())
    return flag


def _build_loss(model: SentenceTransformer, cfg: FinetuneConfig, dims, weights):  # noqa: ANN001, ANN202
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    # Under DDP each device would otherwise see only its own batch as negatives.
    gather = _world_size() > 1
    if cfg.loss == "cached_mnrl":
        inner = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.mini_batch_size, gather_across_devices=gather
        )
    else:
        inner = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    return MatryoshkaLoss(
        model, inner, matryoshka_dims=list(dims), matryoshka_weights=list(weights)
    )


def run_finetune(
    run: Run | str, *, resume: bool = False, on_event: Callable[[dict], None] | None = None
) -> str:
    """Run (or resume) a model run's training in this process; returns the final status.
    `on_event` sees every progress event written to the run folder (the CLI prints some).
    Never raises for training errors: the run ends `failed` with the message and a hint."""
    run = load_run(run) if isinstance(run, str) else run
    main = _is_main_process()

    def emit(event: dict[str, Any]) -> None:
        if main:
            append_event(run.path, event)
            if on_event is not None:
                on_event(event)

    try:
        cfg = FinetuneConfig.from_dict(run.manifest.config, ignore_extra=True)
        if main:
            pid = os.getpid()
            run.set_status(
                "running", error="", hint="", pid=pid, pid_started=process_start_time(pid)
            )
        return _train(run, cfg, resume=resume, emit=emit, main=main)
    except BaseException as exc:
        message, hint = describe_failure(exc)
        logger.exception("fine-tune %s failed", run.id)
        if main:
            run.set_status("failed", error=message, hint=hint)
            emit({"event": "end", "status": "failed", "error": message, "hint": hint})
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "failed"


@dataclass
class _Setup:
    """Everything a training run is built from, resolved before the trainer exists."""

    cfg: FinetuneConfig
    data: FinetuneData
    model: Any  # the SentenceTransformer being trained
    device: str
    precision: str
    tf32: bool
    dims: tuple[int, ...]
    weights: tuple[float, ...]
    query_prompt: str | None
    document_prompt: str | None
    warnings: list[str]
    evaluator: Any  # a SequentialEvaluator of one InformationRetrievalEvaluator per dim


def _set_up(cfg: FinetuneConfig, data: FinetuneData, emit) -> _Setup:  # noqa: ANN001
    from core.embeddings import load_model, native_dim, query_prompt, select_device

    device = select_device(cfg.device)
    precision, tf32 = resolve_precision(cfg.precision, device)
    emit({"event": "phase", "message": f"loading model on {device}"})
    model = load_model(cfg.base_model, device=device, max_seq_length=cfg.max_seq_length)
    native = native_dim(model)
    qp, dp = query_prompt(model), document_prompt(model)
    dims, weights = resolve_dims(cfg, native)
    warnings = check_config(cfg, native_dim=native, query_prompt=qp, n_train=data.n_train)
    return _Setup(
        cfg=cfg,
        data=data,
        model=model,
        device=device,
        precision=precision,
        tf32=tf32,
        dims=dims,
        weights=weights,
        query_prompt=qp,
        document_prompt=dp,
        warnings=warnings + data.warnings,
        evaluator=build_evaluator(data, dims, query_prompt=qp, corpus_prompt=dp),
    )


def _start_metrics(run: Run, setup: _Setup, *, resume: bool, emit, main: bool):  # noqa: ANN001, ANN202
    """(checkpoint or None, metrics.json so far): on resume the last checkpoint and the base
    figures already measured; otherwise the base model evaluated now."""
    checkpoint, metrics = None, {}
    if resume:
        checkpoint = last_checkpoint(run)
        if checkpoint is None:
            raise RunError(
                f"Run {run.id} has no checkpoint to resume from.", fix="start a new fine-tune"
            )
        path = run.path / METRICS_FILE
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        emit({"event": "resume", "checkpoint": Path(checkpoint).name})
    if "base" in metrics:
        return checkpoint, metrics
    emit({"event": "phase", "message": "evaluating the base model"})
    # On a big corpus this takes minutes: a stop ends it at the next batch (EvaluationStopped).
    base = evaluate_model(setup.model, setup.evaluator, should_stop=lambda: _stop_now(run.path))
    metrics = {
        "metric": HEADLINE_METRIC,
        "dims": list(setup.dims),
        "weights": list(setup.weights),
        "query_prompt": setup.query_prompt,
        "data": setup.data.stats(),
        "base": headline(base),
        "base_all": {str(d): m for d, m in base.items()},
        "epochs": [],
    }
    if main:
        run.write_json(METRICS_FILE, metrics)
    emit({"event": "eval", "phase": "base", "epoch": 0, "step": 0, HEADLINE_METRIC: headline(base)})
    return checkpoint, metrics


def _train_dataset(setup: _Setup, emit):  # noqa: ANN001, ANN202 - a datasets.Dataset
    """(anchor, positive[, negatives...]) rows, hard negatives mined when asked."""
    from datasets import Dataset

    data, cfg = setup.data, setup.cfg
    train_ds = Dataset.from_dict({"anchor": data.anchors, "positive": data.positives})
    if cfg.hard_negatives:
        emit({"event": "phase", "message": "mining hard negatives"})
        qp, dp = setup.query_prompt, setup.document_prompt
        train_ds, note = mine_negatives(setup.model, train_ds, data, cfg, qp, dp, emit)
        if note:
            setup.warnings.append(note)
    return train_ds


def _training_args(run: Run, setup: _Setup, train_ds):  # noqa: ANN001, ANN202
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    cfg, qp, dp = setup.cfg, setup.query_prompt, setup.document_prompt
    prompts: dict[str, str] = {}
    if qp:
        prompts["anchor"] = qp
    if dp:
        prompts.update({c: dp for c in train_ds.column_names if c != "anchor"})
    return SentenceTransformerTrainingArguments(
        output_dir=str(run.path / CHECKPOINT_DIR),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        bf16=setup.precision == "bf16",
        fp16=setup.precision == "fp16",
        tf32=True if setup.tf32 else None,
        use_cpu=setup.device == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts or None,
        eval_strategy="epoch" if cfg.eval_each_epoch else "no",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=_logging_steps(len(train_ds), cfg),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=False,
    )


def _train(run: Run, cfg: FinetuneConfig, *, resume: bool, emit, main: bool) -> str:  # noqa: ANN001
    emit({"event": "phase", "message": "loading data"})
    data = prepare_data(
        cfg.qa_run_id, cfg.source_weights, cfg.seed
    )  # fails fast: no heavy imports yet
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from transformers.trainer_callback import PrinterCallback

    setup = _set_up(cfg, data, emit)
    try:
        checkpoint, metrics = _start_metrics(run, setup, resume=resume, emit=emit, main=main)
    except EvaluationStopped:
        return _stopped_before_training(run, emit, main)
    train_ds = _train_dataset(setup, emit)
    for warning in setup.warnings:
        logger.warning(warning)
    callback = make_progress_callback(run.path, emit, _stop_now)
    trainer = SentenceTransformerTrainer(
        model=setup.model,
        args=_training_args(run, setup, train_ds),
        train_dataset=train_ds,
        loss=_build_loss(setup.model, cfg, setup.dims, setup.weights),
        evaluator=setup.evaluator if cfg.eval_each_epoch else None,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; `callback` reports
    emit(
        {
            "event": "start",
            "total_steps": _total_steps(len(train_ds), cfg),
            "device": setup.device,
            "precision": setup.precision,
            "tf32": setup.tf32,
            "dims": list(setup.dims),
            "n_train": len(train_ds),
            "warnings": setup.warnings,
            "resume": bool(checkpoint),
        }
    )
    if main:
        run.set_status(
            "running",
            warnings=setup.warnings,
            device=setup.device,
            precision=setup.precision,
            sources=setup.data.sources,
        )
    if _stop_now(run.path):
        return _stopped_before_training(run, emit, main)
    emit({"event": "phase", "message": "training"})
    trainer.train(resume_from_checkpoint=checkpoint)
    status = "stopped" if callback.stopped else "done"
    if main:
        _finish(run, setup, trainer, callback, metrics, status, emit)
    return status


def _stopped_before_training(run: Run, emit, main: bool) -> str:  # noqa: ANN001
    """End the run `stopped` when the stop came before the first training step."""
    if main:
        run.set_status("stopped", error="Stopped before training started; no model was saved.")
        emit({"event": "end", "status": "stopped"})
    return "stopped"


def _final_metrics(setup: _Setup, trainer, callback, emit) -> dict[int, dict[str, float]]:  # noqa: ANN001
    """The trained model's per-dim validation metrics: the last epoch's evaluation when it ran
    at the last step, else a fresh one."""
    last_eval = callback.evals[-1] if callback.evals else None
    if last_eval and last_eval["step"] == trainer.state.global_step:
        return {int(d): m for d, m in last_eval["metrics"].items()}
    emit({"event": "phase", "message": "evaluating the trained model"})
    final = evaluate_model(setup.model, setup.evaluator)
    emit(
        {
            "event": "eval",
            "phase": "final",
            "epoch": round(float(trainer.state.epoch or 0), 4),
            "step": trainer.state.global_step,
            HEADLINE_METRIC: headline(final),
        }
    )
    return final


def _finish(run: Run, setup: _Setup, trainer, callback, metrics, status: str, emit) -> None:  # noqa: ANN001
    """Save the model, metrics.json and the card; end the run done or stopped."""
    from core.finetune.model_card import write_model_card

    emit({"event": "phase", "message": "saving the model"})
    model_dir = run.path / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    setup.model.save(str(model_dir))
    final = _final_metrics(setup, trainer, callback, emit)
    known_steps = {e["step"] for e in metrics.get("epochs", [])}
    metrics["epochs"] = metrics.get("epochs", []) + [
        {
            "epoch": e["epoch"],
            "step": e["step"],
            HEADLINE_METRIC: headline({int(d): m for d, m in e["metrics"].items()}),
        }
        for e in callback.evals
        if e["step"] not in known_steps
    ]
    stopped = status == "stopped"
    metrics["final"] = headline(final)
    metrics["final_all"] = {str(d): m for d, m in final.items()}
    metrics["steps"] = trainer.state.global_step
    metrics["stopped_early"] = stopped
    run.write_json(METRICS_FILE, metrics)
    write_model_card(run, metrics=metrics, warnings=setup.warnings)
    if not stopped:
        # Checkpoints hold the optimizer state (3x the model); a finished run no longer needs them.
        shutil.rmtree(run.path / CHECKPOINT_DIR, ignore_errors=True)
    native_key = str(max(setup.dims))
    run.set_status(
        status,
        error=stop_note(trainer.state, setup.cfg) if stopped else "",
        hint="" if not stopped else "resume to continue from the last checkpoint",
        steps=trainer.state.global_step,
        dims=list(setup.dims),
        **{
            f"{HEADLINE_METRIC}_base": metrics["base"].get(native_key),
            f"{HEADLINE_METRIC}_final": metrics["final"].get(native_key),
        },
    )
    run.artifact("STOP").unlink(missing_ok=True)
    emit({"event": "end", "status": status})


def stop_note(state, cfg: FinetuneConfig) -> str:  # noqa: ANN001 - a transformers TrainerState
    """What a stopped run's model is: the one at the stop; near the base model when the stop
    came before or inside the warm-up (the learning rate still rising from 0)."""
    step, total = int(state.global_step), int(state.max_steps or 0)
    warmup, text = math.ceil(cfg.warmup_ratio * total), "Stopped by the user; the model saved is"
    if step == 0:
        return f"{text} the base model unchanged: no training step ran."
    if step <= warmup:
        return (
            f"{text} barely changed from the base model: it stopped at step {step} of {total}, "
            f"inside the warm-up ({first_steps(warmup)}, the learning rate rising from 0)."
        )
    return f"{text} the one at the stop (step {step} of {total})."


def first_steps(n: int) -> str:
    """'the first step' or 'the first 12 steps'."""
    return "the first step" if n == 1 else f"the first {n:,} steps"


def _total_steps(n_pairs: int, cfg: FinetuneConfig) -> int:
    return max(1, math.ceil(n_pairs / cfg.batch_size)) * cfg.epochs


def _logging_steps(n_pairs: int, cfg: FinetuneConfig) -> int:
    """Log every step on small runs, about 300 points on big ones (the loss chart's resolution)."""
    return max(1, _total_steps(n_pairs, cfg) // 300)
