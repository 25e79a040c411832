"""The vector store: Chroma, embedded (PersistentClient in the data folder) or a server (HttpClient).

One collection per (corpus run, embedding model, dimension), in cosine space. Chroma never
embeds anything itself: collections have no embedding function and every add and query passes
our own embeddings. Chunk ids are content hashes, so re-indexing skips every id already in the
collection without embedding it again.

A team server is started with (from the app's virtual environment):

    chroma run --path ./chroma-data --host 0.0.0.0 --port 8000

and chosen in the sidebar (or with RAGBENCH_CHROMA_HOST / _PORT / _TOKEN).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import ChromaSettings, data_dir
from core.documents.corpus import Chunk, load_chunks
from core.errors import ConfigError, StoreError
from core.progress import ProgressCallback, ProgressEvent, ProgressTracker, StopCheck

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.embeddings import ModelSpec

logger = logging.getLogger(__name__)

CHROMA_DIRNAME = "chroma"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")
_LOOKUP_BATCH = 1000  # ids per existence check
_QUERY_BATCH = 256  # query embeddings per request
# Chunks encoded and added per batch: Chroma's cost per chunk halves from batches of 64 to
# 1,024 (measured), and a batch of texts sorted by length inside pads little. A stop keeps whole
# batches; one takes about 15 s to encode on 2 CPU cores.
INDEX_BATCH = 512


@dataclass(frozen=True)
class IndexReport:
    """What indexing did: how many chunks were embedded and how many were already there."""

    collection: str
    corpus_run_id: str
    model_label: str
    dim: int
    n_chunks: int
    n_added: int
    n_skipped: int
    seconds: float

    @property
    def complete(self) -> bool:
        return self.n_added + self.n_skipped == self.n_chunks


def chroma_path() -> Path:
    """Folder of the embedded store: `<data dir>/chroma`."""
    return data_dir() / CHROMA_DIRNAME


def _where(settings: ChromaSettings) -> str:
    return f"{settings.host}:{settings.port}" if settings.is_server else str(chroma_path())


def _server_down(settings: ChromaSettings, exc: BaseException) -> StoreError:
    return StoreError(
        f"Cannot reach the Chroma server at {settings.host}:{settings.port}.",
        found=f"{type(exc).__name__}: {str(exc)[:200]}",
        fix=(
            f"start it with `chroma run --path ./chroma-data --host {settings.host} "
            f"--port {settings.port}` (from the app's .venv), check host, port and token, "
            "or switch the sidebar to the embedded store"
        ),
    )


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return True
    return "could not connect" in str(exc).lower()


@contextlib.contextmanager
def _guard(settings: ChromaSettings, action: str) -> Iterator[None]:
    """Turn Chroma and transport failures into StoreError with a fix."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - chromadb raises many unrelated types
        if settings.is_server and _is_connection_error(exc):
            raise _server_down(settings, exc) from exc
        if type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc):
            raise StoreError(
                f"Chroma has no such collection while {action}.",
                found=str(exc)[:200],
                fix="index the corpus run into Chroma first (Documents page)",
            ) from exc
        raise StoreError(
            f"Chroma failed while {action} ({_where(settings)}).",
            found=f"{type(exc).__name__}: {str(exc)[:300]}",
        ) from exc


def open_client(settings: ChromaSettings):  # noqa: ANN201 - chromadb.api.ClientAPI
    """A Chroma client: the embedded store in the data folder, or the configured server.

    Telemetry is off. A server that does not answer its heartbeat raises StoreError.
    """
    import chromadb
    from chromadb.config import Settings

    chroma_settings = Settings(anonymized_telemetry=False)
    if not settings.is_server:
        path = chroma_path()
        path.mkdir(parents=True, exist_ok=True)
        try:
            return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        except Exception as exc:  # noqa: BLE001 - chromadb raises several types here
            raise StoreError(
                f"Could not open the embedded Chroma store at {path}.",
                found=f"{type(exc).__name__}: {str(exc)[:200]}",
                fix="check the folder is writable and not used by another Chroma version",
            ) from exc
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
    try:
        client = chromadb.HttpClient(
            host=settings.host,
            port=settings.port,
            ssl=settings.ssl,
            headers=headers,
            settings=chroma_settings,
        )
        client.heartbeat()
    except Exception as exc:  # noqa: BLE001 - connection failures come as ValueError and others
        raise _server_down(settings, exc) from exc
    return client


