"""The RAG-eval stage: answer with every chosen retriever (core.rag.answering), score the rag runs
with RAGAS (core.rag.scoring) into a ragas_eval run, and re-score only the failed judgements."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, LineageError, RunError
from core.progress import ProgressCallback, StopCheck, labelled
from core.rag.answering import load_samples
from core.rag.metrics import (
    RagasConfig,
    check_components,
    is_low_confidence_judge,
    judge_for,
)
from core.rag.results import (
    SUMMARY_FILE,
    USAGE_FILE,
    _ragas_run,
    load_scores,
    rows_frame,
    save_scores,
)
from core.rag.scoring import Job, ScoreRow, plan_jobs, score_jobs
from core.rag.summary import summarize_scores
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import stage_run

if TYPE_CHECKING:
    from core.llm.client import LLM


def _rag_runs(rag_runs: Mapping[str, str]) -> tuple[dict[str, Run], str]:
    if not rag_runs:
        raise ConfigError("No rag run to score.", fix="generate answers first")
    runs = {label: load_run(rid) for label, rid in rag_runs.items()}
    qa_ids = set()
    for label, run in runs.items():
        if run.kind != "rag":
            raise ConfigError(f"Run {run.id} ({label}) is a {run.kind} run, not a rag run.")
        qa_ids.add(run.manifest.parents.get("qa"))
    if len(qa_ids) != 1:
        raise LineageError(
            "The rag runs answer different qa runs, so their scores cannot be compared.",
            found=", ".join(
                f"{label}: {r.manifest.parents.get('qa')}" for label, r in runs.items()
            ),
            fix="generate both retrievers' answers for the same qa run",
        )
    return runs, str(next(iter(qa_ids)))


def _judge_info(judge: LLM | None, embeddings: Any) -> dict[str, Any]:
    return {
        "judge": None
        if judge is None
        else {"label": judge.label, "identity": judge.backend.identity},
        "low_confidence_judge": is_low_confidence_judge(judge),
        "embeddings": None
        if embeddings is None
        else getattr(embeddings, "label", type(embeddings).__name__),
    }


def evaluate_rag(
    rag_runs: Mapping[str, str],
    *,
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig | None = None,
    name: str = "",
    run: Run | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """Score rag runs (retriever label -> rag run id, e.g. {"base": ..., "tuned": ...}) into a
    new ragas_eval run, or into `run` (one a background job was started for). The judge LLM and
    the embeddings are explicit: a chosen metric that needs one that is missing raises
    ConfigError before any work."""
    config = config or RagasConfig()
    check_components(config, judge, embeddings)
    judge = judge_for(config, judge)  # no judged metric: no judge recorded, no caveat about one
    runs, qa_id = _rag_runs(rag_runs)
    samples = {label: load_samples(run) for label, run in runs.items()}
    run = _ragas_eval_run(
        run,
        name=name
        or f"RAGAS: {' vs '.join(runs)} · {sum(len(s) for s in samples.values())} samples",
        config={
            **config.to_dict(),
            "retrievers": dict(rag_runs),
            "qa_run_id": qa_id,
            **_judge_info(judge, embeddings),
        },
        parents={f"rag_{label}": r.id for label, r in runs.items()},
    )
    jobs = plan_jobs(samples, config)
    return _score_into(
        run, jobs, [], judge, embeddings, config, runs, on_progress, should_stop, jobs
    )


def _ragas_eval_run(
    run: Run | None, *, name: str, config: dict[str, Any], parents: dict[str, str]
) -> Run:
    """A new ragas_eval run, or `run` (made before its job started) with the name it was given
    or else `name`, and the config and parents added."""
    if run is None:
        return create_run("ragas_eval", name=name, config=config, parents=parents)
    run.manifest.name = run.manifest.name or name
    run.manifest.config = {**run.manifest.config, **config}
    run.manifest.parents = {**run.manifest.parents, **parents}
    run.save()
    return run


def _question_clusters(run: Run) -> dict[str, int]:
    """Question id -> cluster (questions sharing a chunk) in the evaluated question set; {} when
    it cannot be read (each question is then its own cluster)."""
    from core.errors import RagbenchError
    from core.questions.dataset import load_qa
    from core.questions.splits import question_clusters

    qa_run_id = run.manifest.config.get("qa_run_id")
    try:
        items = load_qa(qa_run_id) if qa_run_id else []
    except RagbenchError:
        return {}
    return {i.id: c for i, c in zip(items, question_clusters(items), strict=True)}


def _score_into(
    run: Run,
    jobs: list[Job],
    kept: list[ScoreRow],
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig,
    rag_runs: Mapping[str, Run],
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
    plan: Sequence[Job],
) -> Run:
    """Score `jobs`, merge them with `kept` rows in the order of `plan`, and save everything."""
    run.set_status("running")
    with stage_run(run):
        rows, usage = score_jobs(
            jobs,
            judge=judge,
            embeddings=embeddings,
            config=config,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    order = {(j.retriever, j.sample.id, j.metric, j.repeat): i for i, j in enumerate(plan)}
    all_rows = sorted(
        [*kept, *rows],
        key=lambda r: order.get((r.retriever, r.sample_id, r.metric, r.repeat), len(order)),
    )
    frame = rows_frame(all_rows)
    save_scores(run, frame)
    summary = summarize_scores(frame, config, _question_clusters(run))
    summary.update(
        metrics=list(config.metrics),
        retrievers_order=list(rag_runs),
        rag_runs={label: r.id for label, r in rag_runs.items()},
        qa_run_id=run.manifest.config.get("qa_run_id"),
        string_similarity=usage["string_similarity"],
        **_judge_info(judge, embeddings),
        n_rescored=len(rows),
    )
    run.write_json(SUMMARY_FILE, summary)
    run.write_json(USAGE_FILE, {"scoring": usage, "generation": _generation_usage(rag_runs)})
    n_failed = int((frame["status"] == "failed").sum())
    run.set_status(
        "done",
        n_samples=int(frame["sample_id"].nunique()),
        n_judgements=int(len(frame)),
        n_failed=n_failed,
        low_confidence_judge=summary["low_confidence_judge"],
    )
    return run


def _generation_usage(rag_runs: Mapping[str, Run]) -> dict[str, Any]:
    out = {}
    for label, run in rag_runs.items():
        try:
            out[label] = run.read_json("usage.json").get("generation", {})
        except RunError:
            out[label] = {}
    return out


def retry_failed(
    ragas_eval_run_id: str,
    *,
    judge: LLM | None,
    embeddings: Any,
    config: RagasConfig | None = None,
    run: Run | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """A new ragas_eval run (or `run`, made for a background job) that re-scores only the failed judgements of an earlier one and keeps
    every other row (parents: the same rag runs plus `retry_of`). Judgements that succeeded
    before are not asked again; a failed one was never cached, so it is really asked again."""
    old = _ragas_run(ragas_eval_run_id)
    config = config or RagasConfig.from_dict(old.manifest.config)
    judge = judge_for(config, judge)
    summary = old.read_json(SUMMARY_FILE)
    scores = load_scores(old)
    rag_ids = summary.get("rag_runs") or old.manifest.config.get("retrievers", {})
    runs, qa_id = _rag_runs(rag_ids)
    samples = {label: {s.id: s for s in load_samples(r)} for label, r in runs.items()}
    failed_mask = scores["status"] == "failed"
    failed = scores[failed_mask]
    needed = RagasConfig.from_dict(
        {**config.to_dict(), "metrics": sorted(set(failed["metric"])) or list(config.metrics)}
    )
    check_components(needed, judge, embeddings)
    jobs = []
    for rec in failed.itertuples(index=False):
        sample = samples.get(rec.retriever, {}).get(str(rec.sample_id))
        if sample is None:
            raise RunError(
                f"Sample {rec.sample_id} of {rec.retriever} is no longer in its rag run."
            )
        jobs.append(Job(rec.retriever, sample, rec.metric, int(rec.repeat)))
    kept = [_row_of(rec) for rec in scores[~failed_mask].to_dict(orient="records")]
    run = _ragas_eval_run(
        run,
        name=f"{old.manifest.name} · retried {len(jobs)} failed",
        config={
            **old.manifest.config,
            **config.to_dict(),
            "retry_of": old.id,
            "retrievers": dict(rag_ids),
            "qa_run_id": qa_id,
            **_judge_info(judge, embeddings),
        },
        parents={**{f"rag_{label}": r.id for label, r in runs.items()}, "retry_of": old.id},
    )
    plan = plan_jobs({label: list(s.values()) for label, s in samples.items()}, config)
    return _score_into(
        run, jobs, kept, judge, embeddings, config, runs, on_progress, should_stop, plan
    )


def _row_of(rec: Mapping[str, Any]) -> ScoreRow:
    def num(key: str) -> int:
        value = rec.get(key)
        return (
            0 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)
        )

    value = rec.get("value")
    return ScoreRow(
        retriever=str(rec["retriever"]),
        sample_id=str(rec["sample_id"]),
        metric=str(rec["metric"]),
        repeat=num("repeat"),
        value=math.nan if value is None else float(value),
        status=str(rec.get("status") or "ok"),
        error=str(rec.get("error") or ""),
        detail=str(rec.get("detail") or ""),
        reason=str(rec.get("reason") or ""),
        reference_source=str(rec.get("reference_source") or ""),
        # Rows carried over cost nothing in this run.
        calls=0,
        cached=0,
        prompt_tokens=0,
        completion_tokens=0,
    )


@dataclass(frozen=True)
class RetrieverChoice:
    """One retriever to compare: a label ("base", "tuned"), its loaded model and its spec."""

    label: str
    model: Any
    spec: Any  # core.embeddings.ModelSpec
    hybrid: bool = False  # the model's hits fused with BM25 (reciprocal rank fusion)
    reranker: str = ""  # the model's top N reordered by this cross-encoder ('run:ID', …)


def compare_retrievers(
    qa_run_id: str,
    retrievers: Sequence[RetrieverChoice],
    *,
    llm: LLM,
    judge: LLM | None,
    embeddings: Any,
    rag_config: Any,
    ragas_config: RagasConfig | None = None,
    chroma: Any = None,
    run: Run | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """The whole stage: answer the qa run's questions with each retriever (rag runs), then score
    them together (a ragas_eval run, or `run` when a background job was started for it: each
    finished rag run is named among its parents at once, so a stop keeps what was finished).
    Missing judge or embeddings fail before any work."""
    ragas_config = ragas_config or RagasConfig()
    check_components(ragas_config, judge, embeddings)
    labels = [r.label for r in retrievers]
    if not retrievers or len(set(labels)) != len(labels):
        raise ConfigError(f"Retriever labels must be unique and non-empty, got {labels}.")
    if run is not None:
        run.set_status("running")
    with contextlib.nullcontext() if run is None else stage_run(run):
        rag_ids = _answer_all(
            qa_run_id, retrievers, llm, rag_config, chroma, run, on_progress, should_stop
        )
    return evaluate_rag(
        rag_ids,
        judge=judge,
        embeddings=embeddings,
        config=ragas_config,
        run=run,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def _answer_all(
    qa_run_id: str,
    retrievers: Sequence[RetrieverChoice],
    llm: LLM,
    rag_config: Any,
    chroma: Any,
    ragas_run: Run | None,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> dict[str, str]:
    """One rag run per retriever; each finished one is recorded on `ragas_run` at once."""
    from core.rag.answering import run_rag

    rag_ids: dict[str, str] = {}
    for number, choice in enumerate(retrievers, 1):
        which = f"{choice.label} ({number}/{len(retrievers)})"
        run = run_rag(
            qa_run_id,
            model=choice.model,
            model_spec=choice.spec,
            llm=llm,
            config=dataclasses.replace(rag_config, hybrid=choice.hybrid, reranker=choice.reranker),
            chroma=chroma,
            retriever_label=choice.label,
            on_progress=labelled(on_progress, which),
            should_stop=should_stop,
        )
        rag_ids[choice.label] = run.id
        if ragas_run is not None:
            ragas_run.manifest.parents[f"rag_{choice.label}"] = run.id
            ragas_run.set_status("running", answered=dict(rag_ids))
    return rag_ids
