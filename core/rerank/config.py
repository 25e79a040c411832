"""A reranker training's settings and guard-rails: `RerankerConfig` (validated on construction with
the fine-tune's own checks and messages; to_dict/from_dict/update for a form and the manifest)
and the warnings that are legal but dubious (`check_reranker_config`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.embeddings import ModelSpec
from core.errors import ConfigError, RagbenchError
from core.finetune.config import TINY_DATASET, FinetuneConfig, _suggest
from core.rerankers import (
    DEFAULT_RERANK_TOP,
    WEAK_START,
    RerankerSpec,
    check_rerank_top,
    resolve_reranker,
)

ADVISED_NEGATIVES = 3  # below this, a pair's positive has few contrasts in its group


@dataclass(frozen=True)
class RerankerConfig:
    """Everything a reranker training needs. Saved in the reranker run's manifest.

    The reranker is a cross-encoder trained with binary cross-entropy on (question, passage)
    pairs: each training question's positive (label 1) and `num_negatives` hard negatives mined
    by `miner` from the corpus (label 0), never from a validation or test chunk. `start` is what
    it starts from; `rerank_top` is how many of the miner's hits validation reranks."""

    qa_run_id: str = ""
    start: RerankerSpec = field(default_factory=lambda: RerankerSpec("default"))
    miner: ModelSpec = field(default_factory=ModelSpec)
    num_negatives: int = 4
    negatives_range_min: int = 0
    negatives_range_max: int = 30
    rerank_top: int = DEFAULT_RERANK_TOP
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    weight_decay: float = 0.01
    max_length: int = 256
    seed: int = 42
    precision: str = "auto"
    device: str = "auto"
    eval_each_epoch: bool = True
    source_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.start, dict):
            object.__setattr__(self, "start", RerankerSpec.from_dict(self.start))
        if isinstance(self.miner, dict):
            object.__setattr__(self, "miner", ModelSpec.from_dict(self.miner))
        object.__setattr__(
            self, "source_weights", {str(k): float(v) for k, v in self.source_weights.items()}
        )
        if self.batch_size < 1:
            raise ConfigError(
                f"Batch size {self.batch_size} must be at least 1.", fix="use 16 (the default)"
            )
        check_rerank_top(self.rerank_top)
        self.as_finetune()  # the fine-tune's checks, with its messages and fixes

    def as_finetune(self) -> FinetuneConfig:
        """The settings the fine-tune shares, as a FinetuneConfig: it validates them (epochs,
        learning rate, warm-up, scheduler, precision, device, seed, source weights, the
        hard-negative range) and mines negatives with the fine-tune's own guard-rails."""
        return FinetuneConfig(
            qa_run_id=self.qa_run_id,
            base_model=self.miner,
            hard_negatives=True,
            num_negatives=self.num_negatives,
            negatives_range_min=self.negatives_range_min,
            negatives_range_max=self.negatives_range_max,
            epochs=self.epochs,
            batch_size=max(2, self.batch_size),  # BCE has no in-batch negatives to need
            learning_rate=self.learning_rate,
            warmup_ratio=self.warmup_ratio,
            scheduler=self.scheduler,
            weight_decay=self.weight_decay,
            max_seq_length=self.max_length,
            seed=self.seed,
            precision=self.precision,
            device=self.device,
            source_weights=self.source_weights,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the run manifest)."""
        data = dataclasses.asdict(self)
        data["start"] = self.start.to_dict()
        data["miner"] = self.miner.to_dict()
        data["source_weights"] = dict(self.source_weights)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], ignore_extra: bool = False) -> RerankerConfig:
        """Build from a dict; unknown keys are an error (with a guess) unless `ignore_extra`."""
        names = [f.name for f in dataclasses.fields(cls)]
        extra = [k for k in data if k not in names]
        if extra and not ignore_extra:
            raise ConfigError(
                f"Unknown reranker setting {extra[0]!r}.", fix=_suggest(extra[0], names)
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def update(self, **changes: Any) -> RerankerConfig:
        """A copy with some settings changed (validated again)."""
        return RerankerConfig.from_dict({**self.to_dict(), **changes})


def weak_start_warning(spec: RerankerSpec) -> str:
    """WEAK_START when the reranker starts with no trained scoring head, else ''."""
    try:
        _, trained = resolve_reranker(spec)
    except RagbenchError:  # a missing folder or run: refused when the run is made
        return ""
    if trained:
        return ""
    name = "all-MiniLM-L6-v2" if spec.source == "default" else spec.label
    return WEAK_START.format(name=name)


def check_reranker_config(cfg: RerankerConfig, *, n_train: int | None = None) -> list[str]:
    """Legal but dubious choices, as warnings for the page, the log and the card. Never raises."""
    warnings = [w for w in (weak_start_warning(cfg.start),) if w]
    if cfg.num_negatives < ADVISED_NEGATIVES:
        warnings.append(
            f"Only {cfg.num_negatives} hard negative(s) per question: the reranker sees few "
            f"passages to rank its positive above. Use {ADVISED_NEGATIVES} to 8."
        )
    if n_train is not None and n_train < TINY_DATASET:
        warnings.append(
            f"Only {n_train} training questions: expect a noisy reranker and over-fitting. "
            "Aim for a few hundred or more."
        )
    return warnings
