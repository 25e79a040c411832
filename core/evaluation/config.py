"""What a retrieval evaluation evaluates: the models, the split, the dims, the statistics settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.config import SAMPLE_DIR
from core.embeddings import (
    ModelSpec,
)
from core.evaluation.verdict import (
    PRIMARY_METRIC,
)
from core.rerankers import DEFAULT_RERANK_TOP, RerankerSpec, check_rerank_top

DIMS_BELOW_NATIVE = (512, 256, 128, 64)


BM25_LABEL = "BM25"


TOP_SAVED = 10  # results per query kept in per_query.jsonl (enough for every k <= 10)


SAMPLE_STS_CSV = SAMPLE_DIR / "sts_pairs.csv"


@dataclass(frozen=True)
class RetrievalEvalConfig:
    """What to evaluate. The first model is the reference ("base") every other is compared with."""

    qa_run_id: str
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    dims: tuple[int, ...] = ()  # empty: native plus 512/256/128/64 below it, per model
    split: Literal["train", "validation", "test"] | None = "test"  # None: every accepted item
    include_bm25: bool = False
    hybrid: bool = (
        False  # BM25 fused with each dense model at its largest evaluated dim (RRF and weighted)
    )
    frontier: bool = True  # every (model, dim, precision) cell, the frontier, a recommendation
    latency_size: int = 100_000  # synthetic vectors the frontier's latency is measured on
    deploy_size: int = 1_000_000  # chunks in production: the memory figures and recommendation
    frontier_tolerance: float = 0.02  # of the primary metric a smaller cell may lose
    flip_k: int = 5
    n_resamples: int = 2000
    n_permutations: int = 10000
    confidence: float = 0.95
    primary_metric: str = PRIMARY_METRIC  # its Holm family across dims decides the headline
    seed: int = 0
    chroma_check: bool | None = None  # None: check wherever the collection exists
    similarity_csv: str | None = str(SAMPLE_STS_CSV)  # None or "": skip the similarity check
    device: str = "auto"
    batch_size: int = 32
    name: str = ""
    # retrieve, then rerank (core.evaluation.reranking): each reranker over each arm of these
    # kinds at its largest dim, its top `rerank_top` reordered
    rerankers: tuple[RerankerSpec, ...] = ()
    rerank_top: int = DEFAULT_RERANK_TOP
    rerank_kinds: tuple[str, ...] = ("base", "tuned", "hybrid", "bm25")

    def __post_init__(self) -> None:
        if self.rerankers:
            check_rerank_top(self.rerank_top)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qa_run_id": self.qa_run_id,
            "models": [m.to_dict() for m in self.models],
            "dims": list(self.dims),
            "split": self.split,
            "include_bm25": self.include_bm25,
            "hybrid": self.hybrid,
            "frontier": self.frontier,
            "latency_size": self.latency_size,
            "deploy_size": self.deploy_size,
            "frontier_tolerance": self.frontier_tolerance,
            "flip_k": self.flip_k,
            "n_resamples": self.n_resamples,
            "n_permutations": self.n_permutations,
            "confidence": self.confidence,
            "primary_metric": self.primary_metric,
            "seed": self.seed,
            "chroma_check": self.chroma_check,
            "similarity_csv": self.similarity_csv,
            "device": self.device,
            "batch_size": self.batch_size,
            "name": self.name,
            "rerankers": [r.to_dict() for r in self.rerankers],
            "rerank_top": self.rerank_top,
            "rerank_kinds": list(self.rerank_kinds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrievalEvalConfig:
        values = dict(data)
        values["models"] = tuple(ModelSpec.from_dict(m) for m in values.get("models", []))
        values["dims"] = tuple(int(d) for d in values.get("dims", []))
        values["rerankers"] = tuple(RerankerSpec.from_dict(r) for r in values.get("rerankers", []))
        if "rerank_kinds" in values:
            values["rerank_kinds"] = tuple(values["rerank_kinds"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def dims_for(native: int, requested: Sequence[int] = ()) -> list[int]:
    """Dimensions to evaluate for a model: the requested ones that fit (largest first), or
    native plus 512/256/128/64 below it."""
    if requested:
        return sorted({int(d) for d in requested if 0 < int(d) <= native}, reverse=True)
    return [native] + [d for d in DIMS_BELOW_NATIVE if d < native]
