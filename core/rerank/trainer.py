"""Training a cross-encoder reranker on our own questions.

How it works:
1. `RerankerConfig` holds every choice (validated with the fine-tune's own checks) and is saved
   in the reranker run's manifest (core.rerank.control makes the run and starts the job).
2. The job (`run_rerank_train`) reads the train split's pairs exactly as a fine-tune does (the
   same sources and weights, core.finetune.data.prepare_data) and mines hard negatives for each
   with an embedding model (the miner) from the corpus, never from a validation or test chunk
   and never another gold chunk of the same question; each question gives one pair labelled 1
   and its negatives labelled 0.
3. Validation: each validation question's top N by the miner over the whole corpus, reranked
   (sentence-transformers' CrossEncoderRerankingEvaluator), before training and after each
   epoch; the miner's own order is the retriever-alone figure beside it.
4. Training: sentence-transformers' CrossEncoderTrainer with binary cross-entropy (the positive
   weighted by the number of negatives), writing progress.jsonl (loss, steps/s, ETA), honouring
   the STOP file (core.finetune.callback), then the model, metrics.json and the model card.

Heavy libraries (torch, sentence_transformers, datasets) are imported inside functions.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.finetune.artifacts import CHECKPOINT_DIR, METRICS_FILE, MODEL_DIR
from core.finetune.callback import make_progress_callback
from core.finetune.config import resolve_precision
from core.finetune.data import FinetuneData, prepare_data
from core.finetune.evaluator import EvaluationStopped, stop_between_batches
from core.finetune.trainer import describe_failure, stop_note
from core.rerank.config import RerankerConfig, check_reranker_config
from core.rerank.data import LABEL, TrainingPairs, training_pairs, validation_samples
from core.runs.folders import Run, load_run
from core.runs.jobs import append_event, process_start_time, stop_requested

logger = logging.getLogger(__name__)

METRIC = "ndcg@10"
RERANKED, RETRIEVER = "reranked", "retriever"  # the two series validation charts
_EVAL_KEY = re.compile(r"(?:^|_)validation_(base_)?(ndcg@10|mrr@10|map)$")


def parse_rerank_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """The evaluator's flat keys ('eval_validation_base_ndcg@10') -> {'reranked': {...},
    'retriever': {...}}: the reranked top N, and the miner's own order of it."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        match = _EVAL_KEY.search(key)
        if match:
            series = RETRIEVER if match.group(1) else RERANKED
            out.setdefault(series, {})[match.group(2)] = float(value)
    return out


