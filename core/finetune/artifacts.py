"""What a model run folder holds: the saved model, the checkpoints, metrics.json, and a zip of the
model for download."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.embeddings import RUN_MODEL_DIR
from core.errors import RunError
from core.runs.folders import Run, load_run

if TYPE_CHECKING:
    pass


MODEL_DIR = RUN_MODEL_DIR


CHECKPOINT_DIR = "checkpoints"


METRICS_FILE = "metrics.json"


def last_checkpoint(run: Run) -> str | None:
    """The newest `checkpoint-<step>` folder of a run, or None."""
    folder = run.path / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    steps = [
        (int(p.name.split("-")[-1]), p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[-1].isdigit()
    ]
    return str(max(steps)[1]) if steps else None


def read_metrics(run: Run | str) -> dict[str, Any] | None:
    """A model run's metrics.json (base and final per-dim validation metrics), or None."""
    run = load_run(run) if isinstance(run, str) else run
    path = run.path / METRICS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def model_zip_bytes(run_id: str) -> bytes:
    """The saved model folder of a run as a zip (for a download button)."""
    run = load_run(run_id)
    folder = run.path / MODEL_DIR
    if not folder.is_dir():
        raise RunError(f"Run {run_id} has no saved model.", fix="wait for the job to finish")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(run_id) / path.relative_to(folder))
    return buffer.getvalue()


def validation_table(metrics: dict[str, Any]) -> list[dict[str, object]]:
    """metrics.json as rows: base vs tuned validation ndcg@10 per dim, and the difference."""
    rows = []
    for dim in metrics.get("dims", []):
        base = metrics.get("base", {}).get(str(dim))
        final = metrics.get("final", {}).get(str(dim))
        rows.append(
            {
                "dim": dim,
                "base ndcg@10": base,
                "tuned ndcg@10": final,
                "Δ": None if base is None or final is None else final - base,
            }
        )
    return rows
