"""Question sets out: CSV, JSONL or Parquet with sentence-transformers' column names (`anchor`,
`positive`) plus ids, splits and verdicts, or a Hugging Face `datasets` folder (zipped)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InputError
from core.questions.dataset import QAItem

if TYPE_CHECKING:
    pass


FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")


EXPORT_COLUMNS = (
    "id",
    "anchor",
    "positive",
    "chunk_id",
    "split",
    "status",
    "reason",
    "reference_answer",
    "origin",
    "source",
)


def qa_rows(items: Sequence[QAItem], chunk_texts: dict[str, str]) -> list[dict[str, Any]]:
    """Flat rows: `anchor` (question) and `positive` (chunk text), as sentence-transformers
    trains on them, plus the item's id, chunk id, split, verdict and reference answer."""
    return [
        {
            "id": i.id,
            "anchor": i.question,
            "positive": i.positive or chunk_texts.get(i.chunk_id, ""),
            "chunk_id": i.chunk_id,
            "split": i.split or "",
            "status": i.status,
            "reason": i.reason,
            "reference_answer": i.reference_answer or "",
            "origin": i.origin,
            "source": i.source,
        }
        for i in items
    ]


def export_qa(items: Sequence[QAItem], chunk_texts: dict[str, str], fmt: str) -> bytes:
    """Items as CSV, JSONL or Parquet bytes (columns: EXPORT_COLUMNS)."""
    import pandas as pd

    rows = qa_rows(items, chunk_texts)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    frame = pd.DataFrame(rows, columns=list(EXPORT_COLUMNS))
    if fmt == "csv":
        from core.spreadsheet import csv_bytes

        return csv_bytes(frame)  # no cell a spreadsheet would run as a formula
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise InputError(f"Unknown export format {fmt!r}.", fix=f"use one of {', '.join(FORMATS)}")


def export_hf_dataset(items: Sequence[QAItem], chunk_texts: dict[str, str], folder: Path) -> Path:
    """Save a `datasets.DatasetDict` (one split per train/validation/test; items without a split
    go to "unsplit") with `Dataset.save_to_disk`; load it back with `load_from_disk`."""
    from datasets import Dataset, DatasetDict

    rows = qa_rows(items, chunk_texts)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["split"] or "unsplit", []).append(row)
    if not groups:
        raise InputError("There are no questions to export.")
    order = ["train", "validation", "test", "unsplit"]
    columns = list(EXPORT_COLUMNS)
    dataset = DatasetDict(
        {
            split: Dataset.from_dict({c: [r[c] for r in groups[split]] for c in columns})
            for split in order
            if split in groups
        }
    )
    dataset.save_to_disk(str(folder))
    return folder


def zip_folder(folder: Path) -> bytes:
    """The folder's files as zip bytes (paths relative to the folder's parent)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


def export_hf_zip(items: Sequence[QAItem], chunk_texts: dict[str, str], name: str = "qa") -> bytes:
    """A Hugging Face datasets folder named `name`, zipped."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf_dataset(items, chunk_texts, Path(tmp) / name)
        return zip_folder(folder)
