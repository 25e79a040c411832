"""The cross-fit stage: a crossfit run, its K fold fine-tunes, and the evaluation over all
questions.

How it works:
1. `create_crossfit_run` checks the question set (enough clusters for the folds), deals the
   folds (core.crossfit.folds) and records them in the run's `folds.json` before anything trains.
2. `run_crossfit` saves each fold's question set, then fine-tunes fold after fold with the same
   recipe (core.finetune.trainer.run_finetune, in this process); each fold is a model run whose
   parents are its fold's question set and the crossfit run. A stop ends the crossfit run
   `stopped`; running it again resumes at the first fold without a finished model. Optionally the
   model to ship is trained on every question last (a normal model run, marked `final`).
3. The evaluation (core.crossfit.evaluation) then scores every question with the fold model that
   never saw it and saves a retrieval_eval run the Retrieval eval page, the CLI and the report
   read like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.crossfit.config import CrossfitConfig
from core.crossfit.folds import accepted_items, deal_folds, fold_items, save_fold_sets
from core.errors import ConfigError, InputError, RunError, StoppedError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.splits import question_clusters
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import stage_run

if TYPE_CHECKING:
    from core.evaluation.models import ModelLoader
    from core.evaluation.results import RetrievalEvalResult

STATE_FILE = "folds.json"
FINAL_SOURCE = "crossfit_final"


def create_crossfit_run(config: CrossfitConfig) -> Run:
    """Check the question set and deal the folds; the crossfit run (`pending`) records them. A
    refused configuration raises before any run exists."""
    qa = load_run(config.qa_run_id)
    if qa.kind != "qa":
        raise ConfigError(f"Run {qa.id} is a {qa.kind} run, not a question set (qa run).")
    items = accepted_items(qa.id)
    n_clusters = len(set(question_clusters(items)))
    if n_clusters < 2 * config.folds:
        raise InputError(
            f"Question set {qa.id} has too few clusters for {config.folds} folds.",
            found=f"{len(items)} accepted questions in {n_clusters} clusters (questions sharing "
            "a chunk are one cluster and stay in one fold)",
            fix=f"use at most {max(2, n_clusters // 2)} folds, or add questions",
        )
    folds = deal_folds(items, config.folds, config.seed)
    name = config.name or f"{config.folds}-fold cross-fit of {qa.manifest.name or qa.id}"
    run = create_run("crossfit", name=name, config=config.to_dict(), parents={"qa": qa.id})
    run.write_json(
        STATE_FILE,
        {
            "folds": {i.id: f for i, f in zip(items, folds, strict=True)},
            "fold_sets": [],
            "models": [None] * config.folds,
            "final_model": None,
            "retrieval_eval": None,
        },
    )
    run.set_status("pending", n_questions=len(items), n_clusters=n_clusters)
    return run


def crossfit_state(run: Run | str) -> dict[str, Any]:
    """The crossfit run's folds, fold question sets and fold models (`folds.json`)."""
    run = load_run(run) if isinstance(run, str) else run
    if not run.artifact(STATE_FILE).exists():
        raise RunError(f"Run {run.id} has no {STATE_FILE}.", fix="make a new cross-fit")
    return run.read_json(STATE_FILE)


