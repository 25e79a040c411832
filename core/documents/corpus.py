"""The chunk contract shared by every stage: a corpus run stores `chunks.jsonl`, one Chunk a line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from core.runs.folders import Run, read_jsonl_artifact, write_text_atomic

CHUNKS_FILE = "chunks.jsonl"


def chunk_id_for(text: str) -> str:
    """Deterministic chunk id from content: the same text always gets the same id."""
    return "c_" + hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that is embedded, retrieved and asked about."""

    id: str
    text: str
    source: str  # file name as uploaded (sanitised)
    page: int | None = None  # 1-based page of the chunk's start, when the format has pages
    doc_id: str = ""
    chunk_index: int = 0  # position within its document
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(
            id=data["id"],
            text=data["text"],
            source=data.get("source", ""),
            page=data.get("page"),
            doc_id=data.get("doc_id", ""),
            chunk_index=int(data.get("chunk_index", 0)),
            metadata=dict(data.get("metadata") or {}),
        )


def save_chunks(run: Run, chunks: list[Chunk]) -> None:
    """Write the corpus run's chunks atomically."""
    lines = "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in chunks)
    write_text_atomic(run.artifact(CHUNKS_FILE), lines)


def load_chunks(run: Run | str) -> list[Chunk]:
    """Read a corpus run's chunks (a run object or id)."""
    return read_jsonl_artifact(
        run,
        "corpus",
        CHUNKS_FILE,
        lambda line: Chunk.from_dict(json.loads(line)),
        label="Corpus run",
        fix="re-run the Documents stage to rebuild the corpus",
    )
