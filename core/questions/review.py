"""The review grid: a qa run's items as editable rows, and the edits (question text, chunk, status,
reference answer, added rows) saved as a new qa run whose chunks keep their splits."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.documents.corpus import load_chunks
from core.errors import InputError
from core.questions.dataset import QAItem, load_qa
from core.questions.gate import REASONS
from core.questions.qa_runs import corpus_of, save_qa_run
from core.questions.splits import SplitConfig, assign_splits
from core.runs.folders import Run, load_run
from core.text import cut_at_word

if TYPE_CHECKING:
    pass


REVIEW_COLUMNS = (
    "id",
    "question",
    "passage",  # beside the question: what it is paired with
    "status",
    "reason",
    "why",
    "gold chunks",
    "chunk_id",
    "split",
    "reference_answer",
    "origin",
    "source",
)
PASSAGE_CHARS = 300  # of the passage shown beside a question (read-only)


_STATUS_WORDS = {
    "accepted": "accepted",
    "accept": "accepted",
    "approve": "accepted",
    "approved": "accepted",
    "rejected": "rejected",
    "reject": "rejected",
}


def review_rows(
    items: Sequence[QAItem], texts: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Rows for the review grid (one per item, REVIEW_COLUMNS); with the chunks' `texts`, the
    passage a question is paired with (its training positive, else its chunk) beside it."""
    texts = texts or {}

    def passage(item: QAItem) -> str:
        text = " ".join((item.positive or texts.get(item.chunk_id, "")).split())
        return cut_at_word(text, PASSAGE_CHARS)

    return [
        {
            "id": i.id,
            "question": i.question,
            "status": i.status,
            "reason": i.reason,
            "why": str(i.meta.get("reason_text") or i.meta.get("evidence_note") or ""),
            "gold chunks": len(i.gold_ids),
            "chunk_id": i.chunk_id,
            "passage": passage(i),
            "split": i.split or "",
            "reference_answer": i.reference_answer or "",
            "origin": i.origin,
            "source": i.source,
        }
        for i in items
    ]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def apply_review(
    items: Sequence[QAItem], rows: Sequence[dict[str, Any]], chunk_ids: set[str]
) -> list[QAItem]:
    """The items after a review: edited questions, status changes (approve overrules the gate,
    reject records `reviewer`), new rows added by hand (origin "manual"), deleted rows dropped.

    Raises InputError naming the rows that lack a question or point at an unknown chunk."""
    by_id = {i.id: i for i in items}
    out: list[QAItem] = []
    problems: list[str] = []
    for number, row in enumerate(rows, start=1):
        question = _text(row.get("question"))
        chunk_id = _text(row.get("chunk_id"))
        item_id = _text(row.get("id"))
        status_word = _text(row.get("status")).lower() or "accepted"
        if not question and not chunk_id and item_id not in by_id:
            continue  # an empty row the grid added
        status = _STATUS_WORDS.get(status_word)
        if status is None:
            problems.append(f"row {number}: status {status_word!r} (use accepted or rejected)")
            continue
        if not question:
            problems.append(f"row {number}: no question")
            continue
        original = by_id.get(item_id)
        # A rejected item may keep a chunk the corpus lacks (e.g. a quote found nowhere).
        unchanged_rejected = (
            original is not None and chunk_id == original.chunk_id and status == "rejected"
        )
        if chunk_id not in chunk_ids and not unchanged_rejected:
            problems.append(
                f"row {number}: chunk id {chunk_id or '(empty)'!r} is not in the corpus"
            )
            continue
        answer = _text(row.get("reference_answer")) or None
        if original is None:
            out.append(
                QAItem(
                    id=f"m_{hashlib.sha256(f'{chunk_id}|{question}'.encode()).hexdigest()[:12]}",
                    question=question,
                    chunk_id=chunk_id,
                    status=status,  # type: ignore[arg-type]
                    reason="reviewer" if status == "rejected" else "",
                    reference_answer=answer,
                    origin="manual",
                    meta={"reviewed": True},
                )
            )
            continue
        meta = dict(original.meta)
        update: dict[str, Any] = {"reference_answer": answer}
        if question != original.question:
            meta.setdefault("before_edit", original.question)
            meta["edited"] = True
            update["question"] = question
        if chunk_id != original.chunk_id:
            # The evidence's gold and linked chunks belonged to the old chunk: a moved question
            # is relevant to the chunk the reviewer chose only.
            meta["moved_from_chunk"] = original.chunk_id
            update.update(
                chunk_id=chunk_id,
                split=None,
                gold_chunk_ids=[],
                linked_chunk_ids=[],
                positive=None,  # the old chunk's text without its heading or sentence
            )
        if status != original.status:
            meta["reviewed"] = True
            if status == "accepted":
                meta["overruled"] = original.reason
                update["reason"] = ""
                meta.pop("reason_text", None)
            else:
                update["reason"] = "reviewer"
                meta["reason_text"] = REASONS["reviewer"]
            update["status"] = status
        update["meta"] = meta
        out.append(original.model_copy(update=update))
    if problems:
        raise InputError(
            f"{len(problems)} review row(s) cannot be saved.",
            found="; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""),
            fix="give every row a question and a chunk id from this corpus",
        )
    ids = Counter(i.id for i in out)
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        raise InputError("Review rows repeat item ids.", found=", ".join(duplicated[:5]))
    return out


def save_review(source_run_id: str, rows: Sequence[dict[str, Any]], *, name: str = "") -> Run:
    """Save review edits of a qa run as a new qa run (parents: corpus and "source").

    Chunks keep their split; chunks new to the set are dealt with the source run's split
    config."""
    source = load_run(source_run_id)
    corpus_id = corpus_of(source)
    chunk_ids = {c.id for c in load_chunks(corpus_id)}
    original = load_qa(source, accepted_only=False)
    items = apply_review(original, rows, chunk_ids)
    if not items:
        raise InputError("The review leaves no questions.", fix="keep or add at least one row")
    split_cfg = SplitConfig.from_dict(
        source.manifest.config.get("split")
        or source.manifest.config.get("generation", {}).get("split")
        or {}
    )
    items = assign_splits(items, split_cfg, keep_existing=True)
    before = {i.id: i for i in original}
    edited = sum(1 for i in items if i.meta.get("edited"))
    added = sum(1 for i in items if i.id not in before)
    changed = sum(1 for i in items if i.id in before and before[i.id].status != i.status)
    return save_qa_run(
        items,
        corpus_id,
        name=name or f"Reviewed: {source.manifest.name}"[:120],
        config={
            "source": "review",
            "reviewed_run": source.id,
            "split": split_cfg.to_dict(),
            "edits": {
                "edited": edited,
                "added": added,
                "status_changed": changed,
                "removed": len(set(before) - {i.id for i in items}),
            },
        },
        gate_report={"notes": [f"reviewed from {source.id}; reviewer decisions are final"]},
        source_run_id=source.id,
    )
