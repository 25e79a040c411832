"""Chunking: exact boundaries and overlap, page mapping, strategies, ids and de-duplication."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from core.documents.chunking import (
    ChunkingConfig,
    chunk_document,
    chunk_documents,
    document_text,
    load_tokenizer,
    locate_chunks,
)
from core.documents.corpus import chunk_id_for
from core.documents.parsing import Page, ParsedDocument, parse_file
from core.errors import ConfigError

WORDS = [f"word-{i:05d}" for i in range(1, 25)]  # 10 characters each


def make_doc(pages: list[str], source: str = "doc.txt", numbered: bool = True) -> ParsedDocument:
    return ParsedDocument(
        source=source,
        doc_id=f"d_{source}",
        kind="pdf" if numbered else "txt",
        pages=tuple(Page(i + 1 if numbered else None, t) for i, t in enumerate(pages)),
        size_bytes=0,
    )


def two_page_doc() -> ParsedDocument:
    return make_doc([" ".join(WORDS[:12]), " ".join(WORDS[12:])])


def test_recursive_boundaries_overlap_and_pages_are_exact():
    chunks = chunk_document(two_page_doc(), ChunkingConfig(chunk_size=55, chunk_overlap=22))
    # 5 words fit in 55 characters; an overlap of 22 carries the last 2 words over. Pages are
    # split apart first (the page separator is a paragraph break), so no chunk spans pages.
    expected = [
        (1, WORDS[0:5]),
        (1, WORDS[3:8]),
        (1, WORDS[6:11]),
        (1, WORDS[9:12]),
        (2, WORDS[12:17]),
        (2, WORDS[15:20]),
        (2, WORDS[18:23]),
        (2, WORDS[21:24]),
    ]
    assert [(c.page, c.text.split()) for c in chunks] == expected
    assert [c.metadata["start_index"] for c in chunks] == [0, 33, 66, 99, 133, 166, 199, 232]
    assert [c.chunk_index for c in chunks] == list(range(8))
    text, _ = document_text(two_page_doc())
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert text[start : start + len(chunk.text)] == chunk.text
        assert len(chunk.text) <= 55


def test_chunk_spanning_pages_starts_on_its_first_page():
    doc = make_doc(["Short first page.", "Short second page.", "Third."])
    (chunk,) = chunk_document(doc, ChunkingConfig(chunk_size=1000, chunk_overlap=0))
    assert chunk.text == "Short first page.\n\nShort second page.\n\nThird."
    assert (chunk.page, chunk.metadata["page_end"]) == (1, 3)


def test_chunk_starting_mid_document_gets_the_right_page():
    doc = make_doc(["a" * 30, "bbb " * 10, "Target sentence on page three."])
    chunks = chunk_document(doc, ChunkingConfig(chunk_size=40, chunk_overlap=0))
    target = next(c for c in chunks if "Target" in c.text)
    assert target.page == 3
    assert all(c.page == 2 for c in chunks if c.text.startswith("bbb"))


def test_text_documents_have_no_page():
    chunks = chunk_document(make_doc(["plain text"], numbered=False), ChunkingConfig())
    assert [(c.page, c.text) for c in chunks] == [(None, "plain text")]


def test_chunk_ids_are_content_hashes_and_stable():
    first = chunk_document(two_page_doc(), ChunkingConfig(chunk_size=55, chunk_overlap=22))
    again = chunk_document(two_page_doc(), ChunkingConfig(chunk_size=55, chunk_overlap=22))
    assert [c.id for c in first] == [c.id for c in again]
    assert all(c.id == chunk_id_for(c.text) for c in first)
    assert len({c.id for c in first}) == len(first)


def test_exact_duplicates_are_removed_and_counted():
    para = "Duplicate paragraph about backups and restores."
    a = make_doc([f"{para}\n\nOnly in A."], source="a.txt")
    b = make_doc([f"{para}\n\nOnly in B."], source="b.txt")
    result = chunk_documents([a, b], ChunkingConfig(chunk_size=50, chunk_overlap=0))
    assert [c.text for c in result.chunks] == [para, "Only in A.", "Only in B."]
    assert result.duplicates_removed == 1
    assert result.per_doc == {"d_a.txt": 2, "d_b.txt": 1}
    assert result.warnings == ["1 exact-duplicate chunk(s) removed"]


def test_markdown_strategy_splits_on_headers_with_exact_offsets():
    md = (
        "Preface line.\n\n# Guide\n\nIntro to the guide.\n\n## Install\n\nRun the installer.\n\n"
        "Then reboot.\n\n## Remove\n\nDelete the folder."
    )
    doc = make_doc([md], source="guide.md", numbered=False)
    chunks = chunk_document(doc, ChunkingConfig.for_strategy("markdown"))
    assert [c.text for c in chunks] == [
        "Preface line.",
        "# Guide\n\nIntro to the guide.",
        "## Install\n\nRun the installer.\n\nThen reboot.",
        "## Remove\n\nDelete the folder.",
    ]
    assert [c.metadata.get("headers") for c in chunks] == [
        None,
        {"h1": "Guide"},
        {"h1": "Guide", "h2": "Install"},
        {"h1": "Guide", "h2": "Remove"},
    ]
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert md[start : start + len(chunk.text)] == chunk.text


def test_token_strategy_respects_the_token_budget():
    tokenizer = load_tokenizer()  # the packaged MiniLM's, offline
    text = " ".join(f"Sentence number {i} talks about package management." for i in range(60))
    doc = make_doc([text], numbered=False)
    config = ChunkingConfig.for_strategy("token", chunk_size=64, chunk_overlap=8)
    result = chunk_documents([doc], config)  # loads the default model's tokenizer itself
    lengths = [len(tokenizer.tokenize(c.text)) for c in result.chunks]
    assert len(result.chunks) > 5
    assert max(lengths) <= 64
    assert min(lengths[:-1]) > 40  # chunks are filled, not split at every sentence
    second = result.chunks[1]
    assert result.chunks[0].text.split()[-1] in second.text.split()[:8]  # overlap


def test_token_size_over_model_window_warns():
    tokenizer = load_tokenizer()
    assert tokenizer.model_max_length == 256  # MiniLM's max_seq_length, not the tokenizer's 512
    config = ChunkingConfig.for_strategy("token", chunk_size=300, chunk_overlap=10)
    result = chunk_documents([make_doc(["a b c"])], config, tokenizer=tokenizer)
    assert result.warnings == [
        "chunk size 300 tokens is over the model's 254-token window; the tail of long chunks "
        "will not be embedded"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"chunk_size": 100, "chunk_overlap": 100},
            "Chunk overlap 100 must be at least 0 and below",
        ),
        ({"chunk_size": 5}, "Chunk size 5 is too small"),
        ({"strategy": "semantic"}, "Unknown chunking strategy 'semantic'"),
    ],
)
def test_invalid_config_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ChunkingConfig(**kwargs)


def test_config_roundtrip():
    config = ChunkingConfig.for_strategy("token", chunk_overlap=10)
    assert (config.chunk_size, config.chunk_overlap) == (200, 10)
    assert ChunkingConfig.from_dict(config.to_dict() | {"unknown": 1}) == config


def test_pdf_pages_flow_into_chunk_pages():
    pdf = pymupdf.open()
    for i in range(1, 4):
        pdf.new_page().insert_text((72, 72), f"Marker{i} " + "filler text here " * 3)
    parsed = parse_file("pages.pdf", pdf.tobytes())
    chunks = chunk_document(parsed, ChunkingConfig(chunk_size=60, chunk_overlap=0))
    pages = {c.text.split()[0]: c.page for c in chunks if c.text.startswith("Marker")}
    assert pages == {"Marker1": 1, "Marker2": 2, "Marker3": 3}


def test_markdown_long_section_is_split_and_keeps_its_headers():
    body = " ".join(WORDS)
    md = f"# Top\n\n## Words\n\n{body}\n\n## End\n\nBye."
    doc = make_doc([md], source="long.md", numbered=False)
    chunks = chunk_document(doc, ChunkingConfig("markdown", chunk_size=60, chunk_overlap=0))
    word_chunks = [c for c in chunks if c.metadata.get("headers") == {"h1": "Top", "h2": "Words"}]
    assert len(word_chunks) >= 4
    # A header with no text of its own stays with the section under it.
    assert " ".join(" ".join(c.text.split()) for c in word_chunks) == f"# Top ## Words {body}"
    assert chunks[-1].text == "## End\n\nBye."
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert md[start : start + len(chunk.text)] == chunk.text


SAMPLE_PDF = Path(__file__).resolve().parents[2] / "data" / "sample" / "debian-faq.en.pdf"


def test_token_chunks_of_the_sample_pdf_start_on_their_own_page():
    # Regression: langchain's add_start_index subtracted the token overlap as characters, found
    # nothing and the -1 was clamped to 0, so 75 of 246 chunks claimed to start on page 1.
    doc = parse_file(SAMPLE_PDF.name, SAMPLE_PDF.read_bytes())
    chunks = chunk_document(doc, ChunkingConfig.for_strategy("token"), load_tokenizer())
    assert len(chunks) > 100
    assert sum(c.metadata["start_index"] == 0 for c in chunks) <= 1
    squashed = [" ".join(p.text.split()) for p in doc.pages]
    index_of = {p.number: i for i, p in enumerate(doc.pages)}
    for chunk in chunks:
        # The first 40 characters start on the chunk's page (they may run on to the next one),
        # and the last 40 end on its last page (page_end when it spans pages).
        first = index_of[chunk.page]
        head = " ".join(chunk.text[:40].split())
        following = squashed[first + 1] if first + 1 < len(squashed) else ""
        at = (squashed[first] + " " + following).find(head)
        assert 0 <= at < len(squashed[first]), (chunk.chunk_index, chunk.page, head)
        last = index_of[chunk.metadata.get("page_end", chunk.page)]
        tail = " ".join(chunk.text[-40:].split())
        before = squashed[last - 1] + " " if last > 0 else ""
        at = (before + squashed[last]).rfind(tail)
        assert at >= 0 and at + len(tail) > len(before), (chunk.chunk_index, last, tail)


def test_a_chunk_that_cannot_be_placed_gets_a_warning_not_offset_zero(caplog):
    with caplog.at_level("WARNING", logger="core.documents.chunking"):
        starts = locate_chunks("alpha beta gamma", ["alpha beta", "delta"], max_overlap=0)
    assert starts == [0, 10]  # delta is nowhere: it stays after the previous chunk
    assert "Chunk offsets are approximate (piece 1 fits nowhere)" in caplog.text


def test_a_repeated_run_is_placed_so_the_chunks_cover_it():
    # Ten zeros occur everywhere in a run of thirty; only offset 20 leaves nothing uncovered.
    assert locate_chunks("0" * 30, ["0" * 20, "0" * 10]) == [0, 20]
    # With a character overlap of 5 the true chunks overlap by exactly 5.
    text = "0" * 50
    assert locate_chunks(text, ["0" * 20, "0" * 20, "0" * 20], max_overlap=5) == [0, 15, 30]
