"""Question sets in and out: import CSV/JSONL/Parquet with a column mapping, export CSV/JSONL/
Parquet and a Hugging Face `datasets` folder, and map the hand-written sample set onto a corpus.

Import paths:
1. Chunk ids: the mapped column holds ids of chunks in the picked corpus run.
2. Chunk texts matched to a corpus: each text must equal (whitespace-normalised) a chunk of it.
3. Chunk texts without a corpus: the distinct texts become a new corpus run, as in the
   canonical recipe where the corpus is all contexts of the pairs.
A mapped split column is kept and checked for leaks; otherwise splits are dealt by chunk.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.config import SAMPLE_DIR
from core.corpus import Chunk, chunk_id_for, load_chunks, save_chunks
from core.dataset import QAItem
from core.errors import InputError, RunError
from core.runs import Run, create_run
from core.splits import SplitConfig, assign_splits, check_no_leak, normalize_split

if TYPE_CHECKING:
    import pandas as pd

    from core.gate import GateConfig

SAMPLE_QA_PATH = SAMPLE_DIR / "qa_sample.jsonl"
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
)
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


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace to one space."""
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- reading


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
    if text is not None:
        return ColumnMapping(question, text, "text", answer, split)
    return ColumnMapping(question, chunk_id or "", "id", answer, split)


