"""The question dataset contract: a qa run stores `qa.jsonl`, one QAItem a line.

Only accepted items with a split are used for training and evaluation; rejected items stay in the
file with their reason so the gate's decisions can be reviewed.

Relevance: a question's gold chunks are every chunk that contains its evidence (chunks overlap, so
a quote can sit in two); without evidence (generated questions, imports without an evidence
column) the gold chunk is the one it was written from. Chunks that share a long run of words with
the evidence are linked to it, so the split keeps them on the same side.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from core.questions.leakage import check_no_leak
from core.questions.sources import SOURCE_OF_ORIGIN, Source
from core.runs.folders import Run, load_run, read_jsonl_artifact, write_text_atomic

QA_FILE = "qa.jsonl"
Split = Literal["train", "validation", "test"]
Origin = Literal["generated", "manual", "imported", "sample", "heading", "cloze"]


class QAItem(BaseModel):
    """One question with its gold chunk(s), the gate's verdict and the split of its chunks."""

    id: str
    question: str
    chunk_id: str  # the primary gold chunk: the one it was written from (the training positive)
    gold_chunk_ids: list[str] = Field(default_factory=list)  # every relevant chunk; [] = chunk_id
    evidence: str | None = None  # a verbatim quote of the answer, when known
    linked_chunk_ids: list[str] = Field(default_factory=list)  # share the evidence's text
    split: Split | None = None
    status: Literal["accepted", "rejected"] = "accepted"
    reason: str = ""  # why it was rejected (empty when accepted)
    reference_answer: str | None = None
    origin: Origin = "generated"
    meta: dict[str, object] = Field(default_factory=dict)
    # The training positive when it is not the chunk's whole text: a heading's chunk without the
    # heading, a cloze sentence's chunk without the sentence (so the pair is not a string match).
    positive: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _evidence_from_meta(cls, data: Any) -> Any:
        """Runs saved before `evidence` was a field kept the quote in meta."""
        if isinstance(data, dict) and not data.get("evidence"):
            meta = data.get("meta") or {}
            if isinstance(meta, dict) and isinstance(meta.get("evidence"), str):
                data = {**data, "evidence": meta["evidence"]}
        return data

    @property
    def source(self) -> Source:
        """Who wrote the question: a person, an LLM, a document heading or a cloze sentence."""
        return SOURCE_OF_ORIGIN[self.origin]

    @property
    def gold_ids(self) -> list[str]:
        """The chunks that count as relevant for this question (the primary one first)."""
        ids = [self.chunk_id, *self.gold_chunk_ids] if self.chunk_id else list(self.gold_chunk_ids)
        return list(dict.fromkeys(ids))

    @property
    def split_chunk_ids(self) -> list[str]:
        """Every chunk that must sit in this question's split: gold and linked chunks."""
        return list(dict.fromkeys([*self.gold_ids, *self.linked_chunk_ids]))


def _evidence_chunk_texts(run: Run, items: list[QAItem]) -> dict[str, str] | None:
    """The texts of the chunks train questions point at, for the text leak check; None when no
    held-out item has evidence (nothing to compare) or the corpus run cannot be read."""
    from core.documents.corpus import CHUNKS_FILE, Chunk
    from core.errors import RunError

    if not any(i.evidence and i.split in ("validation", "test") for i in items):
        return None
    wanted = {c for i in items if i.split == "train" for c in i.gold_ids}
    corpus_id = run.manifest.parents.get("corpus")
    try:
        corpus = load_run(corpus_id, root=run.path.parent.parent) if corpus_id else None
    except RunError:
        return None
    path = corpus.artifact(CHUNKS_FILE) if corpus is not None else None
    if path is None or not path.exists():
        return None
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                chunk = Chunk.from_dict(json.loads(line))
                if chunk.id in wanted:
                    texts[chunk.id] = chunk.text
    return texts


def save_qa(run: Run, items: list[QAItem]) -> None:
    """Write the qa run's items atomically."""
    write_text_atomic(run.artifact(QA_FILE), "".join(i.model_dump_json() + "\n" for i in items))


def load_qa(
    run: Run | str, *, accepted_only: bool = True, split: Split | None = None
) -> list[QAItem]:
    """Read a qa run's items; by default only accepted ones, optionally of one split.

    Every load checks the accepted items for leaks between splits (by chunk, question and
    evidence text against the corpus run's chunks) and refuses a leaking dataset loudly."""
    run = load_run(run) if isinstance(run, str) else run
    items = read_jsonl_artifact(
        run,
        "qa",
        QA_FILE,
        QAItem.model_validate_json,
        label="QA run",
        fix="re-run the Questions stage or re-import the question set",
    )
    accepted = [i for i in items if i.status == "accepted"]
    check_no_leak(accepted, _evidence_chunk_texts(run, accepted))
    if accepted_only:
        items = [i for i in items if i.status == "accepted"]
    if split is not None:
        items = [i for i in items if i.split == split]
    return items
