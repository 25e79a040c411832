"""RAG evaluation as a background job: `python -m core.rag.job <run_id>`.

`start_rag_eval` (the RAG eval page, the CLI) checks the request, makes the ragas_eval run with
the request in its config and starts this job: it answers with every retriever (a rag run each,
named among the ragas_eval run's parents as soon as it is finished) and scores them into that
run. `start_retry` does the same for re-scoring the failed judgements of an earlier run. The LLM
settings travel in the environment (the key never touches the disk); a refresh or a closed tab
loses nothing, and Stop ends the run `stopped` with the answers already made.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.runs.jobs import job_main

if TYPE_CHECKING:
    from core.config import ChromaSettings, LLMSettings
    from core.embeddings import ModelSpec
    from core.progress import ProgressCallback, StopCheck
    from core.rag.answering import RagConfig
    from core.rag.metrics import RagasConfig
    from core.rag.stage import RetrieverChoice
    from core.runs.folders import Run

JOB_MODULE = "core.rag.job"


@dataclass(frozen=True)
class RagEvalRequest:
    """What to compare: the qa run, the base model, an optional tuned one, whether to add a
    hybrid (the last model fused with BM25) and the last model reranked by a cross-encoder
    (`reranker`: 'run:ID', …, over `rag_config.rerank_top`), how to answer and what to score."""

    qa_run_id: str
    base: ModelSpec
    tuned: ModelSpec | None
    hybrid: bool
    rag_config: RagConfig
    ragas_config: RagasConfig
    reranker: str = ""

    def __post_init__(self) -> None:
        if self.reranker:
            from core.rerankers import check_rerank_top, parse_reranker

            parse_reranker(self.reranker)
            check_rerank_top(self.rag_config.rerank_top)

    def check_reranker(self) -> None:
        """Refuse, before any answer is made, a reranker that is missing, unfinished or has no
        trained scoring head."""
        if self.reranker:
            from core.rerankers import parse_reranker, resolve_reranker

            resolve_reranker(parse_reranker(self.reranker), for_ranking=True)

    @property
    def labels(self) -> list[str]:
        """The retrievers' labels, in the order they answer."""
        models = ["base", *(["tuned"] if self.tuned is not None else [])]
        return [
            *models,
            *([f"{models[-1]} + BM25"] if self.hybrid else []),
            *([f"{models[-1]} + reranker"] if self.reranker else []),
        ]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "qa_run_id": self.qa_run_id,
            "base": self.base.to_dict(),
            "tuned": None if self.tuned is None else self.tuned.to_dict(),
            "hybrid": self.hybrid,
            "reranker": self.reranker,
            "rag_config": asdict(self.rag_config),
            "ragas_config": self.ragas_config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RagEvalRequest:
        from core.embeddings import ModelSpec
        from core.rag.answering import RagConfig
        from core.rag.metrics import RagasConfig

        rag = {k: v for k, v in data["rag_config"].items() if k in RagConfig.__dataclass_fields__}
        return cls(
            qa_run_id=data["qa_run_id"],
            base=ModelSpec.from_dict(data["base"]),
            tuned=ModelSpec.from_dict(data["tuned"]) if data.get("tuned") else None,
            hybrid=bool(data.get("hybrid")),
            reranker=str(data.get("reranker") or ""),
            rag_config=RagConfig(**rag),
            ragas_config=RagasConfig.from_dict(data["ragas_config"]),
        )


def retriever_choices(request: RagEvalRequest, load: Any) -> list[RetrieverChoice]:
    """The retrievers of a request, each model loaded with `load(spec)` (the page's cached
    loader, or load_model in a job): base, tuned, the hybrid of the last one, and the last one
    reranked."""
    from core.rag.stage import RetrieverChoice

    choices = [RetrieverChoice("base", load(request.base), request.base)]
    if request.tuned is not None:
        choices.append(RetrieverChoice("tuned", load(request.tuned), request.tuned))
    last, extra = choices[-1], request.labels[len(choices) :]
    if request.hybrid:
        choices.append(RetrieverChoice(extra.pop(0), last.model, last.spec, hybrid=True))
    if request.reranker:
        choices.append(
            RetrieverChoice(extra.pop(0), last.model, last.spec, reranker=request.reranker)
        )
    return choices


