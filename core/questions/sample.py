"""The hand-written sample question set (data/sample/qa_sample.jsonl) mapped onto a corpus run
built from the sample PDF: each question's gold chunks are the chunks holding its evidence quote."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import SAMPLE_DIR
from core.documents.corpus import Chunk, load_chunks
from core.errors import InputError, RunError
from core.questions.dataset import QAItem
from core.questions.leakage import EvidenceIndex, match_evidence
from core.questions.splits import (
    SplitConfig,
    assign_splits,
    check_no_leak,
)
from core.runs.folders import Run

if TYPE_CHECKING:
    pass


SAMPLE_QA_PATH = SAMPLE_DIR / "qa_sample.jsonl"


def find_evidence_chunk(evidence: str, chunks: Sequence[Chunk]) -> tuple[str | None, str]:
    """The primary chunk holding a verbatim quote (core.questions.leakage.match_evidence) and how it was
    found: "contained", "overlap" (straddling two chunks) or "not_found"."""
    found = match_evidence(evidence, chunks)
    return found.primary, found.how


def read_sample_qa(path: Path = SAMPLE_QA_PATH) -> list[dict[str, Any]]:
    """The hand-written sample set: id, question, evidence, page, reference_answer."""
    if not path.exists():
        raise InputError(f"The sample question set {path} is missing.", fix="restore data/sample")
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    for row in rows:
        missing = {"id", "question", "evidence"} - set(row)
        if missing:
            raise InputError(
                f"Sample item {row.get('id', '?')} lacks {', '.join(sorted(missing))}.",
                fix="fix data/sample/qa_sample.jsonl",
            )
    return rows


def load_sample_qa(
    corpus_run_id: str,
    *,
    split_config: SplitConfig | None = None,
    path: Path = SAMPLE_QA_PATH,
) -> Run:
    """A qa run of the hand-written sample questions on a corpus run built from the sample PDF.

    Each question's gold chunks are every chunk containing its evidence quote (core.questions.leakage);
    questions whose quote is in no chunk are kept as rejected (`evidence_not_found`); none found
    at all raises."""
    from core.questions.gate import gate_counts
    from core.questions.qa_runs import save_qa_run

    rows = read_sample_qa(path)
    chunks = load_chunks(corpus_run_id)
    if not chunks:
        raise RunError(f"Corpus run {corpus_run_id} has no chunks.")
    matches = EvidenceIndex.of(chunks).match_many([row["evidence"] for row in rows])
    items: list[QAItem] = []
    for row, found in zip(rows, matches, strict=True):
        meta: dict[str, object] = {"page": row.get("page"), "match": found.how}
        item = QAItem(
            id=str(row["id"]),
            question=row["question"],
            chunk_id=found.primary or "",
            gold_chunk_ids=found.gold_ids[1:],
            evidence=row["evidence"],
            linked_chunk_ids=[c for c in found.linked_ids if c not in found.gold_ids],
            reference_answer=row.get("reference_answer"),
            origin="sample",
            meta=meta,
        )
        if found.primary is None:
            meta["reason_text"] = "its evidence quote is in no chunk of this corpus"
            item = item.model_copy(update={"status": "rejected", "reason": "evidence_not_found"})
        items.append(item)
    found = sum(i.status == "accepted" for i in items)
    if not found:
        raise InputError(
            f"None of the {len(items)} sample questions' quotes is in corpus run {corpus_run_id}.",
            fix="pick the corpus built from the sample (Documents: Use the sample corpus)",
        )
    items = assign_splits(items, split_config)
    check_no_leak(items, {c.id: c.text for c in chunks})
    counts = gate_counts(items)
    return save_qa_run(
        items,
        corpus_run_id,
        name="Sample questions (hand-written)",
        config={
            "source": "sample",
            "file": str(path.name),
            "split": (split_config or SplitConfig()).to_dict(),
        },
        gate_report={**counts, "notes": ["hand-written questions; the gate was not applied"]},
    )
