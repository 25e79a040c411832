"""Fine-tuning an embedding model on our own questions: MatryoshkaLoss over MNRL, with guard-rails.

How it works:
1. `FinetuneConfig` holds every choice (validated on construction; messages name the fix) and is
   saved in the model run's manifest. `check_config` returns the guard-rail warnings that are legal
   but dubious (native dimension left out, small batches, a tiny dataset, ...).
2. `start_finetune(cfg)` creates a `model` run (parent: the qa run) and launches
   `python -m core.finetune.job <run_id>` in the background (core.runs.jobs), so a browser refresh
   loses nothing.
3. The job (`run_finetune`) loads the train split as (anchor=question, positive=chunk text) pairs in
   that order, evaluates the base model on the validation split against the FULL corpus at every
   Matryoshka dimension, trains with sentence-transformers' trainer (NO_DUPLICATES batches, the
   model's query prompt on the anchors, per-epoch evaluation), and writes `progress.jsonl`,
   `metrics.json` (base and final ndcg@10 per dimension), the model and its card.
4. Stop: a `STOP` file makes the trainer save a checkpoint and the model, then end `stopped`.
   Resume: `resume_finetune(run_id)` continues from the last checkpoint in a NEW model run (the
   stopped run's weights never change under its id).

Heavy libraries (torch, sentence_transformers, datasets) are imported inside functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import logging
import math
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.documents.corpus import load_chunks
from core.embeddings import ModelSpec, document_prompt, resolve_model_path
from core.errors import ConfigError, InputError, RagbenchError, RunError
from core.questions.dataset import load_qa
from core.runs.folders import Run, create_run, discard_on_failure, load_run
from core.runs.jobs import append_event, process_start_time, request_stop, start_job, stop_requested

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

LOSSES: tuple[str, ...] = ("mnrl", "cached_mnrl")
SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "constant_with_warmup")
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
DEVICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
MATRYOSHKA_LADDER: tuple[int, ...] = (512, 256, 128, 64)
ADVISED_MIN_BATCH = 16
TINY_DATASET = 100  # training pairs below which results are noisy
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
HEADLINE_METRIC = "ndcg@10"
OOM_HINT = "lower the batch size or use cached_mnrl"
_ST_TO_OURS = {"accuracy": "hit_rate"}


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

    def __post_init__(self) -> None:
        # Coerce what a form or JSON hands us (lists, dicts) into the frozen shapes.
        if isinstance(self.base_model, dict):
            object.__setattr__(self, "base_model", ModelSpec.from_dict(self.base_model))
        object.__setattr__(self, "matryoshka_dims", tuple(int(d) for d in self.matryoshka_dims))
        object.__setattr__(self, "dim_weights", tuple(float(w) for w in self.dim_weights))
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the run manifest)."""
        data = dataclasses.asdict(self)
        data["base_model"] = self.base_model.to_dict()
        data["matryoshka_dims"] = list(self.matryoshka_dims)
        data["dim_weights"] = list(self.dim_weights)
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


# --- Guard-rails --------------------------------------------------------------------------------


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


# --- Data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneData:
    """Training pairs and the validation retrieval task, from a qa run and its corpus."""

    qa_run_id: str
    corpus_run_id: str
    anchors: list[str]  # questions
    positives: list[str]  # their gold chunk texts, same order
    train_chunk_ids: list[str]
    val_queries: dict[str, str]  # query id -> question
    val_relevant: dict[str, set[str]]  # query id -> gold chunk ids
    corpus: dict[str, str]  # chunk id -> text: ALL chunks, the validation distractors
    n_test: int
    warnings: list[str] = field(default_factory=list)
    held_out_chunk_ids: set[str] = field(default_factory=set)  # validation + test gold/linked
    train_gold: list[set[str]] = field(default_factory=list)  # each pair's relevant chunks

    @property
    def n_train(self) -> int:
        return len(self.anchors)

    def stats(self) -> dict[str, Any]:
        """Counts for the manifest and the model card."""
        return {
            "corpus_size": len(self.corpus),
            "n_train": self.n_train,
            "n_validation": len(self.val_queries),
            "n_test": self.n_test,
            "train_chunks": len(set(self.train_chunk_ids)),
            "split_method": "by chunk",
        }


