"""Starting, stopping and resuming fine-tunes: a model run per fine-tune, launched as a background
job (core.runs.jobs); resuming makes a NEW model run from the stopped one's checkpoint, so a
run's weights never change under its id."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from core.errors import ConfigError, RunError
from core.finetune.artifacts import CHECKPOINT_DIR, METRICS_FILE, last_checkpoint
from core.finetune.config import default_dims, describe_base_model
from core.finetune.trainer import run_finetune
from core.runs.folders import Run, create_run, load_run, status_phrase
from core.runs.guard import discard_on_failure
from core.runs.jobs import request_stop, start_job

if TYPE_CHECKING:
    from core.finetune.config import FinetuneConfig


def start_finetune(cfg: FinetuneConfig, name: str = "") -> Run:
    """Create a model run for `cfg` and launch its background job. Returns the run."""
    run = create_finetune_run(cfg, name)
    start_job(run)
    return run


def create_finetune_run(cfg: FinetuneConfig, name: str = "") -> Run:
    """Create a (pending) model run for `cfg` without starting it, e.g. to launch it yourself
    under torchrun (docs/multi_gpu.md)."""
    if not cfg.qa_run_id:
        raise ConfigError(
            "Pick a question set (qa run) to train on.", fix="create one on the Questions page"
        )
    qa = load_run(cfg.qa_run_id)
    if qa.kind != "qa":
        raise ConfigError(
            f"Run {cfg.qa_run_id} is a {qa.kind} run, not a qa run.", fix="pick a question set"
        )
    info = describe_base_model(cfg.base_model)
    if not cfg.matryoshka_dims and info.native_dim:
        cfg = cfg.update(matryoshka_dims=list(default_dims(info.native_dim)))
    parents = {"qa": cfg.qa_run_id}
    if cfg.base_model.source == "run":
        parents["base_model"] = cfg.base_model.ref
    name = name or default_model_name(cfg, qa.manifest.name or qa.id)
    return create_run("model", name=name, config=cfg.to_dict(), parents=parents)


def default_model_name(cfg: FinetuneConfig, qa_name: str) -> str:
    """A readable name for a model run the user did not name: base model, question set and
    epochs ('all-MiniLM-L6-v2 · From the documents: headings + cloze · 2 epochs')."""
    base = cfg.base_model.label
    if cfg.base_model.source == "run":
        try:
            base = load_run(cfg.base_model.ref).manifest.name or base
        except RunError:
            pass
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    return f"{base} · {qa_name} · {epochs}"


def stop_finetune(run_id: str) -> None:
    """Ask the fine-tune job to stop; it saves a usable model and ends `stopped`."""
    request_stop(run_id)


def create_resumed_run(run_id: str) -> Run:
    """A new model run that continues a stopped or failed one from its last checkpoint.

    The old run is never trained again, so its saved weights, and every evaluation, cache and
    Chroma collection keyed on its id, stay true. The checkpoint moves to the new run (parents:
    the same question set, and `resumed_from` the old run), with the metrics and progress so far.
    """
    from core.runs.jobs import PROGRESS_FILE

    old = load_run(run_id)
    if old.kind != "model":
        raise ConfigError(f"Run {run_id} is a {old.kind} run, not a model run.")
    if old.manifest.status not in ("stopped", "failed"):
        raise RunError(
            f"Run {run_id} {status_phrase(old.manifest.status)}; only a stopped or failed "
            "fine-tune resumes.",
            fix="start a new fine-tune",
        )
    checkpoint = last_checkpoint(old)
    if checkpoint is None:
        raise RunError(
            f"Run {run_id} has no checkpoint to resume from.",
            found=f"resumed as {old.manifest.summary['resumed_as']}"
            if old.manifest.summary.get("resumed_as")
            else "",
            fix="start a new fine-tune",
        )
    name = old.manifest.name.removesuffix(" (resumed)") + " (resumed)"
    parents = {**old.manifest.parents, "resumed_from": old.id}
    with discard_on_failure() as created:
        new = create_run("model", name=name, config=old.manifest.config, parents=parents)
        created.append(new)
        for artifact in (METRICS_FILE, PROGRESS_FILE):
            if old.artifact(artifact).exists():
                shutil.copy2(old.artifact(artifact), new.artifact(artifact))
        # Last, so a failure before it leaves the old run resumable as it was.
        os.replace(old.path / CHECKPOINT_DIR, new.path / CHECKPOINT_DIR)
    old.set_status(old.manifest.status, resumed_as=new.id)
    return new


def resume_job(run_id: str) -> Run:
    """Resume a stopped or failed fine-tune as a new model run (create_resumed_run), in the
    background. Returns the new run."""
    new = create_resumed_run(run_id)
    start_job(new, args=("--resume",))
    return new


def resume_finetune(run_id: str) -> Run:
    """Resume a stopped or failed fine-tune as a new model run, in this process. Returns the new
    run, reloaded (its status says how it ended)."""
    new = create_resumed_run(run_id)
    run_finetune(new, resume=True)
    return load_run(new.id)
