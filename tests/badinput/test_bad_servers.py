"""Servers that die mid-run: the Chroma server while indexing and searching, the LLM server
between the items of a stage. What was done before the crash is kept; what failed says why."""

from __future__ import annotations

import threading

import pytest

from core.config import ChromaSettings
from core.documents.stage import index_corpus_run
from core.documents.vector_store import count_indexed, list_collections, search
from core.embeddings import ModelSpec, encode_texts
from core.errors import LLMError, StoreError
from core.llm.backends import Completion, OpenAICompatibleBackend
from core.llm.client import LLM
from core.questions.gate import GateConfig
from core.questions.generation import GenerationConfig, generate_question_run
from core.questions.qa_runs import GATE_REPORT_FILE
from core.runs.folders import load_run
from tests.support.chroma_server import CHROMA_BIN, free_port, start_chroma, stop_chroma
from tests.support.openai_server import ChatServer, Reply

# --------------------------------------------------------------------------- Chroma


@pytest.fixture
def chroma(tmp_path):
    """A real `chroma run` on a free loopback port; always stopped at the end."""
    if not CHROMA_BIN.exists():
        pytest.skip(f"no chroma CLI at {CHROMA_BIN}")
    port = free_port()
    state = {"path": tmp_path / "chroma-server", "log": tmp_path / "chroma.log", "port": port}
    state["proc"] = start_chroma(state["path"], port, state["log"])
    yield state
    stop_chroma(state["proc"])


@pytest.mark.slow
def test_chroma_server_killed_mid_index_then_search_fails_and_the_embedded_store_is_untouched(
    baseline, chroma, minilm
):
    embedded = ChromaSettings()
    local = index_corpus_run(baseline.corpus.id, ModelSpec(), settings=embedded, model=minilm)
    query = encode_texts(minilm, ["Which tool resolves dependencies?"])
    local_hits = search(embedded, local.collection, query, k=2)
    local_collections = list_collections(embedded)

    server = ChromaSettings(host="127.0.0.1", port=chroma["port"])
    seen: list[str] = []

    def kill_after_first_batch(event) -> None:  # noqa: ANN001
        seen.append(event.message)
        if event.done == 1:  # one chunk is in the server; the crash comes before the next
            stop_chroma(chroma["proc"], kill=True)

    from core.documents.vector_store import index_corpus

    with pytest.raises(StoreError) as excinfo:
        index_corpus(baseline.corpus.id, minilm, ModelSpec(), None, server,
                     on_progress=kill_after_first_batch, batch_size=1)  # fmt: skip
    message = str(excinfo.value)
    assert message.startswith(f"Cannot reach the Chroma server at 127.0.0.1:{chroma['port']}.")
    assert f"chroma run --path ./chroma-data --host 127.0.0.1 --port {chroma['port']}" in message

    with pytest.raises(StoreError, match=r"Cannot reach the Chroma server at 127\.0\.0\.1"):
        search(server, local.collection, query, k=2)

    # The embedded store and the saved runs are exactly as they were.
    assert list_collections(embedded) == local_collections
    assert search(embedded, local.collection, query, k=2) == local_hits
    baseline.intact()

    # The server comes back with the batch it had stored; indexing resumes, nothing is redone.
    chroma["proc"] = start_chroma(chroma["path"], chroma["port"], chroma["log"])
    assert count_indexed(server, local.collection) == 1
    resumed = index_corpus_run(baseline.corpus.id, ModelSpec(), settings=server, model=minilm)
    assert (resumed.n_skipped, resumed.n_added) == (1, 1)
    assert search(server, local.collection, query, k=2)[0][0][0] == local_hits[0][0][0]


# --------------------------------------------------------------------------- the LLM server


class ServerDiesBefore:
    """A backend that shuts the loopback server down just before call number `n`."""

    def __init__(self, inner: OpenAICompatibleBackend, server: ChatServer, n: int) -> None:
        self.inner, self.server, self.n = inner, server, n
        self.identity, self.label = inner.identity, inner.label
        self.calls = 0
        self._lock = threading.Lock()

    def chat(self, messages, **kwargs) -> Completion:  # noqa: ANN001, ANN003
        with self._lock:
            self.calls += 1
            if self.calls == self.n:
                self.server.__exit__(None, None, None)  # the port now refuses connections
        return self.inner.chat(messages, **kwargs)


def test_llm_server_down_mid_map_fails_the_remaining_items_and_keeps_the_earlier_ones(baseline):
    with ChatServer(
        lambda body: Reply(content=f"echo {body['messages'][-1]['content']}")
    ) as server:
        backend = ServerDiesBefore(
            OpenAICompatibleBackend(server.base_url, "m", timeout_s=5), server, 4
        )
        llm = LLM(
            backend, use_cache=False, max_retries=1, retry_base_delay_s=0.01, max_concurrency=1
        )
        results = llm.map(lambda i: llm.complete([{"role": "user", "content": f"item {i}"}]).text,
                          range(6))  # fmt: skip
    assert results[:3] == ["echo item 0", "echo item 1", "echo item 2"]
    assert all(isinstance(r, LLMError) and r.kind == "connection" for r in results[3:])
    assert "Cannot reach the LLM server" in str(results[3])
    assert dict(llm.usage.failures) == {"connection": 3}
    assert llm.usage.calls == 3 and llm.usage.retries == 3
    baseline.intact()


def test_llm_server_down_mid_question_stage_records_the_failed_chunks(baseline):
    reply = Reply(content='{"questions": [{"question": "Which tool resolves dependencies?"}]}')
    with ChatServer(lambda body: reply) as server:
        backend = ServerDiesBefore(
            OpenAICompatibleBackend(server.base_url, "m", timeout_s=5), server, 2
        )
        llm = LLM(
            backend, use_cache=False, max_retries=1, retry_base_delay_s=0.01, max_concurrency=1
        )
        config = GenerationConfig(n_per_chunk=1, gate=GateConfig(check_near_duplicates=False))
        result = generate_question_run(baseline.corpus.id, llm, config)
    assert [q.question for q in result.accepted] == ["Which tool resolves dependencies?"]
    assert [f.kind for f in result.failures] == ["connection"]
    assert "Cannot reach the LLM server" in result.failures[0].message
    manifest = load_run(result.run.id).manifest
    assert manifest.status == "done" and manifest.summary["n_failed_chunks"] == 1
    report = result.run.read_json(GATE_REPORT_FILE)
    assert report["failures_by_kind"] == {"connection": 1}
    assert result.usage["failures"] == {"connection": 1}
    baseline.intact()
