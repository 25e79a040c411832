"""Chunking parsed documents with langchain's text splitters.

Three strategies:
1. `recursive` (default): RecursiveCharacterTextSplitter, sizes in characters (1000 / 150).
2. `token`: the same splitter measuring length with the embedding model's own tokenizer, so a
   chunk never exceeds what the model reads (sizes in tokens, 200 / 30 by default).
3. `markdown`: MarkdownHeaderTextSplitter finds sections; each section is then split like
   `recursive` and its headers go into the chunk's metadata.

A document's pages are joined with blank lines; each chunk's start offset in that text maps
back to the page it starts on, so `Chunk.page` is exact even when a chunk spans two pages.
Offsets are found by `locate_chunks`, not by langchain's `add_start_index` (which subtracts a
token overlap as characters, and can pick an earlier copy of a short chunk).
Chunk ids are content hashes (`chunk_id_for`); exact duplicates are dropped and counted.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.documents.corpus import Chunk, chunk_id_for
from core.documents.parsing import PAGE_SEPARATOR, ParsedDocument
from core.errors import ConfigError
from core.progress import ProgressCallback, ProgressTracker, StopCheck

if TYPE_CHECKING:
    from core.embeddings import ModelSpec

logger = logging.getLogger(__name__)

Strategy = Literal["recursive", "token", "markdown"]
STRATEGIES: tuple[str, ...] = ("recursive", "token", "markdown")
DEFAULT_SIZES: dict[str, tuple[int, int]] = {
    "recursive": (1000, 150),
    "token": (200, 30),
    "markdown": (1000, 150),
}
MARKDOWN_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
_SPACE_RUN = re.compile(r"\s+")  # \s is str.isspace: what str.strip removes


@dataclass(frozen=True)
class ChunkingConfig:
    """How to chunk. Sizes are characters, or tokens for the `token` strategy.

    `model` names the embedding model whose tokenizer the `token` strategy uses (a ModelSpec
    as a dict; the offline default when empty).
    """

    strategy: Strategy = "recursive"
    chunk_size: int = 1000
    chunk_overlap: int = 150
    model: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"Unknown chunking strategy {self.strategy!r}.",
                fix=f"use one of {', '.join(STRATEGIES)}",
            )
        if self.chunk_size < 20:
            raise ConfigError(f"Chunk size {self.chunk_size} is too small.", fix="use at least 20")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"Chunk overlap {self.chunk_overlap} must be at least 0 and below the chunk "
                f"size {self.chunk_size}.",
                fix="lower the overlap",
            )
        if self.chunk_overlap > self.chunk_size // 2:
            logger.warning(
                "Chunk overlap %d is more than half the chunk size %d: most text is embedded twice.",
                self.chunk_overlap,
                self.chunk_size,
            )

    @property
    def unit(self) -> str:
        return "tokens" if self.strategy == "token" else "characters"

    @classmethod
    def for_strategy(cls, strategy: Strategy, **overrides: Any) -> ChunkingConfig:
        """The default sizes of a strategy, with any field overridden."""
        size, overlap = DEFAULT_SIZES.get(strategy, DEFAULT_SIZES["recursive"])
        values: dict[str, Any] = {"chunk_size": size, "chunk_overlap": overlap, **overrides}
        return cls(strategy=strategy, **values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkingConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class ChunkingResult:
    """Chunks of all documents (duplicates removed) and counts per document."""

    chunks: list[Chunk]
    duplicates_removed: int
    per_doc: dict[str, int]  # doc_id -> chunks kept
    warnings: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def load_tokenizer(source: str = "default", ref: str = ""):  # noqa: ANN201 - a HF tokenizer
    """The tokenizer of an embedding model, loaded from its folder (offline)."""
    from transformers import AutoTokenizer

    from core.embeddings import ModelSpec, resolve_model_path

    path = resolve_model_path(ModelSpec(source=source, ref=ref))  # type: ignore[arg-type]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise ConfigError(
            f"Could not load the tokenizer of {ref or source!r} for token chunking.",
            found=str(exc).splitlines()[0][:200],
            fix="pick the recursive strategy or a model available offline",
        ) from exc
    # The model reads at most max_seq_length tokens, often fewer than the tokenizer allows.
    st_config = Path(path) / "sentence_bert_config.json"
    if st_config.exists():
        max_len = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(max_len, int):
            tokenizer.model_max_length = max_len
    return tokenizer


def _spec_of(config: ChunkingConfig) -> ModelSpec:
    from core.embeddings import ModelSpec

    return ModelSpec.from_dict(config.model) if config.model else ModelSpec()


def make_splitter(config: ChunkingConfig, tokenizer: Any = None):  # noqa: ANN201
    """The langchain splitter for the body text (offsets come from `locate_chunks`)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if config.strategy == "token":
        if tokenizer is None:
            spec = _spec_of(config)
            tokenizer = load_tokenizer(spec.source, spec.ref)
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer,
            chunk_size=config.chunk_size,
            chunk_overlap=config.chunk_overlap,
        )
    return RecursiveCharacterTextSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
    )