def _start(run_config: dict[str, Any], name: str, settings: LLMSettings, env: dict) -> Run:
    from core.config import llm_env
    from core.runs.folders import create_run
    from core.runs.jobs import start_job

    run = create_run("ragas_eval", name=name, config=run_config)
    start_job(run, module=JOB_MODULE, env={**env, **llm_env(settings)})
    return run


def start_rag_eval(
    request: RagEvalRequest, settings: LLMSettings, chroma: ChromaSettings | None = None
) -> Run:
    """Check the request (a metric without its judge, an unknown qa run, an unusable reranker:
    refused before any run exists), make the ragas_eval run and answer and score in the background."""
    from core.config import chroma_env
    from core.llm.client import make_llm
    from core.rag.metrics import check_components
    from core.runs.folders import load_run

    qa_run = load_run(request.qa_run_id)
    request.check_reranker()
    check_components(request.ragas_config, make_llm(settings), embeddings=request.base)
    return _start(
        {**request.ragas_config.to_dict(), "request": request.to_dict(), "qa_run_id": qa_run.id},
        f"RAGAS: {' vs '.join(request.labels)} · {qa_run.manifest.name or qa_run.id}",
        settings,
        chroma_env(chroma) if chroma else {},
    )


def start_retry(ragas_eval_run_id: str, settings: LLMSettings) -> Run:
    """Re-score the failed judgements of a ragas_eval run in the background (a new run)."""
    from core.rag.results import _ragas_run

    old = _ragas_run(ragas_eval_run_id)
    n_failed = int(old.manifest.summary.get("n_failed", 0))
    return _start(
        {"request": {"retry_of": old.id}},
        f"{old.manifest.name} · retried {n_failed} failed",
        settings,
        {},
    )


def scoring_base_model(ragas_eval_run_id: str) -> ModelSpec:
    """The model of a ragas_eval run's first retriever (the base): its embeddings score the
    embedding metrics, so a retry scores with the same ones."""
    from core.embeddings import ModelSpec
    from core.rag.results import SUMMARY_FILE, _ragas_run
    from core.runs.folders import load_run

    summary = _ragas_run(ragas_eval_run_id).read_json(SUMMARY_FILE)
    base_rag = load_run(summary["rag_runs"][summary["retrievers_order"][0]])
    return ModelSpec.from_dict(base_rag.manifest.config.get("model") or {})


def evaluate(run: Run, on_progress: ProgressCallback, should_stop: StopCheck) -> None:
    """Answer and score (or re-score) as the run's request says, with the environment's LLM as
    generator and judge and the base model's embeddings for the embedding metrics."""
    from core.config import chroma_settings_from_env, llm_settings_from_env
    from core.embeddings import load_model
    from core.llm.client import make_llm
    from core.rag.judges import SentenceTransformerEmbeddings
    from core.rag.stage import compare_retrievers, retry_failed

    llm = make_llm(llm_settings_from_env())
    data = run.manifest.config["request"]
    if "retry_of" in data:
        base = scoring_base_model(data["retry_of"])
        embeddings = SentenceTransformerEmbeddings(load_model(base), label=f"{base.label} (base)")
        retry_failed(
            data["retry_of"],
            judge=llm,
            embeddings=embeddings,
            run=run,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        return
    request = RagEvalRequest.from_dict(data)
    models: dict[tuple[str, str], Any] = {}

    def load(spec: ModelSpec) -> Any:
        if (spec.source, spec.ref) not in models:
            models[(spec.source, spec.ref)] = load_model(spec)
        return models[(spec.source, spec.ref)]

    compare_retrievers(
        request.qa_run_id,
        retriever_choices(request, load),
        llm=llm,
        judge=llm,
        embeddings=SentenceTransformerEmbeddings(
            load(request.base), label=f"{request.base.label} (base model)"
        ),
        rag_config=request.rag_config,
        ragas_config=request.ragas_config,
        chroma=chroma_settings_from_env(),
        run=run,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the RAG evaluation of the ragas_eval run named on the command line."""
    return job_main(argv, module=JOB_MODULE, what="RAG evaluation", work=evaluate)


if __name__ == "__main__":
    sys.exit(main())
