"""Question sets in: CSV, TSV, JSONL, JSON or Parquet with a column mapping.

Import paths:
1. Chunk ids: the mapped column holds ids of chunks in the picked corpus run.
2. Chunk texts matched to a corpus: each text must equal (whitespace-normalised) a chunk of it.
3. Chunk texts without a corpus: the distinct texts become a new corpus run, as in the
   canonical recipe where the corpus is all contexts of the pairs.
An optional evidence column (a verbatim quote of the answer) makes every chunk holding the quote
relevant (core.questions.leakage). A mapped split column is kept and checked for leaks; otherwise splits are
dealt by chunk. `preview_import` does everything but save, so a page can show what the gate
rejects and why before anything is written; a refused import leaves no run behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.documents.corpus import Chunk, chunk_id_for, load_chunks, save_chunks
from core.errors import InputError
from core.questions.columns import cell
from core.questions.dataset import QAItem
from core.questions.leakage import (
    MIN_EVIDENCE_WORDS,
    RESPLIT_FIX,
    SPLIT_COLUMN_FIX,
    EvidenceIndex,
)
from core.questions.specificity import reject_unspecific
from core.questions.splits import (
    Dealing,
    SplitConfig,
    assign_splits,
    check_no_leak,
    dealing_of,
    normalize_split,
    split_counts,
)
from core.runs.folders import Run, create_run
from core.runs.guard import discard_on_failure
from core.text import normalize_space

if TYPE_CHECKING:
    import pandas as pd

    from core.questions.columns import ColumnMapping
    from core.questions.gate import GateConfig


@dataclass(frozen=True)
class ImportResult:
    """A finished import: the qa run, its corpus run, and what was skipped."""

    run: Run
    corpus_run_id: str
    n_items: int
    n_accepted: int
    new_corpus: bool
    skipped_rows: list[int] = field(default_factory=list)  # 1-based data rows with blanks


def import_gate_config() -> GateConfig:
    """The gate for imported (human-written) questions: the text and duplicate rules, without
    the generated-question length rule ("What is Python?" is a real question) and without the
    embedding near-duplicate check."""
    from core.questions.gate import GateConfig

    return GateConfig(check_near_duplicates=False, check_length=False)


def _item_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}_{digest}"


def imported_chunks(name: str, texts: list[str]) -> tuple[list[Chunk], dict[str, str]]:
    """The distinct contexts of an imported file as chunks, and normalised text -> chunk id."""
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
    return chunks, by_norm


def _write_imported_corpus(name: str, chunks: list[Chunk]) -> Run:
    """A corpus run whose chunks are the distinct contexts of an imported file."""
    from core.documents.stage import DOCUMENTS_FILE, FileReport

    run = create_run(
        "corpus",
        name=f"Contexts of {name}",
        config={"source": "qa_import", "file": name, "chunking": {"strategy": "imported"}},
    )
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
    return run


def rows_to_items(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    chunk_lookup: dict[str, str] | None,
    chunk_ids: set[str] | None = None,
) -> tuple[list[QAItem], list[int], list[str]]:
    """Items from table rows. `chunk_lookup` maps normalised chunk text -> id (text mapping);
    `chunk_ids` are the valid ids (id mapping). Returns items, skipped row numbers and the
    unresolved chunk values."""
    for column in (
        mapping.question,
        mapping.chunk,
        mapping.answer,
        mapping.split,
        mapping.evidence,
    ):
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
        question = cell(row.get(mapping.question))
        chunk_value = cell(row.get(mapping.chunk))
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
        answer = cell(row.get(mapping.answer)) if mapping.answer else None
        split = normalize_split(row.get(mapping.split)) if mapping.split else None
        evidence = cell(row.get(mapping.evidence)) if mapping.evidence else None
        items.append(
            QAItem(
                id=_item_id("imp", str(row_number), question, chunk_id),
                question=question,
                chunk_id=chunk_id,
                evidence=evidence,
                split=split,  # type: ignore[arg-type]
                reference_answer=answer,
                origin="imported",
                meta={"row": row_number},
            )
        )
    return items, skipped, unresolved


@dataclass(frozen=True)
class EvidenceCounts:
    """How the evidence quotes of an import were used."""

    missing: int = 0  # quotes not in their question's own chunk
    too_short: int = 0  # quotes under MIN_EVIDENCE_WORDS words: they link no chunk
    not_specific: int = 0  # items rejected because their quote is all over the corpus


def attach_evidence(
    items: list[QAItem], chunks: Sequence[Chunk]
) -> tuple[list[QAItem], EvidenceCounts]:
    """Gold and linked chunks from each item's evidence quote (core.questions.leakage). The item's own
    chunk stays its primary gold chunk. A quote not in its own chunk keeps that chunk as the only
    gold one (its linked chunks, where the quote's text is, still keep the split sound); a quote
    too short to be specific links nothing; an item whose quote is all over the corpus is
    rejected (core.questions.specificity). A note in meta says which."""
    index = EvidenceIndex.of(chunks)
    matches = iter(index.match_many([i.evidence for i in items if i.evidence]))
    out: list[QAItem] = []
    missing = short = 0
    for item in items:
        if not item.evidence:
            out.append(item)
            continue
        found = next(matches)
        if found.how == "too_short":
            short += 1
            note = (
                f"the quote has fewer than {MIN_EVIDENCE_WORDS} words, too few to say which "
                "chunks hold the answer: only its own chunk counts"
            )
            out.append(item.model_copy(update={"meta": {**item.meta, "evidence_note": note}}))
            continue
        if item.chunk_id not in found.gold_ids:
            missing += 1
            meta = {**item.meta, "evidence_note": "the quote is not in this question's chunk"}
            linked = [c for c in found.linked_ids if c != item.chunk_id]
            out.append(item.model_copy(update={"meta": meta, "linked_chunk_ids": linked}))
            continue
        out.append(
            item.model_copy(
                update={
                    "gold_chunk_ids": [c for c in found.gold_ids if c != item.chunk_id],
                    "linked_chunk_ids": [c for c in found.linked_ids if c not in found.gold_ids],
                    "meta": {**item.meta, "match": found.how},
                }
            )
        )
    checked = reject_unspecific(out, index)
    unspecific = sum(a.status != b.status for a, b in zip(out, checked, strict=True))
    return checked, EvidenceCounts(missing, short, unspecific)


def evidence_notes(counts: EvidenceCounts) -> list[str]:
    """What happened to the evidence quotes, for the preview on the page and in the CLI."""
    notes = []
    if counts.too_short:
        notes.append(
            f"{counts.too_short} evidence quote(s) have fewer than {MIN_EVIDENCE_WORDS} words: too "
            "few to say which chunks hold the answer, so they link no chunk and those questions "
            "keep their own chunk as the only gold chunk."
        )
    if counts.missing:
        notes.append(
            f"{counts.missing} evidence quote(s) are not in their question's chunk; those "
            "questions keep their chunk as the only gold chunk."
        )
    if counts.not_specific:
        notes.append(
            f"{counts.not_specific} question(s) rejected as not specific: their evidence is in "
            "many chunks beyond their own (the reason column gives the count)."
        )
    return notes


@dataclass(frozen=True)
class ImportPreview:
    """What an import would save: the gated, split items and where their chunks come from.
    Nothing is written until `save_import`."""

    name: str
    items: list[QAItem]
    mapping: ColumnMapping
    corpus_run_id: str | None  # None: a new corpus run is made of `new_chunks`
    new_chunks: list[Chunk]
    split_config: SplitConfig
    gate_config: GateConfig | None
    gate_report: dict[str, Any] | None
    skipped_rows: list[int] = field(default_factory=list)
    evidence: EvidenceCounts = field(default_factory=EvidenceCounts)
    near_duplicates: int | None = None  # pairs tied into one split; None: not looked for

    @property
    def evidence_missing(self) -> int:
        return self.evidence.missing

    @property
    def n_accepted(self) -> int:
        return sum(i.status == "accepted" for i in self.items)

    @property
    def n_rejected(self) -> int:
        return sum(i.status == "rejected" for i in self.items)

    def rejections(self) -> dict[str, int]:
        """Rejected questions by reason, most frequent first."""
        from core.questions.gate import gate_counts

        return dict(gate_counts(self.items)["by_reason"])

    def rejection_rows(self) -> list[dict[str, object]]:
        """Rejected questions by reason with what each reason means (for a table)."""
        from core.questions.gate import rejection_rows

        return rejection_rows(self.items)

    def splits(self) -> dict[str, dict[str, int]]:
        return split_counts(self.items)

    def dealing(self) -> Dealing:
        """Each split's share of chunks, asked against achieved, and any group too large."""
        return dealing_of(self.items, self.split_config)

    def evidence_notes(self) -> list[str]:
        """How the evidence quotes were used, in words (empty when nothing to say)."""
        return evidence_notes(self.evidence)


def _resolve_rows(
    name: str, frame: pd.DataFrame, mapping: ColumnMapping, corpus_run_id: str | None
) -> tuple[list[QAItem], list[int], list[Chunk], list[Chunk]]:
    """The file's rows as items on a corpus: the picked corpus run's chunks, or new chunks made
    of the file's distinct contexts. Returns items, skipped rows, the chunks and the new ones."""
    if mapping.chunk_kind == "id" and not corpus_run_id:
        raise InputError(
            "Chunk ids need the corpus run they come from.",
            fix="pick that corpus run, or map a column of chunk texts instead",
        )
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
        new_chunks: list[Chunk] = []
    else:
        column = frame[mapping.chunk] if mapping.chunk in frame.columns else []
        texts = [t for t in (cell(v) for v in column) if t is not None]
        if not texts:
            raise InputError(
                f"Column {mapping.chunk!r} has no chunk texts.",
                found=", ".join(map(str, frame.columns)),
                fix="map the column that holds the contexts",
            )
        chunks, lookup = imported_chunks(name, texts)
        new_chunks = chunks
        items, skipped, _ = rows_to_items(frame, mapping, lookup)
    if not items:
        raise InputError(f"No usable rows in {name!r}.", found=f"{len(skipped)} blank row(s)")
    return items, skipped, chunks, new_chunks


def preview_import(
    name: str,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    *,
    corpus_run_id: str | None = None,
    split_config: SplitConfig | None = None,
    gate_config: GateConfig | None = None,
    model: Any = None,
) -> ImportPreview:
    """Map, gate and split imported pairs without saving anything. With `gate_config`, the
    gate's rules run on the imported questions (rejections are kept with their reason). With an
    embedding `model`, near-duplicate questions (cosine above the gate's threshold) are tied
    into one split; with a split column that puts them in two, the import is refused.

    Raises InputError for unknown columns, chunk ids or texts not in the corpus, and a dataset
    whose splits leak (naming the cause: the split column, or questions shared across chunks)."""
    split_config = split_config or SplitConfig()
    items, skipped, chunks, new_chunks = _resolve_rows(name, frame, mapping, corpus_run_id)
    items, evidence = attach_evidence(items, chunks)

    gate_report: dict[str, Any] | None = None
    if gate_config is not None:
        from core.questions.gate import apply_gate

        report = apply_gate(items, {c.id: c.text for c in chunks}, gate_config)
        items = report.items
        gate_report = report.to_dict()
    near_duplicates = None
    if model is not None:
        from core.questions.gate import GateConfig as _Gate
        from core.questions.gate import tie_near_duplicates

        threshold = (gate_config or _Gate()).near_duplicate_threshold
        items, near_duplicates = tie_near_duplicates(items, model, threshold)
    texts_by_id = {c.id: c.text for c in chunks}
    if mapping.split:
        check_no_leak(items, texts_by_id, fix=SPLIT_COLUMN_FIX)
        items = assign_splits(items, split_config, keep_existing=True)
        check_no_leak(items, texts_by_id, fix=SPLIT_COLUMN_FIX)
    else:
        items = assign_splits(items, split_config)
        check_no_leak(items, texts_by_id, fix=RESPLIT_FIX)
    return ImportPreview(
        name=name,
        items=items,
        mapping=mapping,
        corpus_run_id=corpus_run_id,
        new_chunks=new_chunks,
        split_config=split_config,
        gate_config=gate_config,
        gate_report=gate_report,
        skipped_rows=skipped,
        evidence=evidence,
        near_duplicates=near_duplicates,
    )


def save_import(preview: ImportPreview) -> ImportResult:
    """Write a previewed import: the new corpus run (when the contexts make one) and the qa run.
    Nothing is left behind when saving fails."""
    from core.questions.qa_runs import save_qa_run

    with discard_on_failure() as created:
        corpus_run_id = preview.corpus_run_id
        if corpus_run_id is None:
            corpus_run = _write_imported_corpus(preview.name, preview.new_chunks)
            created.append(corpus_run)
            corpus_run_id = corpus_run.id
        run = save_qa_run(
            preview.items,
            corpus_run_id,
            name=f"Imported: {preview.name}",
            config={
                "source": "import",
                "file": preview.name,
                "mapping": preview.mapping.to_dict(),
                "split": preview.split_config.to_dict(),
                "gate": preview.gate_config.to_dict() if preview.gate_config else None,
                "skipped_rows": preview.skipped_rows[:100],
                "evidence": asdict(preview.evidence),
            },
            gate_report={
                **(preview.gate_report or {}),
                "near_duplicates_tied": preview.near_duplicates,
            },
        )
        created.append(run)
    return ImportResult(
        run=run,
        corpus_run_id=corpus_run_id,
        n_items=len(preview.items),
        n_accepted=preview.n_accepted,
        new_corpus=preview.corpus_run_id is None,
        skipped_rows=preview.skipped_rows,
    )


def import_qa(
    name: str,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    *,
    corpus_run_id: str | None = None,
    split_config: SplitConfig | None = None,
    gate_config: GateConfig | None = None,
    model: Any = None,
) -> ImportResult:
    """Import question/chunk pairs into a new qa run (and a new corpus run when chunk texts
    come without a corpus): preview_import, then save_import. A refused import saves nothing."""
    preview = preview_import(
        name,
        frame,
        mapping,
        corpus_run_id=corpus_run_id,
        split_config=split_config,
        gate_config=gate_config,
        model=model,
    )
    return save_import(preview)