def run_crossfit(
    run: Run | str,
    *,
    model_loader: ModelLoader | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RetrievalEvalResult:
    """Train the folds not finished yet, then evaluate every question (this process, or the
    background job core.crossfit.job). A stop marks the run `stopped`; run it again to resume."""
    from core.crossfit.evaluation import evaluate_crossfit
    from core.deferred_model import deferred_loader

    run = load_run(run) if isinstance(run, str) else run
    config = CrossfitConfig.from_dict(run.manifest.config)
    total = config.folds + int(config.final_model) + config.folds + 1  # trainings + scorings
    tracker = ProgressTracker("cross-fit", total, on_progress, should_stop)
    if run.manifest.status != "running":
        run.set_status("running")
    with stage_run(run):
        state = crossfit_state(run)
        items = accepted_items(config.qa_run_id)
        folds = [int(state["folds"][i.id]) for i in items]
        if not state["fold_sets"]:
            state["fold_sets"] = [r.id for r in save_fold_sets(run, items, folds)]
            run.write_json(STATE_FILE, state)
        for fold in range(config.folds):
            _train_fold(run, config, state, fold, tracker)
        if config.final_model:
            _train_final(run, config, state, items, tracker)
        result = evaluate_crossfit(
            run, state, model_loader or deferred_loader(config.recipe.device), tracker
        )
        state["retrieval_eval"] = result.run_id
        run.write_json(STATE_FILE, state)
        run.set_status("done", retrieval_eval=result.run_id, folds_done=config.folds)
        return result


def _finished(model_id: str | None) -> bool:
    if not model_id:
        return False
    try:
        return load_run(model_id).manifest.status == "done"
    except RunError:
        return False


def _fine_tune(run: Run, config: CrossfitConfig, qa_run_id: str, name: str, role: str) -> Run:
    """A model run of the recipe on `qa_run_id`, with the crossfit run among its parents."""
    from core.finetune.control import create_finetune_run

    model = create_finetune_run(config.fold_recipe(qa_run_id), name=name)
    model.manifest.parents = {**model.manifest.parents, "crossfit": run.id}
    model.save()
    model.set_status("pending", crossfit_role=role)
    return model


def _run_model(model: Run, tracker: ProgressTracker, what: str) -> None:
    """Fine-tune in this process; a stopped or failed fine-tune ends the cross-fit so."""
    from core.finetune.trainer import run_finetune

    status = run_finetune(model)
    if status == "stopped":
        raise StoppedError(f"Stopped during {what}; run the cross-fit again to resume there.")
    if status != "done":
        error = load_run(model.id).manifest.error or "see its job log"
        raise RunError(f"The fine-tune of {what} ({model.id}) failed: {error}")
    tracker.advance(1, f"{what} trained")


def _train_fold(
    run: Run, config: CrossfitConfig, state: dict[str, Any], fold: int, tracker: ProgressTracker
) -> None:
    what = f"fold {fold + 1} of {config.folds}"
    if _finished(state["models"][fold]):
        tracker.advance(1, f"{what} already trained")
        return
    tracker.check_stop()
    tracker.report(f"{what}: fine-tuning")
    name = f"{run.manifest.name} · fold {fold + 1} of {config.folds}"
    model = _fine_tune(run, config, state["fold_sets"][fold], name, f"fold {fold + 1}")
    state["models"][fold] = model.id
    run.write_json(STATE_FILE, state)
    run.set_status("running", current_model=model.id, folds_done=fold)
    _run_model(model, tracker, what)


def _train_final(
    run: Run, config: CrossfitConfig, state: dict[str, Any], items: list, tracker: ProgressTracker
) -> None:
    """The model to ship: the recipe on every question (its validation share held out for the
    trainer), a normal model run marked `final`."""
    from core.questions.qa_runs import corpus_of, save_qa_run

    if _finished(state.get("final_model")):
        tracker.advance(1, "final model already trained")
        return
    tracker.check_stop()
    tracker.report("the model to ship: fine-tuning on every question")
    everything = fold_items(items, [-1] * len(items), 0, config.validation_share, config.seed)
    qa = load_run(config.qa_run_id)
    final_set = save_qa_run(
        everything,
        corpus_of(qa),
        name=f"{qa.manifest.name or qa.id} · every question (cross-fit {run.id})",
        config={"source": FINAL_SOURCE, "crossfit": run.id, "seed": config.seed},
        extra_parents={"source": qa.id, "crossfit": run.id},
    )
    model = _fine_tune(
        run, config, final_set.id, f"{run.manifest.name} · the model to ship", "final"
    )
    state["final_model"] = model.id
    run.write_json(STATE_FILE, state)
    run.set_status("running", current_model=model.id)
    _run_model(model, tracker, "the model to ship")


def stop_crossfit(run_id: str) -> None:
    """Ask the cross-fit to stop: its job, and the fold fine-tune running inside it, stop at
    their next step; the run ends `stopped` and resumes at that fold when run again."""
    from core.runs.jobs import request_stop

    run = load_run(run_id)
    request_stop(run)
    current = run.manifest.summary.get("current_model")
    if current:
        try:
            model = load_run(str(current))
        except RunError:
            return
        if model.manifest.status in ("running", "pending"):
            request_stop(model)