def rerank_headline(parsed: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'reranked': ndcg@10, 'retriever': ndcg@10} for progress events and metrics.json."""
    return {series: values[METRIC] for series, values in parsed.items() if METRIC in values}


def run_rerank_train(run: Run | str, *, on_event: Callable[[dict], None] | None = None) -> str:
    """Train a reranker run in this process; returns the final status. `on_event` sees every
    progress event written to the run folder. Never raises for training errors: the run ends
    `failed` with the message and a hint."""
    run = load_run(run) if isinstance(run, str) else run

    def emit(event: dict[str, Any]) -> None:
        append_event(run.path, event)
        if on_event is not None:
            on_event(event)

    try:
        cfg = RerankerConfig.from_dict(run.manifest.config, ignore_extra=True)
        pid = os.getpid()
        run.set_status("running", error="", hint="", pid=pid, pid_started=process_start_time(pid))
        return _train(run, cfg, emit)
    except BaseException as exc:
        message, hint = describe_failure(exc)
        logger.exception("reranker training %s failed", run.id)
        run.set_status("failed", error=message, hint=hint)
        emit({"event": "end", "status": "failed", "error": message, "hint": hint})
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "failed"


@dataclass
class _Setup:
    """What a reranker training is built from, resolved before the trainer exists."""

    cfg: RerankerConfig
    data: FinetuneData
    pairs: TrainingPairs
    model: Any  # the CrossEncoder being trained
    evaluator: Any  # CrossEncoderRerankingEvaluator over the validation questions
    device: str
    precision: str
    warnings: list[str]


def _set_up(cfg: RerankerConfig, data: FinetuneData, emit: Callable) -> _Setup:
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from transformers import set_seed

    from core.embeddings import load_model, select_device
    from core.rerankers import load_cross_encoder

    device = select_device(cfg.device)
    precision, _ = resolve_precision(cfg.precision, device)
    emit({"event": "phase", "message": f"loading the miner {cfg.miner.label} on {device}"})
    miner = load_model(cfg.miner, device=device)
    emit({"event": "phase", "message": "mining hard negatives"})
    pairs = training_pairs(miner, data, cfg.as_finetune(), emit)
    emit({"event": "phase", "message": f"the miner's top {cfg.rerank_top} for validation"})
    samples = validation_samples(miner, data, cfg.rerank_top)
    del miner
    emit({"event": "phase", "message": f"loading the reranker {cfg.start.label}"})
    set_seed(cfg.seed)  # a fresh scoring head starts the same way every time
    model = load_cross_encoder(cfg.start, device, cfg.max_length, for_ranking=False)
    evaluator = CrossEncoderRerankingEvaluator(
        samples,
        at_k=10,
        always_rerank_positives=False,
        name="validation",
        batch_size=max(32, cfg.batch_size),
        write_csv=False,
    )
    warnings = check_reranker_config(cfg, n_train=pairs.n_questions)
    return _Setup(cfg, data, pairs, model, evaluator, device, precision, warnings + pairs.notes)


def _training_args(run: Run, setup: _Setup, n_pairs: int):  # noqa: ANN202
    from sentence_transformers.cross_encoder.training_args import CrossEncoderTrainingArguments

    cfg = setup.cfg
    steps = max(1, math.ceil(n_pairs / cfg.batch_size)) * cfg.epochs
    return CrossEncoderTrainingArguments(
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
        use_cpu=setup.device == "cpu",
        eval_strategy="epoch" if cfg.eval_each_epoch else "no",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=max(1, steps // 300),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=False,
    )


def _train(run: Run, cfg: RerankerConfig, emit: Callable) -> str:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers.trainer_callback import PrinterCallback

    emit({"event": "phase", "message": "loading data"})
    data = prepare_data(cfg.qa_run_id, cfg.source_weights, cfg.seed)
    setup = _set_up(cfg, data, emit)
    emit({"event": "phase", "message": "evaluating the reranker before training"})
    try:
        with stop_between_batches(setup.model, lambda: stop_requested(run.path)):
            start = parse_rerank_metrics(setup.evaluator(setup.model))
    except EvaluationStopped:
        return _stopped_before_training(run, emit)
    metrics = _start_metrics(setup, start)
    run.write_json(METRICS_FILE, metrics)
    emit({"event": "eval", "phase": "base", "epoch": 0, "step": 0, METRIC: rerank_headline(start)})
    for warning in setup.warnings:
        logger.warning(warning)
    train_ds = Dataset.from_dict(setup.pairs.pairs)
    callback = make_progress_callback(
        run.path, emit, stop_requested, parse_rerank_metrics, rerank_headline
    )
    trainer = CrossEncoderTrainer(
        model=setup.model,
        args=_training_args(run, setup, len(train_ds)),
        train_dataset=train_ds,
        loss=BinaryCrossEntropyLoss(setup.model, pos_weight=torch.tensor(float(cfg.num_negatives))),
        evaluator=setup.evaluator if cfg.eval_each_epoch else None,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; `callback` reports
    total = max(1, math.ceil(len(train_ds) / cfg.batch_size)) * cfg.epochs
    emit(
        {
            "event": "start",
            "total_steps": total,
            "device": setup.device,
            "precision": setup.precision,
            "n_train": len(train_ds),
            "warnings": setup.warnings,
        }
    )
    run.set_status("running", warnings=setup.warnings, device=setup.device, sources=data.sources)
    if stop_requested(run.path):
        return _stopped_before_training(run, emit)
    emit({"event": "phase", "message": "training"})
    trainer.train()
    status = "stopped" if callback.stopped else "done"
    _finish(run, setup, trainer, callback, metrics, status, emit)
    return status


def _stopped_before_training(run: Run, emit: Callable) -> str:
    """End the run stopped before any training step: no model was saved."""
    run.set_status("stopped", error="Stopped before training started; no model was saved.")
    emit({"event": "end", "status": "stopped"})
    return "stopped"


def _start_metrics(setup: _Setup, start: dict[str, dict[str, float]]) -> dict[str, Any]:
    """metrics.json before training: the data, the miner's order and the untrained reranker."""
    cfg, pairs = setup.cfg, setup.pairs
    return {
        "metric": METRIC,
        "rerank_top": cfg.rerank_top,
        "miner": cfg.miner.label,
        "start": cfg.start.to_dict(),
        "data": {
            **setup.data.stats(),
            "n_pairs": pairs.n_pairs,
            "n_negatives": pairs.n_negatives,
            "n_questions_with_negatives": pairs.n_questions,
            "positives": int(sum(1 for label in pairs.pairs[LABEL] if label == 1.0)),
        },
        RETRIEVER: start.get(RETRIEVER, {}),
        "before": start.get(RERANKED, {}),
        "epochs": [],
    }


def _finish(
    run: Run, setup: _Setup, trainer: Any, callback: Any, metrics: dict, status: str, emit: Any
) -> None:
    """Save the model, metrics.json and the card; end the run done or stopped."""
    from core.rerank.model_card import write_reranker_card

    emit({"event": "phase", "message": "saving the reranker"})
    model_dir = run.path / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    setup.model.save(str(model_dir))
    last = callback.evals[-1] if callback.evals else None
    if last and last["step"] == trainer.state.global_step:
        final = {k: v for k, v in last["metrics"].items()}
    else:
        emit({"event": "phase", "message": "evaluating the trained reranker"})
        final = parse_rerank_metrics(setup.evaluator(setup.model))
        emit({"event": "eval", "phase": "final", "step": trainer.state.global_step,
              METRIC: rerank_headline(final)})  # fmt: skip
    metrics["epochs"] = [
        {"epoch": e["epoch"], "step": e["step"], METRIC: rerank_headline(e["metrics"])}
        for e in callback.evals
    ]
    metrics["after"] = final.get(RERANKED, {})
    metrics["steps"] = trainer.state.global_step
    metrics["stopped_early"] = status == "stopped"
    run.write_json(METRICS_FILE, metrics)
    write_reranker_card(run, metrics=metrics, warnings=setup.warnings)
    if status == "done":
        shutil.rmtree(run.path / CHECKPOINT_DIR, ignore_errors=True)
    stopped = status == "stopped"
    run.set_status(
        status,
        error=stop_note(trainer.state, setup.cfg) if stopped else "",
        hint="",
        steps=trainer.state.global_step,
        **{
            f"{METRIC}_retriever": metrics[RETRIEVER].get(METRIC),
            f"{METRIC}_before": metrics["before"].get(METRIC),
            f"{METRIC}_after": metrics["after"].get(METRIC),
        },
    )
    run.artifact("STOP").unlink(missing_ok=True)
    emit({"event": "end", "status": status})
