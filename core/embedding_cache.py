"""An on-disk cache of embeddings, so that no text is encoded twice by the same model.

A vector is keyed by what determines it: a digest of the model's weights (recomputed when the
weights change in place, as in training), the model's configuration (its modules, max sequence
length, truncation), the prompt, and a digest of the text. Vectors are the model's raw output at
its native dimension; callers truncate and normalise.

Layout: `<data dir>/cache/embeddings/<model key>/<shard>.npz`, each shard the text digests and
vectors of one write. A writer only ever adds a new shard under a unique name, written to a
temporary file and renamed, so two processes can write at once and a reader never sees half a
shard. A damaged shard is skipped with a warning (and set aside), and its texts are recomputed.
Set `RAGBENCH_EMBEDDING_CACHE=0` to turn the cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.formatting import count_text

logger = logging.getLogger(__name__)

CACHE_ENV = "RAGBENCH_EMBEDDING_CACHE"  # "0", "false" or "off" turns the cache off
SUBDIR = ("cache", "embeddings")
SHARD_SUFFIX = ".npz"
DAMAGED_SUFFIX = ".damaged"
MODEL_META = "model.json"
COMPACT_AFTER = 64  # small shards of one model; more are merged into one on the next write
SMALL_SHARD = 4096  # rows: a shard this small is merged; a bigger one is left as it is
KEEP_IN_MEMORY = 4  # models whose vectors stay loaded in this process

_weights_memo: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def text_key(text: str) -> bytes:
    """The 16-byte digest of a text, its key within one model's cache."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def weights_fingerprint(model: Any) -> str | None:
    """A digest of a torch model's weights, or None for anything that is not a torch module.

    Memoised per model object and recomputed when any tensor was changed in place or replaced
    (torch's version counters, data pointers, and a strided sample of the values for updates
    that bypass the counters), so a model being trained never reuses the vectors of its earlier
    weights."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not isinstance(model, torch.nn.Module):
        return None
    tensors = model.state_dict(keep_vars=True)
    stamp = tuple((name, t.data_ptr(), _version(t), _sample(t)) for name, t in tensors.items())
    memo = _weights_memo.get(model)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in tensors.items():
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    value = digest.hexdigest()
    _weights_memo[model] = (stamp, value)
    return value


def _version(tensor: Any) -> int:
    """torch's in-place version counter (-1 where torch keeps none, as for inference tensors)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return -1


def _sample(tensor: Any) -> float:
    """A strided sample of the values, summed: catches updates that bypass the version counter
    (fused optimizers, writes through `.data`), which change every weight they touch."""
    import torch

    with torch.no_grad():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        return float(flat[::step].double().sum())


def model_key(model: Any, prompt: str | None) -> str | None:
    """The cache key of (model, prompt): weights, configuration and prompt; None when the model
    cannot be fingerprinted (then nothing is cached). A deferred model (core.deferred_model)
    gives the key recorded when it was last loaded, without loading its weights."""
    if hasattr(type(model), "cache_key"):
        return model.cache_key(prompt)
    weights = weights_fingerprint(model)
    if weights is None:
        return None
    config = json.dumps(
        {
            "type": type(model).__name__,
            "modules": repr(model),
            "max_seq_length": getattr(model, "max_seq_length", None),
            "truncate_dim": getattr(model, "truncate_dim", None),
            "prompt": prompt,  # None (the model's default prompt) is not ""
            "weights": weights,
        },
        sort_keys=True,
    )
    return hashlib.sha256(config.encode()).hexdigest()[:32]


