"""A ragas_eval run's files: scores.csv (one row per job, failures kept with their reason),
summary.json and usage.json, read back as a `RagasEvalResult`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import RunError
from core.rag.answering import RagSample, load_samples
from core.runs.folders import Run, load_run, write_text_atomic

if TYPE_CHECKING:
    from core.rag.scoring import ScoreRow


SCORES_FILE = "scores.csv"


SUMMARY_FILE = "summary.json"


USAGE_FILE = "usage.json"


SCORE_COLUMNS = [
    "retriever",
    "sample_id",
    "metric",
    "repeat",
    "value",
    "status",
    "error",
    "detail",
    "reason",
    "reference_source",
    "calls",
    "cached",
    "prompt_tokens",
    "completion_tokens",
]


@dataclass(frozen=True)
class RagasEvalResult:
    """A loaded ragas_eval run."""

    run_id: str
    scores: pd.DataFrame
    summary: dict[str, Any]
    usage: dict[str, Any]
    samples: dict[str, list[RagSample]] = field(default_factory=dict)  # retriever -> samples


def rows_frame(rows: Sequence[ScoreRow]) -> pd.DataFrame:
    """Score rows as a table with SCORE_COLUMNS."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=SCORE_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["repeat"] = frame["repeat"].astype(int)
    return frame


def save_scores(run: Run, scores: pd.DataFrame) -> None:
    """Write scores.csv atomically."""
    write_text_atomic(run.artifact(SCORES_FILE), scores.to_csv(index=False))


def load_scores(run: Run | str) -> pd.DataFrame:
    """A ragas_eval run's scores.csv as a table (empty text cells as '')."""
    run = _ragas_run(run)
    path = run.artifact(SCORES_FILE)
    if not path.exists():
        raise RunError(f"Run {run.id} has no {SCORES_FILE}.", fix="re-run the scoring")
    frame = pd.read_csv(path, dtype={"sample_id": str, "retriever": str, "metric": str})
    for col in ("status", "error", "detail", "reason", "reference_source"):
        frame[col] = frame[col].fillna("").astype(str)
    return frame


def _ragas_run(run: Run | str) -> Run:
    run = load_run(run) if isinstance(run, str) else run
    if run.kind != "ragas_eval":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a ragas_eval run.")
    return run


def load_ragas_eval(run: Run | str, with_samples: bool = True) -> RagasEvalResult:
    """Read a finished ragas_eval run (and its rag runs' samples)."""
    run = _ragas_run(run)
    summary = run.read_json(SUMMARY_FILE)
    samples: dict[str, list[RagSample]] = {}
    if with_samples:
        for label, rid in summary.get("rag_runs", {}).items():
            try:
                samples[label] = load_samples(rid)
            except RunError:
                samples[label] = []
    usage_path = run.artifact(USAGE_FILE)
    usage = json.loads(usage_path.read_text(encoding="utf-8")) if usage_path.exists() else {}
    return RagasEvalResult(run.id, load_scores(run), summary, usage, samples)


def export_json(result: RagasEvalResult) -> str:
    """The whole result as JSON: summary, usage, scores and samples."""
    return json.dumps(
        {
            "run_id": result.run_id,
            "summary": result.summary,
            "usage": result.usage,
            "scores": json.loads(result.scores.to_json(orient="records")),
            "samples": {k: [s.model_dump() for s in v] for k, v in result.samples.items()},
        },
        ensure_ascii=False,
        indent=1,
        default=str,
    )
