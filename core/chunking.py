"""Chunking parsed documents with langchain's text splitters.

Three strategies:
1. `recursive` (default): RecursiveCharacterTextSplitter, sizes in characters (1000 / 150).
2. `token`: the same splitter measuring length with the embedding model's own tokenizer, so a
   chunk never exceeds what the model reads (sizes in tokens, 200 / 30 by default).
3. `markdown`: MarkdownHeaderTextSplitter finds sections; each section is then split like
   `recursive` and its headers go into the chunk's metadata.

A document's pages are joined with blank lines; each chunk's start offset in that text maps
back to the page it starts on, so `Chunk.page` is exact even when a chunk spans two pages.
Chunk ids are content hashes (`chunk_id_for`); exact duplicates are dropped and counted.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.corpus import Chunk, chunk_id_for
from core.errors import ConfigError
from core.ingest import PAGE_SEPARATOR, ParsedDocument
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
    """The langchain splitter for the body text (start offsets recorded)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if config.strategy == "token":
        if tokenizer is None:
            spec = _spec_of(config)
            tokenizer = load_tokenizer(spec.source, spec.ref)
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer,
            chunk_size=config.chunk_size,
            chunk_overlap=config.chunk_overlap,
            add_start_index=True,
        )
    return RecursiveCharacterTextSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        add_start_index=True,
    )


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
        for piece in splitter.create_documents([section_text]):
            body = piece.page_content
            if not body.strip():
                continue
            start = section_start + max(0, int(piece.metadata.get("start_index", 0)))
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
