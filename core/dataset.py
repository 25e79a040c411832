"""The question dataset contract: a qa run stores `qa.jsonl`, one QAItem a line.

Only accepted items with a split are used for training and evaluation; rejected items stay in the
file with their reason so the gate's decisions can be reviewed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.errors import RunError
from core.runs import Run, load_run, write_text_atomic

QA_FILE = "qa.jsonl"
Split = Literal["train", "validation", "test"]


class QAItem(BaseModel):
    """One (question, gold chunk) pair, with the gate's verdict and the split of its chunk."""

    id: str
    question: str
    chunk_id: str
    split: Split | None = None
    status: Literal["accepted", "rejected"] = "accepted"
    reason: str = ""  # why it was rejected (empty when accepted)
    reference_answer: str | None = None
    origin: Literal["generated", "manual", "imported", "sample"] = "generated"
    meta: dict[str, object] = Field(default_factory=dict)


def save_qa(run: Run, items: list[QAItem]) -> None:
    """Write the qa run's items atomically."""
    write_text_atomic(run.artifact(QA_FILE), "".join(i.model_dump_json() + "\n" for i in items))


def load_qa(run: Run | str, *, accepted_only: bool = True, split: Split | None = None) -> list[QAItem]:
    """Read a qa run's items; by default only accepted ones, optionally of one split."""
    if isinstance(run, str):
        run = load_run(run)
    if run.kind != "qa":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a qa run.")
    path = run.artifact(QA_FILE)
    if not path.exists():
        raise RunError(f"QA run {run.id} has no {QA_FILE}.", fix="re-run the Questions stage")
    items: list[QAItem] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(QAItem.model_validate_json(line))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise RunError(
                    f"QA run {run.id} has a damaged {QA_FILE} (line {number}).",
                    found=str(exc).splitlines()[0][:200],
                    fix="re-run or re-import the question set",
                ) from exc
    from core.splits import check_no_leak  # here: core.splits imports this module

    check_no_leak([i for i in items if i.status == "accepted"])  # refuse a leaking dataset loudly
    if accepted_only:
        items = [i for i in items if i.status == "accepted"]
    if split is not None:
        items = [i for i in items if i.split == split]
    return items