def locate_chunks(text: str, pieces: list[str], max_overlap: int | None = None) -> list[int]:
    """The start offset in `text` of each piece, the pieces being a splitter's chunks of it.

    langchain's `add_start_index` is not used: it searches from `previous_start +
    previous_len - chunk_overlap`, which overshoots when the overlap is counted in tokens (it
    then finds nothing) and can return an earlier copy of a short chunk inside the previous one.

    The rule: a splitter's chunks advance through the text and cover it. Each chunk starts no
    earlier than the previous one, ends no earlier than the previous one's end, starts no later
    than the first non-whitespace character after that end (only whitespace is dropped between
    chunks) and, when the overlap is counted in characters (`max_overlap`; None for tokens),
    no earlier than that end minus `max_overlap`; the last chunk reaches the last
    non-whitespace character. Where a chunk's text occurs once in its window that fixes it.
    Where text repeats (runs like "-----", or a short chunk that also ends the previous one),
    every placement of every chunk that fits these rules is found (a forward and a backward
    pass over the occurrences), and each chunk takes the first placement that brings new text
    (ends after the previous chunk's end) and still lets the chunks after it fit.

    Should no placement fit (not seen: it would mean the splitter dropped or changed text), a
    greedy search is used instead (`_locate_greedy`) and a warning is logged.
    """
    if not pieces:
        return []
    gaps = _Gaps(text)
    layers: list[list[int]] = []  # the placements reachable from the start, per piece
    previous, previous_len = [0], 0  # a virtual empty chunk at 0
    for piece in pieces:
        size = len(piece)
        lo = max(previous[0], previous[0] + previous_len - size)
        if max_overlap is not None:
            lo = max(lo, previous[0] + previous_len - max_overlap)
        hi = gaps.next_text(previous[-1] + previous_len)
        found: list[int] = []
        at = text.find(piece, lo, hi + size)
        while at != -1 and len(found) < _MAX_PLACEMENTS:
            # A previous placement p' fits when text_end_before(at) - len' <= p' <= top.
            top = min(at, at + size - previous_len)
            if max_overlap is not None:
                top = min(top, at - previous_len + max_overlap)
            j = bisect.bisect_right(previous, top) - 1
            if j >= 0 and previous[j] + previous_len >= gaps.text_end_before(at):
                found.append(at)
            at = text.find(piece, at + 1, hi + size)
        if not found:
            return _locate_greedy(text, pieces, max_overlap, f"piece {len(layers)} fits nowhere")
        layers.append(found)
        previous, previous_len = found, size
    # Backward: keep the placements from which the remaining pieces can still fit.
    end = len(text)
    good = [p for p in layers[-1] if gaps.next_text(p + len(pieces[-1])) >= end]
    usable: list[list[int]] = [good]  # built from the last piece back, reversed below
    for index in range(len(pieces) - 2, -1, -1):
        size, after, after_len = len(pieces[index]), usable[-1], len(pieces[index + 1])
        keep = []
        for p in layers[index]:
            lo, hi = _window(p, size, after_len, max_overlap, gaps)
            k = bisect.bisect_left(after, lo)
            if k < len(after) and after[k] <= hi:
                keep.append(p)
        usable.append(keep)
    usable.reverse()
    if not all(usable):
        return _locate_greedy(text, pieces, max_overlap, "the chunks do not cover the text")
    # Forward: the first usable placement that brings new text, else the first usable one.
    starts: list[int] = []
    prev_start, prev_len = 0, 0
    for index, piece in enumerate(pieces):
        options = usable[index]
        if index == 0:
            lo, hi = 0, gaps.next_text(0)
        else:
            lo, hi = _window(prev_start, prev_len, len(piece), max_overlap, gaps)
        first = bisect.bisect_left(options, lo)
        fresh = bisect.bisect_left(options, max(lo, prev_start + prev_len - len(piece) + 1))
        k = fresh if fresh < len(options) and options[fresh] <= hi else first
        starts.append(options[k])
        prev_start, prev_len = options[k], len(piece)
    return starts