def collection_name(corpus_run_id: str, model_spec: ModelSpec, dim: int) -> str:
    """The collection of one (corpus run, model, dimension); valid under Chroma's naming rules."""
    from core.embeddings import model_fingerprint

    base = f"{corpus_run_id}_{model_fingerprint(model_spec)}_d{int(dim)}"
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", base)
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    if not _NAME_RE.match(name):
        digest = hashlib.sha256(base.encode()).hexdigest()[:24]
        name = f"rb_{digest}_d{int(dim)}"
    return name


def _chunk_metadata(chunk: Chunk, corpus_run_id: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": chunk.source,
        "doc_id": chunk.doc_id,
        "chunk_index": chunk.chunk_index,
        "corpus_run": corpus_run_id,
    }
    if chunk.page is not None:
        meta["page"] = chunk.page  # Chroma metadata has no null values
    return meta


def _existing_ids(collection: Any, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_BATCH):
        got = collection.get(ids=ids[start : start + _LOOKUP_BATCH], include=[])
        found.update(got["ids"])
    return found


def _within(tracker: ProgressTracker, start: int) -> ProgressCallback:
    """Progress of one group's encoding, counted in the whole indexing's chunks."""

    def forward(event: ProgressEvent) -> None:
        tracker.done = start + event.done
        tracker.report(f"{tracker.done}/{tracker.total} chunks embedded")

    return forward


def index_corpus(
    corpus_run_id: str,
    model: SentenceTransformer,
    model_spec: ModelSpec,
    dim: int | None,
    settings: ChromaSettings,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    batch_size: int = INDEX_BATCH,
) -> IndexReport:
    """Embed a corpus run's chunks into its collection; chunks already there are skipped.

    `dim` None means the model's native dimension; smaller dims are Matryoshka truncations.
    Chunks are added batch by batch, so a stop or a crash leaves whole batches only and the
    next call resumes where this one ended.
    """
    from core.embeddings import document_prompt, encode_texts, native_dim

    started = time.monotonic()
    chunks = load_chunks(corpus_run_id)
    native = native_dim(model)
    dim = int(dim or native)
    if not 0 < dim <= native:
        raise ConfigError(f"Dimension {dim} is not between 1 and the model's {native}.")
    if batch_size < 1:
        raise ConfigError(f"Batch size {batch_size} must be at least 1.")
    name = collection_name(corpus_run_id, model_spec, dim)
    client = open_client(settings)
    with _guard(settings, f"opening collection {name}"):
        collection = client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={
                "ragbench": 1,
                "corpus_run": corpus_run_id,
                "model": model_spec.label,
                "model_source": model_spec.source,
                "model_ref": model_spec.ref,
                "dim": dim,
                "n_chunks": len(chunks),
            },
            embedding_function=None,
        )
        existing = _existing_ids(collection, [c.id for c in chunks])
    todo = [c for c in chunks if c.id not in existing]
    tracker = ProgressTracker("embedding", len(todo), on_progress, should_stop)
    tracker.report(f"{len(existing)} of {len(chunks)} chunks already indexed")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        texts = [c.text for c in batch]
        # The model's document prompt (none for MiniLM), exactly as evaluation and training use it,
        # so Chroma search and exact search agree.
        embeddings = encode_texts(
            model,
            texts,
            dim=dim,
            prompt=document_prompt(model),
            batch_size=min(batch_size, 32),
            on_progress=_within(tracker, start),
            stage="embedding",
        )  # (len(batch), dim), L2-normalised
        with _guard(settings, f"adding to collection {name}"):
            collection.add(
                ids=[c.id for c in batch],
                embeddings=embeddings,
                documents=texts,
                metadatas=[_chunk_metadata(c, corpus_run_id) for c in batch],
            )
        tracker.done = start
        tracker.advance(len(batch), f"{tracker.done + len(batch)}/{len(todo)} chunks embedded")
    return IndexReport(
        collection=name,
        corpus_run_id=corpus_run_id,
        model_label=model_spec.label,
        dim=dim,
        n_chunks=len(chunks),
        n_added=len(todo),
        n_skipped=len(existing),
        seconds=time.monotonic() - started,
    )


