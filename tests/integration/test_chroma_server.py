"""A real Chroma server on loopback (`chroma run`): index and query through HttpClient, then
stop it and get a clear StoreError."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.config import ChromaSettings
from core.documents.corpus import load_chunks
from core.documents.stage import UploadedFile, build_corpus, index_corpus_run
from core.documents.vector_store import list_collections, open_client, search
from core.embeddings import ModelSpec, encode_texts
from core.errors import StoreError

CHROMA_BIN = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    """Start `chroma run` on a free loopback port; yield (process, port); always stop it."""
    if not CHROMA_BIN.exists():
        pytest.skip(f"no chroma CLI at {CHROMA_BIN}")
    port = free_port()
    log = (tmp_path / "chroma.log").open("wb")
    proc = subprocess.Popen(
        [str(CHROMA_BIN), "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited: {(tmp_path / 'chroma.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat within 30 s")
            time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_index_and_query_through_a_server_then_server_down(chroma_server, minilm):
    proc, port = chroma_server
    settings = ChromaSettings(host="127.0.0.1", port=port)
    corpus = build_corpus(
        [
            UploadedFile("trains.txt", b"Steam locomotives burn coal to boil water."),
            UploadedFile("plants.txt", b"Cacti store water in thick stems to survive droughts."),
        ]
    )
    report = index_corpus_run(corpus.run.id, ModelSpec(), settings=settings, model=minilm)
    assert (report.n_added, report.n_skipped) == (2, 0)
    again = index_corpus_run(corpus.run.id, ModelSpec(), settings=settings, model=minilm)
    assert (again.n_added, again.n_skipped) == (0, 2)
    hits = search(settings, report.collection, encode_texts(minilm, ["desert plants"]), k=2)
    by_id = {c.id: c for c in load_chunks(corpus.run)}
    assert by_id[hits[0][0][0]].source == "plants.txt"
    assert [c["name"] for c in list_collections(settings)] == [report.collection]
    # Nothing went into the embedded store: the server holds the collection.
    assert list_collections(ChromaSettings()) == []

    proc.terminate()
    proc.wait(timeout=10)
    with pytest.raises(StoreError) as excinfo:
        search(settings, report.collection, encode_texts(minilm, ["desert plants"]), k=2)
    message = str(excinfo.value)
    assert message.startswith(f"Cannot reach the Chroma server at 127.0.0.1:{port}.")
    assert f"chroma run --path ./chroma-data --host 127.0.0.1 --port {port}" in message


def test_no_server_at_all_is_a_clear_error():
    port = free_port()
    with pytest.raises(StoreError, match=rf"Cannot reach the Chroma server at 127\.0\.0\.1:{port}"):
        open_client(ChromaSettings(host="127.0.0.1", port=port))
