"""A question set from the documents, with no LLM: heading pairs and cloze pairs
(core.questions.structure) through the same gate and the same split by chunk as any set.

How it works:
1. Headings come from the corpus run's original files (a corpus imported from a question file has
   none: then only cloze pairs, and a note says so); cloze pairs from its chunks.
2. The gate applies its text and duplicate rules; not the question-form, length or copy rules,
   which a heading ("Installing Debian") or a sentence of the chunk fails by design.
3. Splits are dealt by chunk. Aligned with another question set of the same corpus (say the
   hand-written one you evaluate on), every chunk that set has placed keeps its split, an item
   touching two of its splits is rejected (`spans_splits`), and an item with the same text as
   one of its questions is rejected as a duplicate: a model trained here never trains on the
   chunks or the questions that set validates and tests on. With `include_aligned` its questions
   join this set (keeping their splits), so one set holds every source and fine-tuning can weigh
   them (core.finetune.config.FinetuneConfig.source_weights).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from core.documents.corpus import Chunk, load_chunks
from core.errors import ConfigError, InputError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.dataset import QAItem, load_qa
from core.questions.gate import GateConfig, apply_gate, rejection_rows, tie_near_duplicates
from core.questions.leakage import (
    NEAR_DUPLICATES_KEY,
    RESPLIT_FIX,
    EvidenceIndex,
    check_no_leak,
    near_duplicate_ids,
)
from core.questions.sources import SOURCES
from core.questions.specificity import reject_unspecific
from core.questions.splits import Dealing, SplitConfig, assign_splits, dealing_of, split_counts
from core.questions.structure import cloze_items, heading_items
from core.runs.folders import Run, load_run
from core.text import normalize_question


@dataclass(frozen=True)
class DocumentPairsConfig:
    """Which pairs to make from the documents, and how to split them."""

    headings: bool = True
    cloze: bool = True
    cloze_per_chunk: int = 1
    max_chunks: int = 0  # cloze from this many chunks drawn with the seed; 0 = every chunk
    seed: int = 42
    align_with: str | None = None  # a qa run of the same corpus whose splits this set follows
    include_aligned: bool = False  # copy that set's questions into this one
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if not (self.headings or self.cloze):
            raise ConfigError(
                "No pair source is selected.", fix="choose headings, cloze sentences or both"
            )
        if self.cloze and not 1 <= self.cloze_per_chunk <= 10:
            raise ConfigError(
                f"Cloze sentences per chunk must be 1 to 10, not {self.cloze_per_chunk}.",
                fix="use 1 (the inverse cloze task's choice) to 3",
            )
        if self.max_chunks < 0:
            raise ConfigError(f"max_chunks must be 0 (all) or more, not {self.max_chunks}.")
        if self.include_aligned and not self.align_with:
            raise ConfigError(
                "include_aligned needs a question set to align with.",
                fix="name the set in align_with, or leave include_aligned off",
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "split": self.split.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentPairsConfig:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if isinstance(values.get("split"), dict):
            values["split"] = SplitConfig(**values["split"])
        return cls(**values)


def document_gate_config() -> GateConfig:
    """The gate for pairs from the documents: text and duplicate rules only (a heading is not a
    question, a cloze query is a copy of its chunk, either may be short, and a sentence the
    document wrote is never an LLM's preamble)."""
    return GateConfig(
        check_near_duplicates=False,
        check_length=False,
        check_question_form=False,
        check_copy=False,
        check_preamble=False,
    )


@dataclass(frozen=True)
class DocumentPairsPreview:
    """What `save_document_pairs` would write: gated, split items and what was left out."""

    corpus_run_id: str
    config: DocumentPairsConfig
    items: list[QAItem]
    gate_report: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def n_accepted(self) -> int:
        return sum(i.status == "accepted" for i in self.items)

    def rejection_rows(self) -> list[dict[str, object]]:
        return rejection_rows(self.items)

    def splits(self) -> dict[str, dict[str, int]]:
        return split_counts(self.items)

    def dealing(self) -> Dealing:
        """Each split's share of chunks, asked against achieved, and any group too large."""
        return dealing_of(self.items, self.config.split)

    def sources(self) -> list[dict[str, object]]:
        """Accepted and rejected items per source (heading, cloze, and any aligned ones)."""
        counts = Counter((i.source, i.status) for i in self.items)
        return [
            {"source": s, "accepted": counts[(s, "accepted")], "rejected": counts[(s, "rejected")]}
            for s in SOURCES
            if counts[(s, "accepted")] or counts[(s, "rejected")]
        ]


def _heading_pairs(
    corpus: Run, chunks: list[Chunk], index: EvidenceIndex, tracker: ProgressTracker
) -> tuple[list[QAItem], list[str]]:
    """Heading items of every original file of the corpus run, and notes on what was skipped."""
    from core.documents.headings import document_headings, section_bodies
    from core.documents.parsing import parse_file
    from core.documents.stage import FILES_DIR, corpus_files

    if not corpus.artifact(FILES_DIR).is_dir():
        return [], [
            f"Corpus run {corpus.id} has no original files (it came from a question file), so "
            "there are no headings to read: only cloze pairs were made."
        ]
    texts = {c.id: c.text for c in chunks}
    items: list[QAItem] = []
    notes: list[str] = []
    for upload in corpus_files(corpus):
        try:
            doc = parse_file(upload.name, upload.data)
        except InputError as exc:
            notes.append(f"{upload.name}: not read for headings ({exc}).")
            continue
        text, headings = document_headings(doc, upload.data)
        if not headings:
            notes.append(f"{upload.name}: no headings found (no outline, no heading lines).")
        found = heading_items(
            upload.name, text, headings, section_bodies(text, headings), index, texts
        )
        items.extend(found)
        tracker.advance(1, f"{upload.name}: {sum(i.status == 'accepted' for i in found)} headings")
    return items, notes


def _align(items: list[QAItem], aligned: list[QAItem]) -> tuple[list[QAItem], dict[str, int]]:
    """Give each accepted item the split its chunks have in the aligned set; reject items that
    touch two of its splits or repeat one of its questions. Returns the items and the counts."""
    placed: dict[str, str] = {}
    for item in aligned:
        if item.status == "accepted" and item.split:
            placed.update(dict.fromkeys(item.split_chunk_ids, item.split))
    keys = {normalize_question(i.question): i.id for i in aligned if i.status == "accepted"}
    out = list(items)
    counts = Counter[str]()
    changed = True
    while changed:  # an item placed here places its other chunks: repeat until nothing moves
        changed = False
        for n, item in enumerate(out):
            if item.status != "accepted" or item.split:
                continue
            twin = keys.get(normalize_question(item.question))
            touched = sorted({placed[c] for c in item.split_chunk_ids if c in placed})
            if twin or len(touched) > 1:
                reason, detail = (
                    ("duplicate", f"same text as {twin} in the aligned set")
                    if twin
                    else ("spans_splits", f"its chunks are in {' and '.join(touched)}")
                )
                meta = {**item.meta, "reason_text": detail}
                out[n] = item.model_copy(
                    update={"status": "rejected", "reason": reason, "meta": meta}
                )
                counts[reason] += 1
            elif touched:
                out[n] = item.model_copy(update={"split": touched[0]})
                placed.update(dict.fromkeys(item.split_chunk_ids, touched[0]))
                counts[touched[0]] += 1
                changed = True
    return out, dict(counts)


def preview_document_pairs(
    corpus_run_id: str,
    config: DocumentPairsConfig | None = None,
    *,
    model: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> DocumentPairsPreview:
    """Make, gate and split pairs from a corpus run's documents without saving anything. With an
    embedding `model`, near-duplicate pairs (cosine above the gate's threshold) are tied into one
    split, and a pair that nearly repeats a question of the aligned set is rejected like an exact
    repeat."""
    from core.questions.generation import select_chunks

    config = config or DocumentPairsConfig()
    corpus = load_run(corpus_run_id)
    if corpus.kind != "corpus":
        raise ConfigError(f"Run {corpus_run_id} is a {corpus.kind} run, not a corpus run.")
    chunks = load_chunks(corpus)
    texts = {c.id: c.text for c in chunks}
    aligned = _aligned_items(config, corpus_run_id)
    tracker = ProgressTracker("pairs from the documents", None, on_progress, should_stop)
    index = EvidenceIndex.of(chunks)
    items: list[QAItem] = []
    notes: list[str] = []
    if config.headings:
        found, notes = _heading_pairs(corpus, chunks, index, tracker)
        items += found
    if config.cloze:
        picked = select_chunks(chunks, config.max_chunks, config.seed)
        items += cloze_items(picked, config.cloze_per_chunk, config.seed, index)
        tracker.advance(1, f"cloze: {len(picked)} chunks")
    if not any(i.status == "accepted" for i in items):
        raise InputError(
            f"Corpus run {corpus_run_id} gave no usable pair.",
            found=f"{len(items)} candidates, all rejected",
            fix="turn on cloze sentences, or add documents with headings",
        )
    items = reject_unspecific(items, index)
    report = apply_gate(items, texts, document_gate_config())
    items = report.items
    gate = report.to_dict()
    gate["near_duplicates_tied"] = None
    if model is not None:
        tracker.report("near-duplicate questions")
        items, gate["near_duplicates_tied"] = _tie_near_duplicates(items, aligned or [], model)
    if aligned is not None:
        items, gate["aligned"] = _align(items, aligned)
        if config.include_aligned:
            items = [*aligned, *items]
        items = assign_splits(items, config.split, keep_existing=True)
    else:
        items = assign_splits(items, config.split)
    check_no_leak([i for i in items if i.status == "accepted"], texts, fix=RESPLIT_FIX)
    return DocumentPairsPreview(corpus_run_id, config, items, gate, notes)


def _tie_near_duplicates(
    items: list[QAItem], aligned: list[QAItem], model: Any
) -> tuple[list[QAItem], int]:
    """Tie near-duplicate pairs into one split (core.questions.gate.tie_near_duplicates); a pair
    that nearly repeats an accepted question of the aligned set is rejected (`near_duplicate`),
    as an exact repeat is. Returns the items and the pairs tied among them."""
    threshold = document_gate_config().near_duplicate_threshold
    others = [i for i in aligned if i.status == "accepted"]
    tied, _ = tie_near_duplicates([*others, *items], model, threshold)
    known = {i.id for i in others}
    out, pairs = [], 0
    for item in tied[len(others) :]:
        partners = near_duplicate_ids(item)
        twin = next((p for p in partners if p in known), None)
        if twin is not None and item.status == "accepted":
            meta = {**item.meta, "reason_text": f"nearly the same as {twin} in the aligned set"}
            meta.pop(NEAR_DUPLICATES_KEY, None)
            item = item.model_copy(
                update={"status": "rejected", "reason": "near_duplicate", "meta": meta}
            )
        elif partners:
            kept = [p for p in partners if p not in known]
            meta = {**item.meta, NEAR_DUPLICATES_KEY: kept}
            item = item.model_copy(update={"meta": meta})
            pairs += len(kept)
        out.append(item)
    return out, pairs // 2


def _aligned_items(config: DocumentPairsConfig, corpus_run_id: str) -> list[QAItem] | None:
    """The aligned set's items (None without one); refused when it is on another corpus."""
    if not config.align_with:
        return None
    run = load_run(config.align_with)
    if run.kind != "qa" or run.manifest.parents.get("corpus") != corpus_run_id:
        raise ConfigError(
            f"Question set {config.align_with} cannot be aligned with corpus {corpus_run_id}.",
            found=f"a {run.kind} run on corpus {run.manifest.parents.get('corpus') or 'none'}",
            fix="pick a question set made on this corpus run",
        )
    return load_qa(run, accepted_only=False)


def default_name(config: DocumentPairsConfig) -> str:
    """'From the documents: headings + cloze (aligned with qa-…)'."""
    parts = [p for p, on in (("headings", config.headings), ("cloze", config.cloze)) if on]
    name = f"From the documents: {' + '.join(parts)}"
    if config.align_with:
        joined = "with" if config.include_aligned else "aligned with"
        name += f" ({joined} {config.align_with})"
    return name


def save_document_pairs(preview: DocumentPairsPreview, name: str = "") -> Run:
    """Write a previewed set as a qa run (nothing is left behind when saving fails)."""
    from core.questions.qa_runs import save_qa_run

    parents = {"aligned": preview.config.align_with} if preview.config.align_with else {}
    return save_qa_run(
        preview.items,
        preview.corpus_run_id,
        name=name or default_name(preview.config),
        config={"source": "documents", **preview.config.to_dict(), "notes": preview.notes},
        gate_report=preview.gate_report,
        extra_parents=parents,
    )


def make_document_pairs(
    corpus_run_id: str,
    config: DocumentPairsConfig | None = None,
    *,
    name: str = "",
    model: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """preview_document_pairs, then save_document_pairs."""
    preview = preview_document_pairs(
        corpus_run_id, config, model=model, on_progress=on_progress, should_stop=should_stop
    )
    return save_document_pairs(preview, name)
