"""The Documents stage end to end with the embedded Chroma store and the real MiniLM."""

from __future__ import annotations

import numpy as np
import pymupdf
import pytest

import core.embeddings
from core.config import ChromaSettings
from core.documents.chunking import ChunkingConfig
from core.documents.corpus import load_chunks
from core.documents.stage import (
    SAMPLE_PDF,
    UploadedFile,
    add_documents,
    build_corpus,
    corpus_files,
    index_corpus_run,
    ingest_sample_corpus,
    load_documents,
    remove_documents,
)
from core.documents.vector_store import (
    collection_name,
    count_indexed,
    index_corpus,
    open_client,
    search,
)
from core.embeddings import ModelSpec, encode_texts
from core.errors import ConfigError, InputError, StoppedError, StoreError
from core.runs.folders import list_runs

EMBEDDED = ChromaSettings()
TOPICS = {
    "volcano": "Volcanoes erupt when molten magma rises through cracks in the crust of the earth.",
    "bread": "Sourdough bread rises slowly because wild yeast ferments the flour and water.",
    "chess": "In chess the bishop moves diagonally and stays on squares of one colour.",
    "rain": "Rain forms when water vapour condenses into droplets heavy enough to fall.",
}


def topic_pdf() -> bytes:
    doc = pymupdf.open()
    for key in ("volcano", "bread"):
        doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 540, 770), TOPICS[key], fontsize=11)
    return doc.tobytes()


def topic_files() -> list[UploadedFile]:
    return [
        UploadedFile("nature.pdf", topic_pdf()),
        UploadedFile("games.md", f"# Games\n\n{TOPICS['chess']}".encode()),
        UploadedFile("weather.txt", TOPICS["rain"].encode()),
    ]


# Small enough that each topic is its own chunk (the PDF's two short pages are not merged).
SMALL = ChunkingConfig(chunk_size=120, chunk_overlap=20)


@pytest.fixture
def corpus():
    return build_corpus(topic_files(), SMALL, name="topics")


def test_bad_files_are_skipped_and_the_rest_go_in(data_root):
    files = topic_files() + [
        UploadedFile("../../escape.txt", b"Escaping text that must stay in the run folder."),
        UploadedFile("empty.txt", b""),
        UploadedFile("fake.pdf", b"just some text"),
        UploadedFile("weather copy.txt", TOPICS["rain"].encode()),  # same content
        UploadedFile("other/weather.txt", b"Fog is a cloud that touches the ground."),  # same name
    ]
    result = build_corpus(files, SMALL, name="mixed")
    status = {f.original_name: (f.status, f.reason) for f in result.files}
    assert [f.name for f in result.ok_files] == [
        "nature.pdf",
        "games.md",
        "weather.txt",
        "escape.txt",
        "weather (2).txt",
    ]
    assert status["empty.txt"][1].startswith("empty.txt: the file is empty")
    assert "named .pdf but it is not a PDF" in status["fake.pdf"][1]
    assert status["weather copy.txt"] == (
        "skipped",
        "weather copy.txt: same content as weather.txt.",
    )
    nature = next(f for f in result.files if f.name == "nature.pdf")
    assert (nature.pages, nature.chunks, nature.kind) == (2, 2, "pdf")
    manifest = result.run.manifest
    assert manifest.status == "done"
    assert manifest.summary["n_documents"] == 5 and manifest.summary["n_skipped"] == 3
    # Originals are kept inside the run; nothing is written outside the data folder.
    stored = sorted(p.name for p in result.run.artifact("files").iterdir())
    assert stored == ["escape.txt", "games.md", "nature.pdf", "weather (2).txt", "weather.txt"]
    assert not list(data_root.parent.glob("escape.txt"))
    assert not (data_root / "escape.txt").exists()
    pages = {c.text: (c.source, c.page) for c in load_chunks(result.run)}
    assert pages[TOPICS["bread"]] == ("nature.pdf", 2)
    assert pages[TOPICS["rain"]] == ("weather.txt", None)
    assert load_documents(result.run.id) == result.files


def test_no_usable_file_is_refused_and_leaves_no_run():
    with pytest.raises(InputError, match="None of the files could be used.*bad.txt"):
        build_corpus([UploadedFile("bad.txt", b"\x00\x01" * 50)])
    assert list_runs("corpus") == []


def test_add_and_remove_documents_make_new_runs(corpus):
    bigger = add_documents(corpus.run.id, [UploadedFile("extra.txt", b"Tea needs hot water.")])
    assert bigger.run.id != corpus.run.id
    assert bigger.run.manifest.config["derived_from"] == corpus.run.id
    assert [f.name for f in bigger.ok_files] == [
        "nature.pdf",
        "games.md",
        "weather.txt",
        "extra.txt",
    ]
    smaller = remove_documents(bigger.run.id, ["games.md"])
    assert [f.name for f in smaller.ok_files] == ["nature.pdf", "weather.txt", "extra.txt"]
    assert not any("bishop" in c.text for c in load_chunks(smaller.run))
    # The runs it came from are untouched.
    assert [f.name for f in corpus_files(bigger.run)] == [f.name for f in bigger.ok_files]
    assert len(load_chunks(corpus.run)) == 4
    with pytest.raises(InputError, match="has no document 'nope.txt'"):
        remove_documents(smaller.run.id, ["nope.txt"])


