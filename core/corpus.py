"""The chunk contract shared by every stage: a corpus run stores `chunks.jsonl`, one Chunk a line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import RunError
from core.runs import Run, load_run, write_text_atomic

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
    if isinstance(run, str):
        run = load_run(run)
    if run.kind != "corpus":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a corpus run.")
    path = run.artifact(CHUNKS_FILE)
    if not path.exists():
        raise RunError(f"Corpus run {run.id} has no {CHUNKS_FILE}.", fix="re-run the Documents stage")
    chunks: list[Chunk] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                chunks.append(Chunk.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise RunError(
                    f"Corpus run {run.id} has a damaged {CHUNKS_FILE} (line {number}).",
                    found=str(exc)[:200],
                    fix="re-run the Documents stage to rebuild the corpus",
                ) from exc
    return chunks