_MAX_PLACEMENTS = 1000  # per piece: a bound on the work in long runs of repeated text


class _Gaps:
    """Where the whitespace runs of a text are, for the tiling rules of `locate_chunks`."""

    def __init__(self, text: str) -> None:
        self.runs = [(m.start(), m.end()) for m in _SPACE_RUN.finditer(text)]
        self.starts = [s for s, _ in self.runs]
        self.ends = [e for _, e in self.runs]

    def next_text(self, offset: int) -> int:
        """The first non-whitespace offset at or after `offset` (the text's length if none)."""
        k = bisect.bisect_right(self.starts, offset) - 1
        return self.runs[k][1] if k >= 0 and self.runs[k][1] > offset else offset

    def text_end_before(self, offset: int) -> int:
        """Where the whitespace run ending at `offset` starts (`offset` if none ends there)."""
        k = bisect.bisect_left(self.ends, offset)
        return self.runs[k][0] if k < len(self.runs) and self.ends[k] == offset else offset


def _window(
    start: int, size: int, next_size: int, max_overlap: int | None, gaps: _Gaps
) -> tuple[int, int]:
    """The offsets where the chunk after one at `start` (of `size` chars) may start."""
    end = start + size
    lo = max(start, end - next_size)
    if max_overlap is not None:
        lo = max(lo, end - max_overlap)
    return lo, gaps.next_text(end)


def _locate_greedy(text: str, pieces: list[str], max_overlap: int | None, why: str) -> list[int]:
    """The fallback of `locate_chunks`: each piece at its first occurrence that ends after the
    previous piece's end (else ending at it), searched from the previous piece's start (and
    its end minus `max_overlap`), else from the start of the text; a piece not in the text at
    all gets that lower bound. Logs a warning with `why`.
    """
    logger.warning("Chunk offsets are approximate (%s): pages of repeated text may be off.", why)
    starts: list[int] = []
    prev_start = prev_end = 0
    for piece in pieces:
        lower = prev_start
        if max_overlap is not None:
            lower = max(lower, prev_end - max_overlap)
        at = text.find(piece, max(lower, prev_end - len(piece)))
        if at != -1 and at + len(piece) == prev_end:
            later = text.find(piece, at + 1)
            at = later if later != -1 else at
        if at == -1:
            at = text.find(piece, prev_start)
        if at == -1:
            at = text.find(piece)
        if at == -1:  # not in the text at all (never seen): it stays after the previous one
            at = min(lower, len(text))
        starts.append(at)
        prev_start, prev_end = at, at + len(piece)
    return starts


