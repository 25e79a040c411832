"""Reading a question file (CSV, TSV, JSONL, JSON or Parquet) and saying which column holds
what: the question, the chunk (text or id), the reference answer, the split, the evidence quote,
with the usual names guessed."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


# Column names people use, best guess first.
_QUESTION_NAMES = ("question", "anchor", "query", "user_input", "questions", "q")


_CHUNK_TEXT_NAMES = (
    "positive",
    "context",
    "chunk",
    "passage",
    "document",
    "text",
    "reference_context",
)


_CHUNK_ID_NAMES = ("chunk_id", "context_id", "doc_id", "passage_id", "corpus_id")


_ANSWER_NAMES = ("reference_answer", "answer", "reference", "ground_truth", "response")


_EVIDENCE_NAMES = ("evidence", "quote", "supporting_text", "answer_span", "rationale")


def read_table(name: str, data: bytes) -> pd.DataFrame:
    """A table from CSV, TSV, JSONL, JSON (a list of records) or Parquet bytes, by extension."""
    import pandas as pd

    ext = Path(name).suffix.lower()
    kind = _EXTENSIONS.get(ext)
    if kind is None:
        raise InputError(
            f"Cannot import {name!r}: unknown file type {ext or '(none)'}.",
            fix="upload a .csv, .tsv, .jsonl, .json or .parquet file",
        )
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(
                io.BytesIO(data),
                sep="\t" if kind == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
            )
        elif kind == "jsonl":
            frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        elif kind == "json":
            frame = pd.DataFrame(json.loads(data.decode("utf-8")))
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise InputError(
            f"Cannot read {name!r} as {kind.upper()}.",
            found=f"{type(exc).__name__}: {str(exc)[:200]}",
            fix="check the file is valid and not truncated",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - parsers raise many types (ArrowInvalid, ParserError)
        raise InputError(
            f"Cannot read {name!r} as {kind.upper()}.",
            found=f"{type(exc).__name__}: {str(exc)[:200]}",
            fix="check the file is valid and not truncated",
        ) from exc
    if frame.empty:
        raise InputError(f"{name!r} has no rows.", fix="upload a file with at least one pair")
    frame.columns = [str(c) for c in frame.columns]
    return frame


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what. `chunk_kind` says whether `chunk` holds chunk texts or ids."""

    question: str
    chunk: str
    chunk_kind: Literal["text", "id"] = "text"
    answer: str | None = None
    split: str | None = None
    evidence: str | None = None  # a verbatim quote of the answer inside the chunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guess_mapping(columns: Sequence[str]) -> ColumnMapping | None:
    """A best guess at the mapping from column names (anchor/positive, question/context, …)."""
    lowered = {c.lower(): c for c in columns}

    def pick(names: Sequence[str]) -> str | None:
        return next((lowered[n] for n in names if n in lowered), None)

    question = pick(_QUESTION_NAMES)
    text = pick(_CHUNK_TEXT_NAMES)
    chunk_id = pick(_CHUNK_ID_NAMES)
    if question is None or (text is None and chunk_id is None):
        return None
    answer = pick(_ANSWER_NAMES)
    split = pick(("split", "subset", "fold"))
    evidence = pick(_EVIDENCE_NAMES)
    if text is not None:
        return ColumnMapping(question, text, "text", answer, split, evidence)
    return ColumnMapping(question, chunk_id or "", "id", answer, split, evidence)


def cell(value: Any) -> str | None:
    """A cell as stripped text, or None for blanks and NaN."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    text = str(value).strip()
    return text or None
