"""Models that load only when they must encode: an unchanged re-run reads every vector from the
embedding cache, so it needs the model's facts (dimension, prompts, maximum length and its cache
keys) but not its weights, and loading them (importing torch and transformers) costs seconds.

The facts are written the first time a model is loaded from a folder, keyed by that folder's
files (every path, size and modification time) and the load options; a model whose files
changed has another key and is loaded again. Anything else asked of a deferred model (encode,
a module, a device) loads it then, so it behaves as the real one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

FACTS_DIR = ("cache", "models")


def folder_fingerprint(folder: Path) -> str:
    """A digest of a model folder's files: relative path, size, modification and change times
    and inode of each."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            # ctime and inode too: copy tools (cp -p, rsync -a, unpacked archives) restore the
            # size and modification time of other weights, never these.
            digest.update(
                f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}|"
                f"{stat.st_ctime_ns}|{stat.st_ino}\n".encode()
            )
    return digest.hexdigest()


def _facts_path(key: str) -> Path:
    from core.config import data_dir

    return data_dir().joinpath(*FACTS_DIR, f"{key}.json")


def model_facts(model: Any) -> dict[str, Any]:
    """What a deferred model answers without its weights, taken from the loaded model."""
    from core.embedding_cache import model_key
    from core.embeddings import native_dim

    prompts = dict(getattr(model, "prompts", None) or {})
    keys = {json.dumps(p): model_key(model, p) for p in {None, *prompts.values()}}
    return {
        "dim": native_dim(model),
        "prompts": prompts,
        "max_seq_length": getattr(model, "max_seq_length", None),
        "keys": keys,
    }


class DeferredModel:
    """A sentence-transformers model known by its facts; loaded on the first other request."""

    def __init__(self, facts: dict[str, Any], load: Callable[[], Any]) -> None:
        self._facts = facts
        self._load = load
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the weights were needed (and are now in memory)."""
        return self._model is not None

    def _real(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def get_embedding_dimension(self) -> int:
        return int(self._facts["dim"])

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self._facts["prompts"])

    @property
    def max_seq_length(self) -> int | None:
        return self._facts["max_seq_length"]

    def cache_key(self, prompt: str | None) -> str | None:
        """The embedding cache's key for this model and prompt (the real model's, recorded)."""
        from core.embedding_cache import model_key

        key = self._facts["keys"].get(json.dumps(prompt))
        return key if key is not None else model_key(self._real(), prompt)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


def deferred_load(spec: Any, load: Callable[[], Any], extra: dict[str, Any] | None = None) -> Any:
    """The model of `spec` as a DeferredModel when its folder's facts are recorded; otherwise
    `load()` it now and record them. Hub ids (no folder here) are always loaded."""
    from core.embeddings import resolve_model_path

    folder = Path(resolve_model_path(spec))
    if not folder.is_dir():
        return load()
    key = hashlib.blake2b(
        json.dumps([folder_fingerprint(folder), extra or {}], sort_keys=True).encode(),
        digest_size=16,
    ).hexdigest()
    path = _facts_path(key)
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
        if {"dim", "prompts", "max_seq_length", "keys"} <= set(facts):
            return DeferredModel(facts, load)
    except (OSError, ValueError):
        pass  # not recorded yet, or damaged: load and record
    model = load()
    try:
        from core.runs.folders import write_text_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(model_facts(model)))
    except (OSError, TypeError, ValueError):  # a read-only data directory: loaded every time
        pass
    return model


def is_deferred(model: Any) -> bool:
    """Whether `model` is a DeferredModel (for callers that report what was loaded)."""
    return isinstance(model, DeferredModel)


def deferred_loader(device: str = "auto") -> Callable[[Any], Any]:
    """A model loader (spec -> model) for a stage: `load_model(spec, device)`, deferred."""
    from core.embeddings import load_model

    def load(spec: Any) -> Any:
        return deferred_load(spec, lambda: load_model(spec, device=device), {"device": device})

    return load