@dataclass
class CacheStats:
    """Counts since this cache object was made: texts found, texts encoded, shards skipped."""

    hits: int = 0
    misses: int = 0
    damaged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds on disk."""

    path: Path
    models: int
    files: int
    bytes: int


def usage_text(usage: CacheUsage) -> str:
    """'Embedding cache: 12.4 MB for 2 models and prompts in /data/cache/embeddings', for pages
    and the CLI."""
    size = usage.bytes / 1e6
    return (
        f"Embedding cache: {size:.1f} MB for "
        f"{count_text(usage.models, 'model and prompt', 'models and prompts')} in {usage.path}"
        if usage.files
        else f"Embedding cache: empty ({usage.path})"
    )


class EmbeddingCache:
    """Vectors on disk under `root`, one folder per model key; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        # model key -> (shard name -> its digests, text digest -> vector); least recent first
        self._loaded: OrderedDict[str, tuple[dict[str, list[bytes]], dict[bytes, np.ndarray]]] = (
            OrderedDict()
        )

    def get(self, key: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `digests` (digest -> vector of the native dimension)."""
        with self._lock:
            vectors = self._refresh(key)
            found = {d: vectors[d] for d in digests if d in vectors}
        return found

    def put(self, key: str, digests: Sequence[bytes], vectors: np.ndarray, meta: dict) -> None:
        """Add vectors (one row per digest) as a new shard. A failed write is logged, not raised:
        the cache only ever saves work."""
        if len(digests) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(digests):
            raise ValueError(f"{len(digests)} digests but vectors of shape {vectors.shape}")
        folder = self.root / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / MODEL_META).exists():
                _write_atomic(folder / MODEL_META, json.dumps(meta, indent=1).encode())
            name = _write_shard(folder, list(digests), vectors)
        except OSError as exc:
            logger.warning("Could not write to the embedding cache at %s: %s", folder, exc)
            return
        with self._lock:
            entry = self._loaded.get(key)
            if entry is not None:
                entry[0][name] = list(digests)
                entry[1].update(zip(digests, vectors, strict=True))
                self._compact(key)

    def usage(self) -> CacheUsage:
        """Models, files and bytes under the cache folder (files that vanish while it counts,
        merged or renamed by a writer, are left out)."""
        files, size = 0, 0
        models = 0
        if self.root.exists():
            models = sum(1 for p in self.root.iterdir() if p.is_dir())
            for path in self.root.rglob("*"):
                try:
                    if path.is_file():
                        size += path.stat().st_size
                        files += 1
                except OSError:
                    continue
        return CacheUsage(self.root, models, files, size)

    def clear(self) -> None:
        """Delete every cached vector."""
        with self._lock:
            self._loaded.clear()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ---------------------------------------------------------------------------

    def _refresh(self, key: str) -> dict[bytes, np.ndarray]:
        """Load the shards of `key` written since the last look (by this or another process)."""
        names, vectors = self._loaded.pop(key, ({}, {}))
        self._loaded[key] = (names, vectors)  # most recently used last
        while len(self._loaded) > KEEP_IN_MEMORY:
            self._loaded.popitem(last=False)
        folder = self.root / key
        if not folder.is_dir():
            return vectors
        for path in sorted(folder.glob("*" + SHARD_SUFFIX)):
            if path.name in names or path.name.startswith("."):  # .tmp-…: still being written
                continue
            shard = self._read_shard(path)
            if shard is not None:
                vectors.update(zip(shard[0], shard[1], strict=True))
                names[path.name] = shard[0]
        return vectors

    def _read_shard(self, path: Path) -> tuple[list[bytes], np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
                if keys.dtype != np.dtype("S16") or vectors.ndim != 2:
                    raise ValueError(f"unexpected arrays {keys.dtype} {vectors.shape}")
                if len(keys) != len(vectors):
                    raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
                raw = keys.tobytes()  # not bytes(k): numpy drops a digest's trailing zero bytes
                digests = [raw[i : i + 16] for i in range(0, len(raw), 16)]
                return digests, np.asarray(vectors, dtype=np.float32)
        except FileNotFoundError:
            return None  # merged away by a compaction in another process
        except Exception as exc:  # noqa: BLE001 - any damage: skip, recompute, never crash
            logger.warning("Skipping a damaged embedding cache file %s: %s", path, exc)
            self.stats.damaged.append(str(path))
            try:
                os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
            except OSError:
                pass
            return None

    def _compact(self, key: str) -> None:
        """Merge a model's small shards (under SMALL_SHARD rows) into one when there are more
        than COMPACT_AFTER of them, so each vector is rewritten a few times at most. Readers in
        other processes may see a vector twice (harmless) or, listing the folder mid-merge, miss
        one and encode it again; none is lost: the merged shard is in place before the old go."""
        names, vectors = self._loaded.get(key, ({}, {}))
        small = [n for n, digests in names.items() if len(digests) < SMALL_SHARD]
        if len(small) <= COMPACT_AFTER:
            return
        folder = self.root / key
        digests = list(dict.fromkeys(d for n in small for d in names[n] if d in vectors))
        try:
            merged = _write_shard(folder, digests, np.stack([vectors[d] for d in digests]))
            for old in small:
                (folder / old).unlink(missing_ok=True)
                del names[old]
        except (OSError, ValueError) as exc:  # ValueError: vectors of two widths
            logger.warning("Could not compact the embedding cache at %s: %s", folder, exc)
            return
        names[merged] = digests


def _write_shard(folder: Path, digests: list[bytes], vectors: np.ndarray) -> str:
    """Write one shard through a temporary file and a rename; return its name."""
    name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
    tmp = folder / f".tmp-{name}.part"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.frombuffer(b"".join(digests), dtype="S16"), vectors=vectors)
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not fill up with half-written shards
        raise
    return name


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_caches: dict[Path, EmbeddingCache] = {}
_caches_lock = threading.Lock()


def cache_enabled() -> bool:
    """False when `RAGBENCH_EMBEDDING_CACHE` is 0, false or off."""
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir(data: Path | None = None) -> Path:
    """The cache folder inside the data directory."""
    from core.config import data_dir

    return (data or data_dir()).joinpath(*SUBDIR)


def default_cache() -> EmbeddingCache | None:
    """The data directory's cache (one object per folder in this process), or None when off."""
    return data_dir_cache() if cache_enabled() else None


def data_dir_cache() -> EmbeddingCache:
    """The data directory's cache whether encoding uses it or not: what the Runs page and
    `ragbench cache` show and clear."""
    root = cache_dir()
    with _caches_lock:
        if root not in _caches:
            _caches[root] = EmbeddingCache(root)
        return _caches[root]


def clear_data_dir_cache() -> CacheUsage:
    """Empty the data directory's cache: an owner's action, recorded in the audit log.
    Returns what it held."""
    from core.runs.actor import require
    from core.runs.audit import record

    require("delete", "clear the embedding cache")
    store = data_dir_cache()
    usage = store.usage()
    store.clear()
    record("cleared the embedding cache", detail=usage_text(usage))
    return usage