def document_text(doc: ParsedDocument) -> tuple[str, list[int]]:
    """The document's pages joined, and the offset where each page starts."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in doc.pages:
        starts.append(offset)
        parts.append(page.text)
        offset += len(page.text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(parts), starts


def _sections(text: str, config: ChunkingConfig) -> list[tuple[int, str, dict[str, str]]]:
    """(start offset, section text, headers) for each part of `text` the strategy treats apart."""
    if config.strategy != "markdown":
        return [(0, text, {})]
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(MARKDOWN_HEADERS, strip_headers=False)
    found: list[tuple[int, dict[str, str]]] = []
    cursor = 0
    # The markdown splitter rewrites whitespace, so each section is located in the original by
    # its first line and the original slice is used: offsets stay exact.
    for doc in splitter.split_text(text):
        first_line = next((ln.strip() for ln in doc.page_content.splitlines() if ln.strip()), "")
        start = text.find(first_line, cursor) if first_line else -1
        if start < 0:
            continue
        found.append((start, {k: str(v) for k, v in doc.metadata.items()}))
        cursor = start + len(first_line)
    if not found:
        return [(0, text, {})]
    found[0] = (0, found[0][1])  # text before the first located section belongs to it
    bounds = [s for s, _ in found] + [len(text)]
    return [(bounds[i], text[bounds[i] : bounds[i + 1]], found[i][1]) for i in range(len(found))]


def chunk_document(
    doc: ParsedDocument, config: ChunkingConfig, tokenizer: Any = None
) -> list[Chunk]:
    """Chunks of one document, in order, with the page each starts on (duplicates kept)."""
    text, page_starts = document_text(doc)
    page_numbers = [p.number for p in doc.pages]
    splitter = make_splitter(config, tokenizer)
    chunks: list[Chunk] = []
    for section_start, section_text, headers in _sections(text, config):
        if not section_text.strip():
            continue
        bodies = splitter.split_text(section_text)
        overlap = None if config.strategy == "token" else config.chunk_overlap
        for body, offset in zip(bodies, locate_chunks(section_text, bodies, overlap), strict=True):
            if not body.strip():
                continue
            start = section_start + offset
            end = start + len(body)
            first = bisect.bisect_right(page_starts, start) - 1
            last = bisect.bisect_right(page_starts, max(start, end - 1)) - 1
            metadata: dict[str, Any] = {"start_index": start, "n_chars": len(body)}
            if page_numbers[last] is not None and last != first:
                metadata["page_end"] = page_numbers[last]
            if headers:
                metadata["headers"] = headers
            chunks.append(
                Chunk(
                    id=chunk_id_for(body),
                    text=body,
                    source=doc.source,
                    page=page_numbers[first],
                    doc_id=doc.doc_id,
                    chunk_index=len(chunks),
                    metadata=metadata,
                )
            )
    return chunks


def chunk_documents(
    docs: list[ParsedDocument],
    config: ChunkingConfig,
    *,
    tokenizer: Any = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> ChunkingResult:
    """Chunk every document, drop exact duplicates (same content id; the first one is kept)."""
    if config.strategy == "token" and tokenizer is None:
        spec = _spec_of(config)
        tokenizer = load_tokenizer(spec.source, spec.ref)
    tracker = ProgressTracker("chunking", len(docs), on_progress, should_stop)
    seen: set[str] = set()
    kept: list[Chunk] = []
    per_doc: dict[str, int] = {}
    duplicates = 0
    for doc in docs:
        count = 0
        for chunk in chunk_document(doc, config, tokenizer):
            if chunk.id in seen:
                duplicates += 1
                continue
            seen.add(chunk.id)
            kept.append(chunk)
            count += 1
        per_doc[doc.doc_id] = count
        tracker.advance(1, f"{doc.source}: {count} chunks")
    warnings = []
    if duplicates:
        warnings.append(f"{duplicates} exact-duplicate chunk(s) removed")
    if config.strategy == "token":
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and config.chunk_size > limit - 2:
            warnings.append(
                f"chunk size {config.chunk_size} tokens is over the model's {limit - 2}-token "
                "window; the tail of long chunks will not be embedded"
            )
    return ChunkingResult(kept, duplicates, per_doc, warnings)
