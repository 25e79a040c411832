"""The RAGAS metrics ragbench offers (ragas' own names and implementations), what each needs (a
judge, a reference answer, contexts), the evaluation's settings, and the checks that refuse a
silent cloud fallback."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.llm.client import LLM


BASE_LABEL = "base"


@dataclass(frozen=True)
class MetricSpec:
    """What a metric needs. `reference_answer`: only scored when the question has one."""

    name: str
    label: str
    needs_llm: bool = False
    needs_embeddings: bool = False
    needs_response: bool = False
    needs_contexts: bool = True
    reference_answer: bool = False
    help: str = ""


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(
            "faithfulness",
            "Faithfulness",
            needs_llm=True,
            needs_response=True,
            help="share of the answer's statements the retrieved passages support",
        ),
        MetricSpec(
            "answer_relevancy",
            "Answer relevancy",
            needs_llm=True,
            needs_embeddings=True,
            needs_response=True,
            needs_contexts=False,
            help="similarity of questions the judge infers from the answer to the question",
        ),
        MetricSpec(
            "context_precision",
            "Context precision",
            needs_llm=True,
            help="judged usefulness of each retrieved passage, rank-weighted",
        ),
        MetricSpec(
            "context_recall",
            "Context recall",
            needs_llm=True,
            help="share of the reference's statements the retrieved passages support",
        ),
        MetricSpec(
            "factual_correctness",
            "Factual correctness",
            needs_llm=True,
            needs_response=True,
            needs_contexts=False,
            reference_answer=True,
            help="claim-level F1 of the answer against the reference answer",
        ),
        MetricSpec(
            "semantic_similarity",
            "Semantic similarity",
            needs_embeddings=True,
            needs_response=True,
            needs_contexts=False,
            reference_answer=True,
            help="cosine similarity of answer and reference answer (no judge)",
        ),
        MetricSpec(
            "non_llm_context_precision_with_reference",
            "Context precision (no judge)",
            help="rank-weighted share of retrieved passages that match the gold chunk's text",
        ),
        MetricSpec(
            "non_llm_context_recall",
            "Context recall (no judge)",
            help="whether a retrieved passage matches the gold chunk's text",
        ),
        MetricSpec(
            "id_based_context_precision",
            "Context precision (chunk ids)",
            help="share of distinct retrieved chunk ids that are the gold chunk",
        ),
        MetricSpec(
            "id_based_context_recall",
            "Context recall (chunk ids)",
            help="whether the gold chunk id was retrieved (hit rate at k)",
        ),
    )
}


LLM_METRICS = tuple(n for n, m in METRICS.items() if m.needs_llm)


NON_LLM_METRICS = tuple(n for n, m in METRICS.items() if not m.needs_llm)


DEFAULT_METRICS = tuple(METRICS)


def default_metrics(embedded: bool, has_references: bool) -> tuple[str, ...]:
    """The metrics to preselect: only the judge-free ones for the embedded demo model, and never
    one that needs reference answers when the questions have none (every sample would be
    skipped)."""
    chosen = NON_LLM_METRICS if embedded else DEFAULT_METRICS
    return tuple(m for m in chosen if has_references or not METRICS[m].reference_answer)


def reference_count(qa_run_id: str, split: str | None = "test") -> tuple[int, int]:
    """How many of a split's accepted questions have a reference answer, and how many there are."""
    from core.questions.dataset import load_qa

    items = load_qa(qa_run_id, split=split)  # type: ignore[arg-type]
    return sum(bool((i.reference_answer or "").strip()) for i in items), len(items)


def needs_reference_text(metrics: tuple[str, ...] | list[str], n_references: int) -> str:
    """Why the chosen metrics that need reference answers would have no score when none of the
    questions has one ('' otherwise)."""
    lacking = [METRICS[m].label for m in metrics if METRICS[m].reference_answer]
    if not lacking or n_references:
        return ""
    return (
        f"{', '.join(lacking)} compare{'s' if len(lacking) == 1 else ''} each answer with a "
        "reference answer, and none of these questions has one: every sample would be skipped. "
        "Leave it out, or use a question set with reference answers (the sample set, or "
        "questions generated with 'Reference answers too')."
    )


def judge_for(config: RagasConfig, judge: LLM | None) -> LLM | None:
    """The judge a scoring really uses: None when no chosen metric is judged (so a run records
    no judge, and no caveat about one)."""
    return judge if any(METRICS[m].needs_llm for m in config.metrics) else None


@dataclass(frozen=True)
class RagasConfig:
    """How to score. `repeats` > 1 judges every judged metric that many times."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    repeats: int = 1
    strictness: int = 3  # answer relevancy: questions generated per answer (one call each)
    temperature: float = 0.0  # judge temperature (answer relevancy uses relevancy_temperature)
    relevancy_temperature: float = 0.3  # ragas' own temperature for several generations
    max_tokens: int = 1024
    parse_retries: int = 1
    string_threshold: float = 0.5  # non-LLM metrics: similarity at which a passage "matches"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(
                f"Unknown RAGAS metric(s): {', '.join(unknown)}.",
                fix=f"use some of {', '.join(METRICS)}",
            )
        if not self.metrics:
            raise ConfigError("No metric chosen.", fix="pick at least one metric")
        if not 1 <= self.repeats <= 20:
            raise ConfigError(f"Repeats must be between 1 and 20, got {self.repeats}.")
        if not 1 <= self.strictness <= 10:
            raise ConfigError(f"Strictness must be between 1 and 10, got {self.strictness}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": list(self.metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RagasConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(
            **{k: (tuple(v) if k == "metrics" else v) for k, v in data.items() if k in known}
        )


def check_components(config: RagasConfig, judge: LLM | None, embeddings: Any) -> None:
    """Refuse, with the fix, when a chosen metric needs a judge or embeddings that were not given."""
    needs_llm = [m for m in config.metrics if METRICS[m].needs_llm]
    needs_emb = [m for m in config.metrics if METRICS[m].needs_embeddings]
    if needs_llm and judge is None:
        raise ConfigError(
            f"The judged metrics {', '.join(needs_llm)} need a judge LLM and none was given.",
            fix="pass the judge explicitly (the sidebar's LLM), or choose only the judge-free metrics "
            f"({', '.join(NON_LLM_METRICS)}); nothing falls back to a cloud model",
        )
    if needs_emb and embeddings is None:
        raise ConfigError(
            f"The metrics {', '.join(needs_emb)} need embeddings and none were given.",
            fix="pass a sentence-transformers model explicitly; nothing falls back to a cloud model",
        )


def is_low_confidence_judge(judge: LLM | None) -> bool:
    """True when the judge is the embedded 135M model (scores are a demo, not evidence)."""
    return judge is not None and str(judge.backend.identity).startswith("embedded")


def _as_embeddings(embeddings: Any) -> Any:
    from core.rag.judges import SentenceTransformerEmbeddings

    if embeddings is None:
        return None
    from ragas.embeddings.base import BaseRagasEmbedding

    if isinstance(embeddings, BaseRagasEmbedding):
        return embeddings
    return SentenceTransformerEmbeddings(embeddings)


def estimate_judge_calls(n_samples: int, config: RagasConfig, k: int) -> dict[str, int]:
    """Judge requests per metric before caching (an upper bound for factual correctness and
    faithfulness, which skip their second step when the first finds nothing)."""
    per_sample = {
        "faithfulness": 2,
        "answer_relevancy": config.strictness,
        "context_precision": k,
        "context_recall": 1,
        "factual_correctness": 4,
    }
    return {
        m: n_samples * per_sample[m] * config.repeats for m in config.metrics if m in per_sample
    }