def test_sample_corpus_builds():
    result = ingest_sample_corpus()
    summary = result.run.manifest.summary
    assert result.run.manifest.status == "done"
    assert summary["n_pages"] == 66  # 73 pages, 7 of them blank
    assert 150 < summary["n_chunks"] < 300
    # Page numbers are physical (1-based), as PDF viewers show them; check one against pymupdf.
    heading = "12.5 How do I report a bug in Debian?"
    with pymupdf.open(SAMPLE_PDF) as pdf:
        (page_no,) = [p.number + 1 for p in pdf if p.search_for(heading) and p.number > 10]
    assert page_no == 64
    (chunk,) = [c for c in load_chunks(result.run) if heading in c.text and (c.page or 0) > 10]
    assert chunk.page <= page_no <= chunk.metadata.get("page_end", chunk.page)


def test_index_then_query_returns_the_expected_chunk(corpus, minilm):
    events = []
    report = index_corpus_run(corpus.run.id, ModelSpec(), model=minilm, on_progress=events.append)
    assert (report.n_chunks, report.n_added, report.n_skipped, report.dim) == (4, 4, 0, 384)
    assert report.collection == collection_name(corpus.run.id, ModelSpec(), 384)
    assert events[-1].stage == "embedding" and events[-1].done == 4 and events[-1].total == 4
    queries = ["Which chess piece moves diagonally?", "How does sourdough rise?"]
    hits = search(EMBEDDED, report.collection, encode_texts(minilm, queries), k=2)
    chunks = {c.id: c for c in load_chunks(corpus.run)}
    assert chunks[hits[0][0][0]].text == f"# Games\n\n{TOPICS['chess']}"
    assert (chunks[hits[1][0][0]].text, chunks[hits[1][0][0]].page) == (TOPICS["bread"], 2)
    assert 0.3 < hits[0][0][1] <= 1.0 and hits[0][0][1] > hits[0][1][1]
    # The same text as a query scores a cosine similarity of 1.
    same = search(EMBEDDED, report.collection, encode_texts(minilm, [TOPICS["rain"]]), k=1)
    assert same[0][0][1] == pytest.approx(1.0, abs=1e-4)


def test_collection_is_cosine_without_embedding_function(corpus, minilm):
    report = index_corpus_run(corpus.run.id, model=minilm, dim=64)
    assert report.collection.endswith("_d64")
    collection = open_client(EMBEDDED).get_collection(report.collection, embedding_function=None)
    assert collection.configuration["hnsw"]["space"] == "cosine"
    assert collection.configuration.get("embedding_function") is None
    assert collection.metadata["dim"] == 64 and collection.metadata["corpus_run"] == corpus.run.id
    hits = search(EMBEDDED, report.collection, encode_texts(minilm, ["volcano magma"], dim=64), 1)
    assert load_chunks(corpus.run)[0].id == hits[0][0][0]


def test_reindex_is_idempotent_and_embeds_nothing(corpus, minilm, monkeypatch):
    index_corpus(corpus.run.id, minilm, ModelSpec(), None, EMBEDDED)

    def no_embedding(*args, **kwargs):
        raise AssertionError("re-indexing must not embed")

    monkeypatch.setattr(core.embeddings, "encode_texts", no_embedding)
    report = index_corpus(corpus.run.id, minilm, ModelSpec(), None, EMBEDDED)
    assert (report.n_added, report.n_skipped, report.complete) == (0, 4, True)
    assert count_indexed(EMBEDDED, report.collection) == 4


def test_stop_keeps_whole_batches_and_resume_finishes(corpus, minilm):
    calls = iter([False, True])  # the tracker checks once per batch
    with pytest.raises(StoppedError):
        index_corpus(
            corpus.run.id, minilm, ModelSpec(), None, EMBEDDED,
            should_stop=lambda: next(calls), batch_size=1,
        )  # fmt: skip
    name = collection_name(corpus.run.id, ModelSpec(), 384)
    assert count_indexed(EMBEDDED, name) == 2
    report = index_corpus(corpus.run.id, minilm, ModelSpec(), None, EMBEDDED)
    assert (report.n_added, report.n_skipped) == (2, 2)
    assert count_indexed(EMBEDDED, name) == 4


def test_errors_are_clear(corpus, minilm):
    with pytest.raises(StoreError, match="no such collection.*index the corpus run"):
        search(EMBEDDED, "missing-collection", np.ones((1, 384), dtype=np.float32), 3)
    with pytest.raises(ConfigError, match="Dimension 999 is not between 1 and the model's 384"):
        index_corpus(corpus.run.id, minilm, ModelSpec(), 999, EMBEDDED)


@pytest.mark.parametrize(
    "run_id",
    ["corpus-20250101-120000-abcdef", "weird id/with spaces..and dots", "x" * 80, "a"],
)
def test_collection_names_follow_chromas_rules(run_id):
    from chromadb.api.segment import check_index_name

    for spec in (ModelSpec(), ModelSpec("local", "/models/my model"), ModelSpec("run", run_id)):
        name = collection_name(run_id, spec, 128)
        check_index_name(name)  # raises ValueError when invalid
        assert name.endswith("_d128")
    assert collection_name("c1", ModelSpec(), 128) != collection_name("c1", ModelSpec(), 64)
    assert collection_name("c1", ModelSpec(), 64) != collection_name("c2", ModelSpec(), 64)


def test_runs_without_files_cannot_be_edited():
    from core.documents.corpus import Chunk, save_chunks
    from core.errors import RunError
    from core.runs.folders import create_run

    imported = create_run("corpus", config={"chunking": {"strategy": "imported"}})
    save_chunks(imported, [Chunk(id="c_1", text="x", source="qa.csv")])
    imported.set_status("done")
    with pytest.raises(RunError, match="has no original files"):
        add_documents(imported.id, [UploadedFile("a.txt", b"text")])