def _cell(value: Any) -> str | None:
    """A cell as stripped text, or None for blanks and NaN."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    text = str(value).strip()
    return text or None


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    """A finished import: the qa run, its corpus run, and what was skipped."""

    run: Run
    corpus_run_id: str
    n_items: int
    n_accepted: int
    new_corpus: bool
    skipped_rows: list[int] = field(default_factory=list)  # 1-based data rows with blanks


def _item_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}_{digest}"


def _write_imported_corpus(name: str, texts: list[str]) -> tuple[Run, dict[str, str]]:
    """A corpus run whose chunks are the distinct contexts of an imported file."""
    from core.documents import DOCUMENTS_FILE, FileReport

    run = create_run(
        "corpus",
        name=f"Contexts of {name}",
        config={"source": "qa_import", "file": name, "chunking": {"strategy": "imported"}},
    )
    by_norm: dict[str, str] = {}
    chunks: list[Chunk] = []
    for text in texts:
        norm = normalize_space(text)
        if norm in by_norm:
            continue
        chunk = Chunk(
            id=chunk_id_for(text),
            text=text,
            source=name,
            doc_id="imported",
            chunk_index=len(chunks),
        )
        by_norm[norm] = chunk.id
        chunks.append(chunk)
    save_chunks(run, chunks)
    report = FileReport(
        name=name,
        original_name=name,
        status="ok",
        kind="qa-import",
        chars=sum(len(c.text) for c in chunks),
        chunks=len(chunks),
        warnings=["a corpus made of the imported contexts; it has no original document"],
    )
    run.write_json(DOCUMENTS_FILE, [report.model_dump()])
    run.set_status("done", n_documents=1, n_pages=0, n_chunks=len(chunks), duplicates_removed=0)
    return run, by_norm


def rows_to_items(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    chunk_lookup: dict[str, str] | None,
    chunk_ids: set[str] | None = None,
) -> tuple[list[QAItem], list[int], list[str]]:
    """Items from table rows. `chunk_lookup` maps normalised chunk text -> id (text mapping);
    `chunk_ids` are the valid ids (id mapping). Returns items, skipped row numbers and the
    unresolved chunk values."""
    for column in (mapping.question, mapping.chunk, mapping.answer, mapping.split):
        if column is not None and column not in frame.columns:
            raise InputError(
                f"Column {column!r} is not in the file.",
                found=", ".join(map(str, frame.columns)),
                fix="pick the columns again",
            )
    items: list[QAItem] = []
    skipped: list[int] = []
    unresolved: list[str] = []
    records = frame.to_dict(orient="records")
    for row_number, row in enumerate(records, start=1):
        question = _cell(row.get(mapping.question))
        chunk_value = _cell(row.get(mapping.chunk))
        if question is None or chunk_value is None:
            skipped.append(row_number)
            continue
        if mapping.chunk_kind == "id":
            chunk_id = chunk_value if chunk_ids is None or chunk_value in chunk_ids else None
        else:
            chunk_id = (chunk_lookup or {}).get(normalize_space(chunk_value))
        if chunk_id is None:
            unresolved.append(chunk_value)
            continue
        answer = _cell(row.get(mapping.answer)) if mapping.answer else None
        split = normalize_split(row.get(mapping.split)) if mapping.split else None
        items.append(
            QAItem(
                id=_item_id("imp", str(row_number), question, chunk_id),
                question=question,
                chunk_id=chunk_id,
                split=split,  # type: ignore[arg-type]
                reference_answer=answer,
                origin="imported",
                meta={"row": row_number},
            )
        )
    return items, skipped, unresolved


def import_qa(
    name: str,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    *,
    corpus_run_id: str | None = None,
    split_config: SplitConfig | None = None,
    gate_config: GateConfig | None = None,
) -> ImportResult:
    """Import question/chunk pairs into a new qa run (and a new corpus run when chunk texts
    come without a corpus). With `gate_config`, the gate's text and duplicate rules run on the
    imported questions too (rejections are kept with their reason).

    Raises InputError for unknown columns, chunk ids or texts not in the corpus, and a dataset
    whose split column leaks chunks between splits."""
    from core.questions import save_qa_run

    if mapping.chunk_kind == "id" and not corpus_run_id:
        raise InputError(
            "Chunk ids need the corpus run they come from.",
            fix="pick that corpus run, or map a column of chunk texts instead",
        )
    new_corpus = False
    if corpus_run_id:
        chunks = load_chunks(corpus_run_id)
        lookup = {normalize_space(c.text): c.id for c in chunks}
        items, skipped, unresolved = rows_to_items(frame, mapping, lookup, {c.id for c in chunks})
        if unresolved:
            what = "chunk ids" if mapping.chunk_kind == "id" else "chunk texts"
            shown = "; ".join(repr(v[:60]) for v in unresolved[:3])
            raise InputError(
                f"{len(unresolved)} row(s) have {what} that are not in corpus run {corpus_run_id}.",
                found=shown,
                fix="pick the corpus run the pairs were made from, or import the texts without "
                "a corpus run to make a new corpus from them",
            )
    else:
        column = frame[mapping.chunk] if mapping.chunk in frame.columns else []
        texts = [t for t in (_cell(v) for v in column) if t is not None]
        if not texts:
            raise InputError(
                f"Column {mapping.chunk!r} has no chunk texts.",
                found=", ".join(map(str, frame.columns)),
                fix="map the column that holds the contexts",
            )
        corpus_run, lookup = _write_imported_corpus(name, texts)
        corpus_run_id = corpus_run.id
        new_corpus = True
        items, skipped, _ = rows_to_items(frame, mapping, lookup)
    if not items:
        raise InputError(f"No usable rows in {name!r}.", found=f"{len(skipped)} blank row(s)")

    gate_report: dict[str, Any] | None = None
    if gate_config is not None:
        from core.gate import apply_gate

        texts_by_id = {c.id: c.text for c in load_chunks(corpus_run_id)}
        report = apply_gate(items, texts_by_id, gate_config)
        items = report.items
        gate_report = report.to_dict()
    if mapping.split:
        check_no_leak(items)
        items = assign_splits(items, split_config, keep_existing=True)
    else:
        items = assign_splits(items, split_config)
    check_no_leak(items)
    run = save_qa_run(
        items,
        corpus_run_id,
        name=f"Imported: {name}",
        config={
            "source": "import",
            "file": name,
            "mapping": mapping.to_dict(),
            "split": (split_config or SplitConfig()).to_dict(),
            "gate": gate_config.to_dict() if gate_config else None,
            "skipped_rows": skipped[:100],
        },
        gate_report=gate_report,
    )
    return ImportResult(
        run=run,
        corpus_run_id=corpus_run_id,
        n_items=len(items),
        n_accepted=sum(i.status == "accepted" for i in items),
        new_corpus=new_corpus,
        skipped_rows=skipped,
    )


# --------------------------------------------------------------------------- export


def qa_rows(items: Sequence[QAItem], chunk_texts: dict[str, str]) -> list[dict[str, Any]]:
    """Flat rows: `anchor` (question) and `positive` (chunk text), as sentence-transformers
    trains on them, plus the item's id, chunk id, split, verdict and reference answer."""
    return [
        {
            "id": i.id,
            "anchor": i.question,
            "positive": chunk_texts.get(i.chunk_id, ""),
            "chunk_id": i.chunk_id,
            "split": i.split or "",
            "status": i.status,
            "reason": i.reason,
            "reference_answer": i.reference_answer or "",
            "origin": i.origin,
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
        return frame.to_csv(index=False).encode("utf-8")
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


# --------------------------------------------------------------------------- the sample set


def _longest_contained(words: list[str], text: str, *, from_start: bool) -> int:
    """Characters of the longest prefix (or suffix) of `words` that occurs in `text`."""
    lo, hi = 0, len(words)
    while lo < hi:  # containment is monotone in the number of words
        mid = (lo + hi + 1) // 2
        part = " ".join(words[:mid] if from_start else words[-mid:])
        if part in text:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return 0
    return len(" ".join(words[:lo] if from_start else words[-lo:]))


def find_evidence_chunk(evidence: str, chunks: Sequence[Chunk]) -> tuple[str | None, str]:
    """The chunk holding a verbatim quote: the first whose whitespace-normalised text contains
    it, else (a quote straddling two chunks) the one sharing the longest start or end of it.
    Returns (chunk id or None, "contained" | "overlap" | "not_found")."""
    quote = normalize_space(evidence)
    texts = [normalize_space(c.text) for c in chunks]
    for chunk, text in zip(chunks, texts, strict=True):
        if quote in text:
            return chunk.id, "contained"
    words = quote.split()
    best_id, best = None, 0
    for chunk, text in zip(chunks, texts, strict=True):
        overlap = max(
            _longest_contained(words, text, from_start=True),
            _longest_contained(words, text, from_start=False),
        )
        if overlap > best:
            best_id, best = chunk.id, overlap
    # A few shared words are chance; a real straddle shares a good part of the quote.
    if best_id is not None and best >= max(20, len(quote) // 4):
        return best_id, "overlap"
    return None, "not_found"


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

    Each question's gold chunk is the chunk containing its evidence quote. Questions whose quote
    is in no chunk are kept as rejected (`evidence_not_found`); none found at all raises."""
    from core.gate import gate_counts
    from core.questions import save_qa_run

    rows = read_sample_qa(path)
    chunks = load_chunks(corpus_run_id)
    if not chunks:
        raise RunError(f"Corpus run {corpus_run_id} has no chunks.")
    items: list[QAItem] = []
    for row in rows:
        chunk_id, how = find_evidence_chunk(row["evidence"], chunks)
        meta: dict[str, object] = {
            "evidence": row["evidence"],
            "page": row.get("page"),
            "match": how,
        }
        item = QAItem(
            id=str(row["id"]),
            question=row["question"],
            chunk_id=chunk_id or "",
            reference_answer=row.get("reference_answer"),
            origin="sample",
            meta=meta,
        )
        if chunk_id is None:
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
    check_no_leak(items)
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