def search(
    settings: ChromaSettings, collection_name: str, query_embeddings: np.ndarray, k: int
) -> list[list[tuple[str, float]]]:
    """Top-k chunk ids with cosine similarity for each query embedding (one list per query)."""
    queries = np.asarray(query_embeddings, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]  # (1, dim)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}.")
    client = open_client(settings)
    results: list[list[tuple[str, float]]] = []
    with _guard(settings, f"searching collection {collection_name}"):
        collection = client.get_collection(collection_name, embedding_function=None)
        count = collection.count()
        if count == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        for start in range(0, len(queries), _QUERY_BATCH):
            batch = queries[start : start + _QUERY_BATCH]  # (b, dim)
            got = collection.query(
                query_embeddings=batch, n_results=min(k, count), include=["distances"]
            )
            for ids, distances in zip(got["ids"], got["distances"] or [], strict=True):
                # Chroma's cosine distance is 1 - cosine similarity.
                results.append([(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)])
    return results


def count_indexed(settings: ChromaSettings, name: str) -> int:
    """How many chunks a collection holds; 0 when it does not exist."""
    client = open_client(settings)
    with _guard(settings, f"counting collection {name}"):
        if name not in _collection_names(client):
            return 0
        return client.get_collection(name, embedding_function=None).count()


def is_indexed(
    settings: ChromaSettings, corpus_run_id: str, model_spec: ModelSpec, dim: int
) -> bool:
    """Whether every chunk of the corpus run is in its collection for this model and dim."""
    name = collection_name(corpus_run_id, model_spec, dim)
    return count_indexed(settings, name) >= len(load_chunks(corpus_run_id))


def _collection_names(client: Any) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in client.list_collections()]


def list_collections(settings: ChromaSettings) -> list[dict[str, Any]]:
    """Every collection with its ragbench metadata and count."""
    client = open_client(settings)
    rows: list[dict[str, Any]] = []
    with _guard(settings, "listing collections"):
        for name in _collection_names(client):
            collection = client.get_collection(name, embedding_function=None)
            rows.append({"name": name, "count": collection.count(), **(collection.metadata or {})})
    return rows


def delete_collection(settings: ChromaSettings, name: str) -> None:
    """Delete one collection (its corpus run stays)."""
    client = open_client(settings)
    with _guard(settings, f"deleting collection {name}"):
        client.delete_collection(name)


def collections_of_runs(settings: ChromaSettings, run_ids: Collection[str]) -> list[str]:
    """Names of the collections built on any of these runs: a corpus run's collections (every
    model and dim) and a model run's collections (every corpus and dim)."""
    from core.embeddings import ModelSpec, model_fingerprint

    if not run_ids or (not settings.is_server and not chroma_path().exists()):
        return []  # no embedded store yet: nothing was ever indexed
    ids = set(run_ids)
    fingerprints = {model_fingerprint(ModelSpec("run", r)) for r in ids}
    names = []
    for row in list_collections(settings):
        if not row.get("ragbench"):
            continue
        by_meta = row.get("corpus_run") in ids or (
            row.get("model_source") == "run" and row.get("model_ref") in ids
        )
        # Collections made before model_ref was recorded name the model by its fingerprint.
        by_name = row.get("model_source") == "run" and any(
            f"_{f}_d" in row["name"] for f in fingerprints
        )
        if by_meta or by_name:
            names.append(row["name"])
    return names