def prepare_data(qa_run_id: str) -> FinetuneData:
    """Train pairs (anchor=question, positive=chunk text) and the validation task over all chunks."""
    qa_run = load_run(qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(
            f"Run {qa_run_id} is a {qa_run.kind} run, not a qa run.", fix="pick a question set"
        )
    corpus_id = qa_run.manifest.parents.get("corpus")
    if not corpus_id:
        raise RunError(
            f"QA run {qa_run_id} names no corpus run.",
            fix="re-create it from a corpus on the Questions page",
        )
    chunks = {c.id: c.text for c in load_chunks(corpus_id)}
    items = load_qa(qa_run)
    train = [i for i in items if i.split == "train"]
    val = [i for i in items if i.split == "validation"]
    warnings: list[str] = []
    missing = [i for i in train + val if i.chunk_id not in chunks]
    if missing:
        warnings.append(
            f"{len(missing)} questions point at chunks missing from corpus {corpus_id}; they are skipped."
        )
    seen: set[tuple[str, str]] = set()
    anchors, positives, chunk_ids, train_gold = [], [], [], []
    for item in train:
        if item.chunk_id not in chunks or (item.question, item.chunk_id) in seen:
            continue
        seen.add((item.question, item.chunk_id))
        anchors.append(item.question)
        positives.append(chunks[item.chunk_id])
        chunk_ids.append(item.chunk_id)
        train_gold.append(set(item.gold_ids))
    if not anchors:
        raise InputError(
            f"QA run {qa_run_id} has no accepted training questions.",
            found=f"{len(items)} accepted questions, {len(train)} in the train split",
            fix="split the question set into train/validation/test on the Questions page, "
            "or add questions",
        )
    val_queries = {i.id: i.question for i in val if i.chunk_id in chunks}
    val_relevant: dict[str, set[str]] = {}
    for item in val:
        if item.chunk_id in chunks:
            val_relevant.setdefault(item.id, set()).update(c for c in item.gold_ids if c in chunks)
    if not val_queries:
        raise InputError(
            f"QA run {qa_run_id} has no validation questions, so training cannot be checked.",
            found=f"{len(train)} train and 0 validation questions",
            fix="re-split the question set with a validation share (e.g. 10-20%)",
        )
    leaked = {c for rel in val_relevant.values() for c in rel} & set(chunk_ids)
    if leaked:
        warnings.append(
            f"{len(leaked)} validation chunks are also training positives: the split is not by "
            "chunk, so validation scores are optimistic. Re-split by chunk."
        )
    return FinetuneData(
        qa_run_id=qa_run.id,
        corpus_run_id=corpus_id,
        anchors=anchors,
        positives=positives,
        train_chunk_ids=chunk_ids,
        val_queries=val_queries,
        val_relevant=val_relevant,
        corpus=chunks,
        n_test=sum(1 for i in items if i.split == "test"),
        warnings=warnings,
        held_out_chunk_ids={
            c for i in items if i.split in ("validation", "test") for c in i.split_chunk_ids
        },
        train_gold=train_gold,
    )


# --- Evaluation ---------------------------------------------------------------------------------


def build_evaluator(
    data: FinetuneData,
    dims: tuple[int, ...],
    *,
    query_prompt: str | None,
    corpus_prompt: str | None,
    batch_size: int = 64,
):  # noqa: ANN201 - a SequentialEvaluator
    """One InformationRetrievalEvaluator per dim (truncate_dim), over the full corpus, in a
    SequentialEvaluator; the query prompt is the one used in training."""
    from sentence_transformers.base.evaluation import SequentialEvaluator
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    evaluators = [
        InformationRetrievalEvaluator(
            queries=data.val_queries,
            corpus=data.corpus,
            relevant_docs=data.val_relevant,
            name=f"dim_{dim}",
            truncate_dim=dim,
            batch_size=batch_size,
            query_prompt=query_prompt,
            corpus_prompt=corpus_prompt,
            write_csv=False,
            show_progress_bar=False,
        )
        for dim in dims
    ]
    return SequentialEvaluator(evaluators)


def parse_eval_metrics(metrics: dict[str, float]) -> dict[int, dict[str, float]]:
    """ST's flat keys ('eval_dim_128_cosine_accuracy@5') -> {128: {'hit_rate@5': ...}}."""
    import re

    pattern = re.compile(r"(?:^|_)dim_(\d+)_[a-z]+_([a-z]+)@(\d+)$")
    out: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        match = pattern.search(key)
        if not match:
            continue
        dim, family, k = int(match.group(1)), match.group(2), match.group(3)
        out.setdefault(dim, {})[f"{_ST_TO_OURS.get(family, family)}@{k}"] = float(value)
    return out


def headline(per_dim: dict[int, dict[str, float]]) -> dict[str, float]:
    """{dim (as str): ndcg@10} for JSON."""
    return {str(d): m[HEADLINE_METRIC] for d, m in sorted(per_dim.items(), reverse=True)}


# --- Starting, stopping, reading ----------------------------------------------------------------


def start_finetune(cfg: FinetuneConfig, name: str = "") -> Run:
    """Create a model run for `cfg` and launch its background job. Returns the run."""
    run = create_finetune_run(cfg, name)
    start_job(run)
    return run


def create_finetune_run(cfg: FinetuneConfig, name: str = "") -> Run:
    """Create a (pending) model run for `cfg` without starting it, e.g. to launch it yourself
    under torchrun (docs/multi_gpu.md)."""
    if not cfg.qa_run_id:
        raise ConfigError(
            "Pick a question set (qa run) to train on.", fix="create one on the Questions page"
        )
    qa = load_run(cfg.qa_run_id)
    if qa.kind != "qa":
        raise ConfigError(
            f"Run {cfg.qa_run_id} is a {qa.kind} run, not a qa run.", fix="pick a question set"
        )
    info = describe_base_model(cfg.base_model)
    if not cfg.matryoshka_dims and info.native_dim:
        cfg = cfg.update(matryoshka_dims=list(default_dims(info.native_dim)))
    parents = {"qa": cfg.qa_run_id}
    if cfg.base_model.source == "run":
        parents["base_model"] = cfg.base_model.ref
    return create_run("model", name=name, config=cfg.to_dict(), parents=parents)


def stop_finetune(run_id: str) -> None:
    """Ask the fine-tune job to stop; it saves a usable model and ends `stopped`."""
    request_stop(run_id)


def create_resumed_run(run_id: str) -> Run:
    """A new model run that continues a stopped or failed one from its last checkpoint.

    The old run is never trained again, so its saved weights, and every evaluation, cache and
    Chroma collection keyed on its id, stay true. The checkpoint moves to the new run (parents:
    the same question set, and `resumed_from` the old run), with the metrics and progress so far.
    """
    from core.runs.jobs import PROGRESS_FILE

    old = load_run(run_id)
    if old.kind != "model":
        raise ConfigError(f"Run {run_id} is a {old.kind} run, not a model run.")
    if old.manifest.status not in ("stopped", "failed"):
        raise RunError(
            f"Run {run_id} is {old.manifest.status}; only a stopped or failed fine-tune resumes.",
            fix="start a new fine-tune",
        )
    checkpoint = last_checkpoint(old)
    if checkpoint is None:
        raise RunError(
            f"Run {run_id} has no checkpoint to resume from.",
            found=f"resumed as {old.manifest.summary['resumed_as']}"
            if old.manifest.summary.get("resumed_as")
            else "",
            fix="start a new fine-tune",
        )
    name = old.manifest.name.removesuffix(" (resumed)") + " (resumed)"
    parents = {**old.manifest.parents, "resumed_from": old.id}
    with discard_on_failure() as created:
        new = create_run("model", name=name, config=old.manifest.config, parents=parents)
        created.append(new)
        for artifact in (METRICS_FILE, PROGRESS_FILE):
            if old.artifact(artifact).exists():
                shutil.copy2(old.artifact(artifact), new.artifact(artifact))
        # Last, so a failure before it leaves the old run resumable as it was.
        os.replace(old.path / CHECKPOINT_DIR, new.path / CHECKPOINT_DIR)
    old.set_status(old.manifest.status, resumed_as=new.id)
    return new


def resume_job(run_id: str) -> Run:
    """Resume a stopped or failed fine-tune as a new model run (create_resumed_run), in the
    background. Returns the new run."""
    new = create_resumed_run(run_id)
    start_job(new, args=("--resume",))
    return new


def last_checkpoint(run: Run) -> str | None:
    """The newest `checkpoint-<step>` folder of a run, or None."""
    folder = run.path / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    steps = [
        (int(p.name.split("-")[-1]), p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[-1].isdigit()
    ]
    return str(max(steps)[1]) if steps else None


def read_metrics(run: Run | str) -> dict[str, Any] | None:
    """A model run's metrics.json (base and final per-dim validation metrics), or None."""
    run = load_run(run) if isinstance(run, str) else run
    path = run.path / METRICS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def model_zip_bytes(run_id: str) -> bytes:
    """The saved model folder of a run as a zip (for a download button)."""
    run = load_run(run_id)
    folder = run.path / MODEL_DIR
    if not folder.is_dir():
        raise RunError(f"Run {run_id} has no saved model.", fix="wait for the job to finish")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(run_id) / path.relative_to(folder))
    return buffer.getvalue()


# --- Training (runs inside the job process) -----------------------------------------------------


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(message, hint) for a failed job. CUDA out-of-memory gets the batch-size hint."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    is_oom = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in lowered
    if is_oom:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return f"Out of GPU memory: {first[:300]}", OOM_HINT
    if isinstance(exc, RagbenchError):
        return text, exc.fix or ""
    return f"{type(exc).__name__}: {text[:500]}", "see job.log in the run folder for the traceback"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _stop_now(run_path: Path) -> bool:
    """Whether to stop; under DDP rank 0 decides for all ranks, so every rank stops at the same
    step (ranks that stop apart would hang in the next all-reduce)."""
    flag = stop_requested(run_path)
    if _world_size() > 1:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = (
                f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
            )
            tensor = torch.tensor([1 if flag else 0], device=device)
            dist.broadcast(tensor, src=0)
            flag = bool(tensor.item())
    return flag


def _make_progress_callback(run_path: Path, emit):  # noqa: ANN001, ANN202
    """A TrainerCallback that writes progress events and honours the STOP file."""
    import torch
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False
            self.train_seconds = 0.0
            self.steps_timed = 0
            self._step_start: float | None = None
            self.evals: list[dict[str, Any]] = []

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            emit(
                {"event": "train_begin", "total_steps": state.max_steps, "step": state.global_step}
            )

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self._step_start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self._step_start is not None:
                self.train_seconds += time.monotonic() - self._step_start
                self.steps_timed += 1
            if _stop_now(run_path):
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at this step, so resume starts here
            return control

        def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.stopped:
                control.should_evaluate = False  # stop promptly; the final evaluation follows
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = logs or {}
            if "loss" not in logs:
                return
            rate = self.steps_timed / self.train_seconds if self.train_seconds > 0 else None
            remaining = max(0, state.max_steps - state.global_step)
            event = {
                "event": "log",
                "step": state.global_step,
                "total_steps": state.max_steps,
                "epoch": round(float(state.epoch or 0), 4),
                "loss": float(logs["loss"]),
                "lr": float(logs.get("learning_rate", 0.0)),
                "steps_per_s": round(rate, 4) if rate else None,
                "eta_s": round(remaining / rate, 1) if rate else None,
            }
            if torch.cuda.is_available():
                event["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            emit(event)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
            per_dim = parse_eval_metrics(metrics or {})
            if not per_dim:
                return
            record = {
                "epoch": round(float(state.epoch or 0), 4),
                "step": state.global_step,
                "metrics": {str(d): m for d, m in per_dim.items()},
            }
            self.evals.append(record)
            emit({"event": "eval", "phase": "epoch", HEADLINE_METRIC: headline(per_dim), **record})

    return ProgressCallback()


def _build_loss(model: SentenceTransformer, cfg: FinetuneConfig, dims, weights):  # noqa: ANN001, ANN202
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    # Under DDP each device would otherwise see only its own batch as negatives.
    gather = _world_size() > 1
    if cfg.loss == "cached_mnrl":
        inner = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.mini_batch_size, gather_across_devices=gather
        )
    else:
        inner = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    return MatryoshkaLoss(
        model, inner, matryoshka_dims=list(dims), matryoshka_weights=list(weights)
    )


def mine_negatives(model, train_ds, data: FinetuneData, cfg, qp, dp, emit=None):  # noqa: ANN001, ANN201
    """Add hard negatives mined from the corpus. Candidates leave out every validation and test
    chunk (gold and linked: using them as negatives would teach the model about the held-out
    splits); a mined negative that is another gold chunk of its own question (chunks overlap)
    drops that pair. Returns (dataset, note or None)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    emit = emit or (lambda event: None)
    held_out = data.held_out_chunk_ids
    candidates = [text for cid, text in data.corpus.items() if cid not in held_out]
    range_max = min(cfg.negatives_range_max, len(candidates) - 1)
    if range_max < cfg.negatives_range_min + cfg.num_negatives:
        emit({"event": "warning", "message": "Corpus too small to mine hard negatives; skipped."})
        return train_ds, "Corpus too small to mine hard negatives; trained without them."
    mined = mine_hard_negatives(
        train_ds,
        model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        corpus=candidates,
        range_min=cfg.negatives_range_min,
        range_max=range_max,
        num_negatives=cfg.num_negatives,
        sampling_strategy="top",
        query_prompt=qp,
        corpus_prompt=dp,
        output_format="n-tuple",
        batch_size=64,
        verbose=False,
    )
    notes = []
    if len(mined) < len(train_ds):
        notes.append(
            f"Hard-negative mining found too few negatives for {len(train_ds) - len(mined)} of "
            f"{len(train_ds)} pairs; they were left out."
        )
    gold_texts = {
        anchor: {data.corpus[c] for c in gold if c in data.corpus}
        for anchor, gold in zip(data.anchors, data.train_gold, strict=False)
    }
    negative_columns = [c for c in mined.column_names if c not in ("anchor", "positive")]
    rows = mined.to_dict()
    keep = [
        i
        for i, anchor in enumerate(rows["anchor"])
        if not any(rows[c][i] in gold_texts.get(anchor, set()) for c in negative_columns)
    ]
    if len(keep) < len(mined):
        notes.append(
            f"{len(mined) - len(keep)} mined pair(s) had another gold chunk of their own question "
            "as a negative (chunks overlap); they were left out."
        )
        mined = Dataset.from_dict({c: [rows[c][i] for i in keep] for c in mined.column_names})
    return mined, " ".join(notes) or None


def evaluate_model(model, evaluator) -> dict[int, dict[str, float]]:  # noqa: ANN001
    """Run the per-dim evaluator once: {dim: {metric: value}}."""
    return parse_eval_metrics(evaluator(model))


def run_finetune(run: Run | str, *, resume: bool = False) -> str:
    """Run (or resume) a model run's training in this process. Returns the final status.

    Never raises for training errors: the run ends `failed` with the message and a hint.
    """
    run = load_run(run) if isinstance(run, str) else run
    main = _is_main_process()

    def emit(event: dict[str, Any]) -> None:
        if main:
            append_event(run.path, event)

    try:
        cfg = FinetuneConfig.from_dict(run.manifest.config, ignore_extra=True)
        if main:
            pid = os.getpid()
            run.set_status(
                "running", error="", hint="", pid=pid, pid_started=process_start_time(pid)
            )
        return _train(run, cfg, resume=resume, emit=emit, main=main)
    except BaseException as exc:
        message, hint = describe_failure(exc)
        logger.exception("fine-tune %s failed", run.id)
        if main:
            run.set_status("failed", error=message, hint=hint)
            emit({"event": "end", "status": "failed", "error": message, "hint": hint})
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "failed"


def _train(run: Run, cfg: FinetuneConfig, *, resume: bool, emit, main: bool) -> str:  # noqa: ANN001
    emit({"event": "phase", "message": "loading data"})
    data = prepare_data(cfg.qa_run_id)  # fails fast, before the heavy imports

    from datasets import Dataset
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from core.embeddings import load_model, native_dim, query_prompt, select_device
    from core.finetune.model_card import write_model_card

    device = select_device(cfg.device)
    precision, tf32 = resolve_precision(cfg.precision, device)
    emit({"event": "phase", "message": f"loading model on {device}"})
    model = load_model(cfg.base_model, device=device, max_seq_length=cfg.max_seq_length)
    native = native_dim(model)
    qp, dp = query_prompt(model), document_prompt(model)
    dims, weights = resolve_dims(cfg, native)
    warnings = check_config(cfg, native_dim=native, query_prompt=qp, n_train=data.n_train)
    warnings += data.warnings
    evaluator = build_evaluator(data, dims, query_prompt=qp, corpus_prompt=dp)
    metrics_path = run.path / METRICS_FILE

    checkpoint = None
    if resume:
        checkpoint = last_checkpoint(run)
        if checkpoint is None:
            raise RunError(
                f"Run {run.id} has no checkpoint to resume from.", fix="start a new fine-tune"
            )
        metrics = (
            json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        )
        emit({"event": "resume", "checkpoint": Path(checkpoint).name})
    else:
        metrics = {}
    if "base" not in metrics:
        emit({"event": "phase", "message": "evaluating the base model"})
        base = evaluate_model(model, evaluator)
        metrics = {
            "metric": HEADLINE_METRIC,
            "dims": list(dims),
            "weights": list(weights),
            "query_prompt": qp,
            "data": data.stats(),
            "base": headline(base),
            "base_all": {str(d): m for d, m in base.items()},
            "epochs": [],
        }
        if main:
            run.write_json(METRICS_FILE, metrics)
        emit(
            {
                "event": "eval",
                "phase": "base",
                "epoch": 0,
                "step": 0,
                HEADLINE_METRIC: headline(base),
            }
        )

    train_ds = Dataset.from_dict({"anchor": data.anchors, "positive": data.positives})
    if cfg.hard_negatives:
        emit({"event": "phase", "message": "mining hard negatives"})
        train_ds, note = mine_negatives(model, train_ds, data, cfg, qp, dp, emit)
        if note:
            warnings.append(note)
    for warning in warnings:
        logger.warning(warning)

    prompts: dict[str, str] = {}
    if qp:
        prompts["anchor"] = qp
    if dp:
        prompts.update({c: dp for c in train_ds.column_names if c != "anchor"})
    callback = _make_progress_callback(run.path, emit)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(run.path / CHECKPOINT_DIR),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        tf32=True if tf32 else None,
        use_cpu=device == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts or None,
        eval_strategy="epoch" if cfg.eval_each_epoch else "no",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=_logging_steps(len(train_ds), cfg),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=False,
    )
    loss = _build_loss(model, cfg, dims, weights)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        loss=loss,
        evaluator=evaluator if cfg.eval_each_epoch else None,
        callbacks=[callback],
    )
    emit(
        {
            "event": "start",
            "total_steps": _total_steps(len(train_ds), cfg),
            "device": device,
            "precision": precision,
            "tf32": tf32,
            "dims": list(dims),
            "n_train": len(train_ds),
            "warnings": warnings,
            "resume": bool(checkpoint),
        }
    )
    if main:
        run.set_status("running", warnings=warnings, device=device, precision=precision)
    if _stop_now(run.path):
        if main:
            run.set_status("stopped", error="Stopped before training started; no model was saved.")
            emit({"event": "end", "status": "stopped"})
        return "stopped"

    emit({"event": "phase", "message": "training"})
    trainer.train(resume_from_checkpoint=checkpoint)
    stopped = callback.stopped
    status = "stopped" if stopped else "done"
    if not main:
        return status

    emit({"event": "phase", "message": "saving the model"})
    model_dir = run.path / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save(str(model_dir))

    last_eval = callback.evals[-1] if callback.evals else None
    if last_eval and last_eval["step"] == trainer.state.global_step:
        final = {int(d): m for d, m in last_eval["metrics"].items()}
    else:
        emit({"event": "phase", "message": "evaluating the trained model"})
        final = evaluate_model(model, evaluator)
        emit(
            {
                "event": "eval",
                "phase": "final",
                "epoch": round(float(trainer.state.epoch or 0), 4),
                "step": trainer.state.global_step,
                HEADLINE_METRIC: headline(final),
            }
        )
    known_steps = {e["step"] for e in metrics.get("epochs", [])}
    metrics["epochs"] = metrics.get("epochs", []) + [
        {
            "epoch": e["epoch"],
            "step": e["step"],
            HEADLINE_METRIC: headline({int(d): m for d, m in e["metrics"].items()}),
        }
        for e in callback.evals
        if e["step"] not in known_steps
    ]
    metrics["final"] = headline(final)
    metrics["final_all"] = {str(d): m for d, m in final.items()}
    metrics["steps"] = trainer.state.global_step
    metrics["stopped_early"] = stopped
    run.write_json(METRICS_FILE, metrics)
    write_model_card(run, metrics=metrics, warnings=warnings)

    if status == "done":
        # Checkpoints hold the optimizer state (3x the model); a finished run no longer needs them.
        shutil.rmtree(run.path / CHECKPOINT_DIR, ignore_errors=True)
    native_key = str(max(dims))
    run.set_status(
        status,
        error="Stopped by the user; the model saved is the one at the stop." if stopped else "",
        hint="" if not stopped else "resume to continue from the last checkpoint",
        steps=trainer.state.global_step,
        dims=list(dims),
        **{
            f"{HEADLINE_METRIC}_base": metrics["base"].get(native_key),
            f"{HEADLINE_METRIC}_final": metrics["final"].get(native_key),
        },
    )
    run.artifact("STOP").unlink(missing_ok=True)
    emit({"event": "end", "status": status})
    return status


def _total_steps(n_pairs: int, cfg: FinetuneConfig) -> int:
    return max(1, math.ceil(n_pairs / cfg.batch_size)) * cfg.epochs


def _logging_steps(n_pairs: int, cfg: FinetuneConfig) -> int:
    """Log every step on small runs, about 300 points on big ones (the loss chart's resolution)."""
    return max(1, _total_steps(n_pairs, cfg) // 300)


def resume_finetune(run_id: str) -> Run:
    """Resume a stopped or failed fine-tune as a new model run, in this process. Returns the new
    run, reloaded (its status says how it ended)."""
    new = create_resumed_run(run_id)
    run_finetune(new, resume=True)
    return load_run(new.id)
