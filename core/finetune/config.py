"""A fine-tune's settings and guard-rails: `FinetuneConfig` (validated on construction, messages
name the fix; to_dict/from_dict/update for the page's form and the manifest), the Matryoshka dims,
the warnings that are legal but dubious (`check_config`), the base model's description and the
precision for a device."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.embeddings import ModelSpec, resolve_model_path
from core.errors import ConfigError

if TYPE_CHECKING:
    pass


LOSSES: tuple[str, ...] = ("mnrl", "cached_mnrl")


SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "constant_with_warmup")


PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")


DEVICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")


MATRYOSHKA_LADDER: tuple[int, ...] = (512, 256, 128, 64)


ADVISED_MIN_BATCH = 16


TINY_DATASET = 100  # training pairs below which results are noisy


def default_dims(native: int) -> tuple[int, ...]:
    """The Matryoshka dims the recipes use: the native dim, then 512/256/128/64 below it."""
    return (native, *[d for d in MATRYOSHKA_LADDER if d < native])


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean {close[0]!r}" if close else f"use one of {', '.join(options)}"


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tune run needs. Saved in the run manifest (`to_dict` / `from_dict`).

    `matryoshka_dims` empty means the default for the model (`default_dims(native)`);
    `dim_weights` empty means weight 1 for every dim. `max_seq_length` None keeps the model's own.
    """

    qa_run_id: str = ""
    base_model: ModelSpec = field(default_factory=ModelSpec)
    matryoshka_dims: tuple[int, ...] = ()
    dim_weights: tuple[float, ...] = ()
    loss: str = "mnrl"
    mini_batch_size: int = 32  # cached_mnrl only: the chunk size for GradCache
    hard_negatives: bool = False
    num_negatives: int = 1
    negatives_range_min: int = 2  # skip the nearest candidates: often unlabelled positives
    negatives_range_max: int = 30
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    weight_decay: float = 0.01
    max_seq_length: int | None = None
    seed: int = 42
    precision: str = "auto"
    device: str = "auto"
    eval_each_epoch: bool = True
    # Training pairs per question source (human, llm, heading, cloze): 0 leaves a source out,
    # 0.5 keeps half its pairs (drawn with the seed), 2 uses each pair twice. {} = all once.
    source_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Coerce what a form or JSON hands us (lists, dicts) into the frozen shapes.
        if isinstance(self.base_model, dict):
            object.__setattr__(self, "base_model", ModelSpec.from_dict(self.base_model))
        object.__setattr__(self, "matryoshka_dims", tuple(int(d) for d in self.matryoshka_dims))
        object.__setattr__(self, "dim_weights", tuple(float(w) for w in self.dim_weights))
        object.__setattr__(
            self, "source_weights", {str(k): float(v) for k, v in self.source_weights.items()}
        )
        if self.max_seq_length in (0, ""):
            object.__setattr__(self, "max_seq_length", None)
        self._validate()

    def _validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"Unknown loss {self.loss!r}.", fix=_suggest(self.loss, list(LOSSES)))
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"Unknown scheduler {self.scheduler!r}.",
                fix=_suggest(self.scheduler, list(SCHEDULERS)),
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"Unknown precision {self.precision!r}.",
                fix=_suggest(self.precision, list(PRECISIONS)),
            )
        if self.device not in DEVICES:
            raise ConfigError(
                f"Unknown device {self.device!r}.", fix=_suggest(self.device, list(DEVICES))
            )
        if not 1 <= self.epochs <= 100:
            raise ConfigError(
                f"Epochs must be between 1 and 100; got {self.epochs}.",
                fix="use 1 to 10 (3 is the default)",
            )
        if self.batch_size < 2:
            raise ConfigError(
                f"Batch size {self.batch_size} leaves no in-batch negatives for MNRL.",
                fix="use at least 2 (32 or more is recommended)",
            )
        if self.loss == "cached_mnrl" and self.mini_batch_size < 1:
            raise ConfigError(
                f"Mini-batch size {self.mini_batch_size} must be at least 1.", fix="use 8 to 64"
            )
        if not 0 < self.learning_rate <= 1e-2:
            raise ConfigError(
                f"Learning rate {self.learning_rate:g} is outside (0, 0.01].",
                fix="use something like 2e-5 (the recipes' default)",
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(
                f"Warmup ratio {self.warmup_ratio:g} must be in [0, 1).",
                fix="use 0.1 (10% of the steps)",
            )
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(
                f"Weight decay {self.weight_decay:g} must be in [0, 1).", fix="use 0.01"
            )
        if self.max_seq_length is not None and not 8 <= self.max_seq_length <= 8192:
            raise ConfigError(
                f"Max sequence length {self.max_seq_length} must be between 8 and 8192.",
                fix="leave it empty to keep the model's own, or use e.g. 256",
            )
        if self.seed < 0:
            raise ConfigError(f"Seed {self.seed} must not be negative.", fix="use 42")
        if any(d <= 0 for d in self.matryoshka_dims):
            raise ConfigError(
                f"Matryoshka dims must be positive; got {list(self.matryoshka_dims)}.",
                fix="use e.g. 384, 256, 128, 64",
            )
        if len(set(self.matryoshka_dims)) != len(self.matryoshka_dims):
            raise ConfigError(
                f"Matryoshka dims repeat a value: {list(self.matryoshka_dims)}.",
                fix="list each dimension once",
            )
        if self.dim_weights and len(self.dim_weights) != len(self.matryoshka_dims):
            raise ConfigError(
                f"{len(self.dim_weights)} dim weights for {len(self.matryoshka_dims)} dims.",
                fix="give one weight per dimension, or none for weight 1 everywhere",
            )
        if any(w <= 0 for w in self.dim_weights):
            raise ConfigError(
                f"Dim weights must be positive; got {list(self.dim_weights)}.",
                fix="use e.g. 1, 1, 1, 1",
            )
        self._validate_source_weights()
        if self.hard_negatives:
            if not 1 <= self.num_negatives <= 20:
                raise ConfigError(
                    f"Number of hard negatives {self.num_negatives} must be between 1 and 20.",
                    fix="use 1 to 5",
                )
            if self.negatives_range_min < 0:
                raise ConfigError(
                    f"Hard-negative range start {self.negatives_range_min} must not be negative.",
                    fix="use 0 to skip nothing, or 2 to skip the two nearest chunks",
                )
            if self.negatives_range_max < self.negatives_range_min + self.num_negatives:
                raise ConfigError(
                    f"Hard-negative range {self.negatives_range_min}..{self.negatives_range_max} "
                    f"holds fewer than {self.num_negatives} candidates.",
                    fix="raise the range end or lower the number of negatives",
                )

    def _validate_source_weights(self) -> None:
        from core.questions.sources import SOURCES

        unknown = [k for k in self.source_weights if k not in SOURCES]
        if unknown:
            raise ConfigError(
                f"Unknown question source {unknown[0]!r} in the source weights.",
                fix=_suggest(unknown[0], list(SOURCES)),
            )
        bad = {k: w for k, w in self.source_weights.items() if not 0 <= w <= 10}
        if bad:
            name, weight = next(iter(bad.items()))
            raise ConfigError(
                f"Source weight {weight:g} for {name!r} is outside 0..10.",
                fix="use 0 to leave a source out, 1 for all its pairs, 2 to use each twice",
            )
        if self.source_weights and not any(self.source_weights.values()):
            raise ConfigError(
                "Every source weight is 0, so nothing would be trained on.",
                fix="give at least one source a positive weight",
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the run manifest)."""
        data = dataclasses.asdict(self)
        data["base_model"] = self.base_model.to_dict()
        data["matryoshka_dims"] = list(self.matryoshka_dims)
        data["dim_weights"] = list(self.dim_weights)
        data["source_weights"] = dict(self.source_weights)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], ignore_extra: bool = False) -> FinetuneConfig:
        """Build from a dict; unknown keys are an error (with a guess) unless `ignore_extra`."""
        names = [f.name for f in dataclasses.fields(cls)]
        extra = [k for k in data if k not in names]
        if extra and not ignore_extra:
            raise ConfigError(
                f"Unknown fine-tune setting {extra[0]!r}.", fix=_suggest(extra[0], names)
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def update(self, **changes: Any) -> FinetuneConfig:
        """A copy with some settings changed (validated again)."""
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})


def resolve_dims(cfg: FinetuneConfig, native: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The dims and weights actually trained: defaults filled in, dims above native dropped,
    sorted descending (weights follow their dims)."""
    dims = cfg.matryoshka_dims or default_dims(native)
    weights = cfg.dim_weights or tuple(1.0 for _ in dims)
    pairs = sorted(
        ((d, w) for d, w in zip(dims, weights, strict=True) if d <= native), reverse=True
    )
    if not pairs:
        raise ConfigError(
            f"No Matryoshka dim is at or below the model's native dimension {native}.",
            found=f"dims {list(dims)}",
            fix=f"include {native}",
        )
    return tuple(d for d, _ in pairs), tuple(w for _, w in pairs)


def check_config(
    cfg: FinetuneConfig,
    *,
    native_dim: int | None = None,
    query_prompt: str | None = None,
    n_train: int | None = None,
) -> list[str]:
    """Legal but dubious choices, as warnings to show in the UI and log. Never raises."""
    warnings: list[str] = []
    dims = list(cfg.matryoshka_dims)
    if native_dim and dims:
        if native_dim not in dims:
            warnings.append(
                f"The model's native dimension {native_dim} is not in the Matryoshka dims {dims}: "
                f"the full-size embedding would not be trained. Add {native_dim}."
            )
        above = [d for d in dims if d > native_dim]
        if above:
            warnings.append(
                f"Dims {above} are above the model's native dimension {native_dim}; they are "
                "dropped from training."
            )
    if dims and dims != sorted(dims, reverse=True):
        warnings.append(
            f"Matryoshka dims {dims} are not in descending order; they are trained as "
            f"{sorted(dims, reverse=True)}."
        )
    if cfg.batch_size < ADVISED_MIN_BATCH:
        warnings.append(
            f"Batch size {cfg.batch_size} gives each question only {cfg.batch_size - 1} in-batch "
            f"negatives; MNRL works best with 32 or more. Use at least {ADVISED_MIN_BATCH}, or "
            "cached_mnrl with a large batch and a small mini-batch if memory is short "
            "(gradient accumulation adds no negatives)."
        )
    if cfg.loss == "cached_mnrl" and cfg.mini_batch_size >= cfg.batch_size:
        warnings.append(
            f"Mini-batch size {cfg.mini_batch_size} is not below the batch size {cfg.batch_size}: "
            "cached_mnrl then saves no memory. Lower the mini-batch or use mnrl."
        )
    if n_train is not None:
        if n_train < TINY_DATASET:
            warnings.append(
                f"Only {n_train} training questions: expect a noisy result and over-fitting. "
                "Aim for a few hundred or more."
            )
        if 0 < n_train < cfg.batch_size:
            warnings.append(
                f"The batch size {cfg.batch_size} is larger than the {n_train} training pairs, so "
                f"every step sees at most {n_train} pairs."
            )
    if query_prompt:
        warnings.append(
            f"The base model's query prompt {query_prompt!r} is put before every question, in "
            "training and in every evaluation, the same way."
        )
    return warnings


@dataclass(frozen=True)
class BaseModelInfo:
    """What can be read about a base model without loading it (None when unknown)."""

    native_dim: int | None = None
    query_prompt: str | None = None
    path: str = ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _native_dim_from_folder(folder: Path) -> int | None:
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").exists() else None
    dim = None
    if isinstance(modules, list):
        for module in modules:
            kind = str(module.get("type", ""))
            cfg = _read_json(folder / module.get("path", "") / "config.json")
            if kind.endswith("Pooling") and cfg.get("word_embedding_dimension"):
                dim = int(cfg["word_embedding_dimension"])
            elif kind.endswith("Dense") and cfg.get("out_features"):
                dim = int(cfg["out_features"])
    if dim is None:
        hidden = _read_json(folder / "config.json").get("hidden_size")
        dim = int(hidden) if hidden else None
    return dim


def describe_base_model(spec: ModelSpec) -> BaseModelInfo:
    """Native dim and query prompt from the model's files (local folders, runs, the default, or
    a hub model already in the local cache). Never raises: unknown values are None."""
    try:
        if spec.source == "hub":
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec.ref, "modules.json")
            if not isinstance(cached, str):
                return BaseModelInfo()
            folder = Path(cached).parent
        else:
            folder = Path(resolve_model_path(spec))
    except Exception:  # noqa: BLE001 - informational only
        return BaseModelInfo()
    prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
    return BaseModelInfo(
        native_dim=_native_dim_from_folder(folder),
        query_prompt=prompts.get("query") or None,
        path=str(folder),
    )


def choose_precision(requested: str, device: str, *, bf16_supported: bool = False) -> str:
    """'bf16', 'fp16' or 'fp32'. auto: bf16 on CUDA that supports it, fp16 on other CUDA, fp32
    elsewhere (CPU, MPS)."""
    if requested == "auto":
        if device.startswith("cuda"):
            return "bf16" if bf16_supported else "fp16"
        return "fp32"
    if requested == "fp16" and not device.startswith("cuda"):
        raise ConfigError(
            f"fp16 mixed precision needs CUDA; this run is on {device}.", fix="use auto or fp32"
        )
    if requested == "bf16" and device.startswith("cuda") and not bf16_supported:
        raise ConfigError(
            "This GPU does not support bf16.", fix="use auto (fp16 on this GPU) or fp16"
        )
    return requested


def resolve_precision(requested: str, device: str) -> tuple[str, bool]:
    """(precision, tf32) for this machine; tf32 on Ampere or newer CUDA GPUs."""
    import torch

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    bf16_ok = bool(cuda and torch.cuda.is_bf16_supported())
    tf32 = bool(cuda and torch.cuda.get_device_capability()[0] >= 8)
    return choose_precision(requested, device, bf16_supported=bf16_ok), tf32
