"""Starting and stopping reranker trainings: a `reranker` run per training (parents: the question
set, and the miner or start runs it uses), checked before it exists, launched as a background
job (core.runs.jobs) or run in this process (the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.finetune.data import prepare_data
from core.rerankers import RERANKER_KIND, reranker_label, resolve_reranker
from core.runs.folders import Run, create_run, load_run
from core.runs.jobs import request_stop, start_job
from core.runs.lineage import check_same_lineage

if TYPE_CHECKING:
    from core.rerank.config import RerankerConfig


def create_reranker_run(cfg: RerankerConfig, name: str = "") -> Run:
    """Check `cfg` and its inputs (the question set has training and validation questions, the
    start and the miner exist and come from the same corpus) and make a pending reranker run; a
    refused configuration raises before any run exists."""
    if not cfg.qa_run_id:
        raise ConfigError(
            "Pick a question set (qa run) to train the reranker on.",
            fix="create one on the Questions page",
        )
    qa = load_run(cfg.qa_run_id)
    if qa.kind != "qa":
        raise ConfigError(
            f"Run {cfg.qa_run_id} is a {qa.kind} run, not a qa run.", fix="pick a question set"
        )
    prepare_data(cfg.qa_run_id, cfg.source_weights, cfg.seed)  # no training or validation: refused
    resolve_reranker(cfg.start)  # a missing folder or an unfinished run: refused
    parents = {"qa": qa.id}
    if cfg.miner.source == "run":
        miner = load_run(cfg.miner.ref)
        if miner.kind != "model":
            raise ConfigError(f"Run {miner.id} is a {miner.kind} run, not a model run.")
        check_same_lineage(miner, qa, kind="corpus")
        parents["miner"] = miner.id
    if cfg.start.source == "run":
        check_same_lineage(load_run(cfg.start.ref), qa, kind="corpus")
        parents["start"] = cfg.start.ref
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    name = (
        name
        or f"Reranker from {reranker_label(cfg.start)} · {qa.manifest.name or qa.id} · {epochs}"
    )
    return create_run(RERANKER_KIND, name=name, config=cfg.to_dict(), parents=parents)


def start_reranker(cfg: RerankerConfig, name: str = "") -> Run:
    """Make a reranker run for `cfg` and train it in the background. Returns the run."""
    run = create_reranker_run(cfg, name)
    start_job(run, module="core.rerank.job")
    return run


def stop_reranker(run_id: str) -> None:
    """Ask the training job to stop: it saves the reranker at the step and ends `stopped`."""
    request_stop(run_id)
