"""The question dataset contract: a qa run stores `qa.jsonl`, one QAItem a line.

Only accepted items with a split are used for training and evaluation; rejected items stay in the
file with their reason so the gate's decisions can be reviewed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.runs import Run, read_jsonl_artifact, write_text_atomic

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


def load_qa(
    run: Run | str, *, accepted_only: bool = True, split: Split | None = None
) -> list[QAItem]:
    """Read a qa run's items; by default only accepted ones, optionally of one split."""
    items = read_jsonl_artifact(
        run,
        "qa",
        QA_FILE,
        QAItem.model_validate_json,
        label="QA run",
        fix="re-run the Questions stage or re-import the question set",
    )
    from core.splits import check_no_leak  # here: core.splits imports this module

    check_no_leak([i for i in items if i.status == "accepted"])  # refuse a leaking dataset loudly
    if accepted_only:
        items = [i for i in items if i.status == "accepted"]
    if split is not None:
        items = [i for i in items if i.split == split]
    return items
