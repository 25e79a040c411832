"""RAG answers: a LangChain chain per retriever, run over a qa run's test questions.

How it works:
1. A retriever (a LangChain `BaseRetriever`) embeds the question with the model's query prompt,
   truncated to the chosen Matryoshka dimension, and asks a search function for the top k chunk
   ids: Chroma through `core.documents.vector_store` in the app, an exact numpy search in tests. Search is injected,
   so the chain never depends on where the vectors live.
2. The chat model is our `core.llm.client.LLM` wrapped as a LangChain `BaseChatModel`, so every answer
   goes through our disk cache, retries, concurrency limit and token counts.
3. The chain: question -> top-k chunks -> a prompt with numbered passages -> the answer.
   All questions are retrieved in one batch first (one encode, one search), then answered
   concurrently with `LLM.map` (progress, stop, per-question errors kept, never dropped).
4. The result is a `rag` run (parents: the qa run, and the model run when the retriever is a
   fine-tuned model) whose `samples.jsonl` uses ragas' field names: user_input,
   retrieved_contexts, response, reference, reference_contexts (the gold chunk's text).

LangChain is imported inside functions so importing this module stays light.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from core.config import ChromaSettings
from core.documents.corpus import Chunk, load_chunks
from core.errors import ConfigError, InputError, LLMError, RunError, StoppedError
from core.llm.client import usage_delta
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.dataset import QAItem, load_qa
from core.rag.chain import (
    PROMPT_VERSION,
    bm25_search,
    build_rag_chain,
    chroma_search,
    make_chat_model,
    make_retriever,
    model_query_encoder,
)
from core.rerankers import DEFAULT_RERANK_TOP
from core.runs.folders import Run, create_run, load_run, write_text_atomic
from core.runs.guard import stage_run
from core.runs.lineage import check_same_lineage

if TYPE_CHECKING:
    from core.embeddings import ModelSpec
    from core.llm.client import LLM
    from core.rag.chain import QueryEncoder, SearchFn
    from core.rerankers import PairScorer


SAMPLES_FILE = "samples.jsonl"


USAGE_FILE = "usage.json"


class RagSample(BaseModel):
    """One answered question, with ragas' field names plus what we need to trace it back."""

    id: str  # the QAItem id
    user_input: str
    retrieved_contexts: list[str] = Field(default_factory=list)
    retrieved_ids: list[str] = Field(default_factory=list)
    retrieved_scores: list[float] = Field(default_factory=list)
    response: str = ""
    reference: str | None = None  # the reference answer, when the qa item has one
    reference_contexts: list[str] = Field(default_factory=list)  # the gold chunks' texts
    gold_chunk_id: str = ""  # the primary gold chunk
    gold_chunk_ids: list[str] = Field(default_factory=list)  # every gold chunk ([]: the primary)
    gold_rank: int | None = None  # 1-based rank of the first gold chunk among the retrieved
    error: str | None = None  # why no answer was generated
    error_kind: str | None = None
    cached: bool = False  # the answer came from the LLM cache
    latency_s: float = 0.0

    @property
    def gold_ids(self) -> list[str]:
        """Every chunk that counts as relevant (all chunks holding the question's evidence)."""
        return self.gold_chunk_ids or ([self.gold_chunk_id] if self.gold_chunk_id else [])


@dataclass(frozen=True)
class RagConfig:
    """How answers are generated. `dim` None means the model's native dimension."""

    k: int = 5
    dim: int | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    max_context_chars: int = 2000  # per passage in the prompt (the full text is kept in the sample)
    split: str | None = "test"
    limit: int | None = None  # answer only the first N questions (a quick demo)
    hybrid: bool = False  # fuse the dense hits with BM25 by reciprocal rank fusion
    reranker: str = ""  # a cross-encoder over the top `rerank_top` ('run:ID', 'local:…')
    rerank_top: int = DEFAULT_RERANK_TOP

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"Top-k must be at least 1, got {self.k}.")
        if self.dim is not None and self.dim < 1:
            raise ConfigError(f"Dimension must be positive, got {self.dim}.")
        if self.max_tokens < 1:
            raise ConfigError(f"Max tokens must be at least 1, got {self.max_tokens}.")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"Limit must be at least 1 question, got {self.limit}.")
        if self.reranker:
            from core.rerankers import check_rerank_top, parse_reranker

            parse_reranker(self.reranker)
            check_rerank_top(self.rerank_top)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prompt_version": PROMPT_VERSION}


def _retriever(
    chunks: Sequence[Chunk],
    encode: QueryEncoder,
    search: SearchFn,
    config: RagConfig,
    rerank: PairScorer | None,
) -> Any:
    """The chain's retriever for `config`: dense, fused with BM25 when hybrid, reranked over
    the top N when a reranker is set (`rerank`, or the one the config names, loaded)."""
    if config.reranker and rerank is None:
        rerank = reranker_scorer(config.reranker)
    return make_retriever(
        encode,
        search,
        chunks,
        k=config.k,
        lexical=bm25_search(chunks) if config.hybrid else None,
        rerank=rerank if config.reranker else None,
        rerank_top=config.rerank_top,
    )


def answer_questions(
    items: Sequence[QAItem],
    chunks: Sequence[Chunk],
    *,
    encode: QueryEncoder,
    search: SearchFn,
    llm: LLM,
    config: RagConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    rerank: PairScorer | None = None,
) -> list[RagSample]:
    """Answer every question with the RAG chain; a question whose LLM call failed keeps its
    retrieved contexts, an empty response and the error (it is never dropped). With
    `config.reranker`, `rerank` (or the reranker loaded from the config) reorders the top N."""
    by_id = {c.id: c for c in chunks}
    retriever = _retriever(chunks, encode, search, config, rerank)
    chain = build_rag_chain(
        retriever,
        make_chat_model(llm, config.temperature, config.max_tokens),
        config.max_context_chars,
    )
    tracker = ProgressTracker("retrieving", len(items), on_progress, should_stop)
    tracker.report(f"retrieving the top {config.k} chunks for {len(items)} questions")
    retriever.prefetch([item.question for item in items])
    tracker.advance(len(items), "retrieved")

    def answer(item: QAItem) -> RagSample:
        started = time.monotonic()
        base = {
            "id": item.id,
            "user_input": item.question,
            "reference": item.reference_answer or None,
            "reference_contexts": [by_id[c].text for c in item.gold_ids if c in by_id],
            "gold_chunk_id": item.chunk_id,
            "gold_chunk_ids": item.gold_ids,
        }
        try:
            out = chain.invoke(item.question)
        except LLMError as exc:
            docs = retriever.invoke(item.question)  # prefetched: no second search
            return RagSample(
                **base, **_retrieved(docs, item.gold_ids), error=str(exc), error_kind=exc.kind
            )
        return RagSample(
            **base,
            **_retrieved(out["documents"], item.gold_ids),
            response=out["answer"].strip(),
            cached=bool(out["message"].response_metadata.get("cached")),
            latency_s=time.monotonic() - started,
        )

    results = llm.map(
        answer, items, stage="answering", on_progress=on_progress, should_stop=should_stop
    )
    samples = []
    for item, result in zip(items, results, strict=True):
        if isinstance(result, StoppedError):
            raise result
        if isinstance(result, Exception):
            if not isinstance(result, RunError | LLMError | ConfigError):
                raise result  # a bug, not an LLM failure: do not hide it in a sample
            result = RagSample(
                id=item.id,
                user_input=item.question,
                reference=item.reference_answer or None,
                reference_contexts=[by_id[c].text for c in item.gold_ids if c in by_id],
                gold_chunk_id=item.chunk_id,
                gold_chunk_ids=item.gold_ids,
                error=str(result),
                error_kind=getattr(result, "kind", type(result).__name__),
            )
        samples.append(result)
    return samples


def _retrieved(docs: Sequence[Any], gold_ids: Sequence[str]) -> dict[str, Any]:
    ids = [d.metadata["chunk_id"] for d in docs]
    ranks = [rank for rank, cid in enumerate(ids, start=1) if cid in set(gold_ids)]
    return {
        "retrieved_contexts": [d.page_content for d in docs],
        "retrieved_ids": ids,
        "retrieved_scores": [round(float(d.metadata["score"]), 6) for d in docs],
        "gold_rank": ranks[0] if ranks else None,
    }


def save_samples(run: Run, samples: Sequence[RagSample]) -> None:
    """Write a rag run's samples atomically."""
    write_text_atomic(
        run.artifact(SAMPLES_FILE), "".join(s.model_dump_json() + "\n" for s in samples)
    )


def load_samples(run: Run | str) -> list[RagSample]:
    """Read a rag run's samples (a run object or id)."""
    if isinstance(run, str):
        run = load_run(run)
    if run.kind != "rag":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a rag run.")
    path = run.artifact(SAMPLES_FILE)
    if not path.exists():
        raise RunError(f"RAG run {run.id} has no {SAMPLES_FILE}.", fix="re-run answer generation")
    with path.open(encoding="utf-8") as handle:
        return [RagSample.model_validate_json(line) for line in handle if line.strip()]


def load_questions(qa_run_id: str, config: RagConfig) -> tuple[Run, str, list[QAItem], list[Chunk]]:
    """The qa run, its corpus run id, the questions of the split (limited) and every chunk."""
    qa_run = load_run(qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(f"Run {qa_run.id} is a {qa_run.kind} run, not a qa run.")
    corpus_run_id = qa_run.manifest.parents.get("corpus")
    if not corpus_run_id:
        raise RunError(f"QA run {qa_run.id} names no corpus run.", fix="regenerate the questions")
    items = load_qa(qa_run, split=config.split)  # type: ignore[arg-type]
    if not items:
        raise InputError(
            f"QA run {qa_run.id} has no accepted questions in the {config.split or 'any'} split.",
            fix="pick another split or accept more questions on the Questions page",
        )
    if config.limit:
        items = items[: config.limit]
    chunks = load_chunks(corpus_run_id)
    if not chunks:
        raise InputError(
            f"Corpus run {corpus_run_id} has no chunks.", fix="re-run the Documents stage"
        )
    return qa_run, corpus_run_id, items, chunks


def reranker_scorer(reranker: str, device: str = "auto") -> PairScorer:
    """The pair scorer of a reranker given as text ('run:ID', 'local:/path', 'hub:id')."""
    from core.rerankers import load_cross_encoder, pair_scorer, parse_reranker

    return pair_scorer(load_cross_encoder(parse_reranker(reranker), device))


def _rag_parents(
    qa_run: Run, model_spec: ModelSpec | None, config: RagConfig, *, check_reranker: bool
) -> dict[str, str]:
    """A rag run's parents: the qa run, the model run (same corpus) and the reranker run;
    refuses a model run of another kind or corpus, and (`check_reranker`) a reranker that
    cannot rank, before any run exists."""
    parents = {"qa": qa_run.id}
    if model_spec is not None and model_spec.source == "run":
        model_run = load_run(model_spec.ref)
        if model_run.kind != "model":
            raise ConfigError(f"Run {model_run.id} is a {model_run.kind} run, not a model run.")
        check_same_lineage(model_run, qa_run, kind="corpus")
        parents["model"] = model_run.id
    if config.reranker:
        from core.rerankers import parse_reranker, resolve_reranker

        spec = parse_reranker(config.reranker)
        if check_reranker:
            resolve_reranker(spec, for_ranking=True)
        if spec.source == "run":
            parents["reranker"] = spec.ref
    return parents


def generate_answers(
    qa_run_id: str,
    *,
    llm: LLM,
    encode: QueryEncoder,
    search: SearchFn,
    config: RagConfig,
    retriever_label: str = "base",
    model_spec: ModelSpec | None = None,
    retriever_info: dict[str, Any] | None = None,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    rerank: PairScorer | None = None,
) -> Run:
    """Answer a qa run's questions with one retriever and save a `rag` run.

    Parents: the qa run, and the model run when `model_spec` is a fine-tune run (which must come
    from the same corpus). Summary: questions, answered, failed, gold-in-top-k rate."""
    qa_run, corpus_run_id, items, chunks = load_questions(qa_run_id, config)
    parents = _rag_parents(qa_run, model_spec, config, check_reranker=rerank is None)
    run = create_run(
        "rag",
        name=name
        or f"{retriever_label}: {model_spec.label if model_spec else 'retriever'} · "
        f"k={config.k} · {qa_run.manifest.name}",
        config={
            **config.to_dict(),
            "retriever": retriever_label,
            "model": model_spec.to_dict() if model_spec else None,
            "model_label": model_spec.label if model_spec else "",
            "corpus_run_id": corpus_run_id,
            "llm": {"label": llm.label, "identity": llm.backend.identity},
            **(retriever_info or {}),
        },
        parents=parents,
    )
    run.set_status("running")
    usage_before = llm.usage.to_dict()
    started = time.monotonic()
    with stage_run(run):
        samples = answer_questions(
            items,
            chunks,
            encode=encode,
            search=search,
            llm=llm,
            config=config,
            on_progress=on_progress,
            should_stop=should_stop,
            rerank=rerank,
        )
    save_samples(run, samples)
    usage = usage_delta(usage_before, llm.usage.to_dict())
    usage["seconds"] = round(time.monotonic() - started, 3)
    run.write_json(USAGE_FILE, {"generation": usage})
    failed = [s for s in samples if s.error]
    in_top = sum(s.gold_rank is not None for s in samples)
    run.set_status(
        "done",
        retriever=retriever_label,
        n_questions=len(samples),
        n_answered=len(samples) - len(failed),
        n_failed=len(failed),
        gold_in_top_k=round(in_top / len(samples), 4) if samples else None,
        k=config.k,
        dim=config.dim,
    )
    return run


def run_rag(
    qa_run_id: str,
    *,
    model: Any,
    model_spec: ModelSpec,
    llm: LLM,
    config: RagConfig,
    chroma: ChromaSettings | None = None,
    retriever_label: str = "base",
    ensure_index: bool = True,
    name: str = "",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Run:
    """Answer with a model's Chroma collection for the qa run's corpus at `config.dim`
    (indexing the missing chunks first when `ensure_index`)."""
    from core.documents.vector_store import collection_name, index_corpus
    from core.embeddings import native_dim

    settings = chroma or ChromaSettings()
    qa_run = load_run(qa_run_id)
    corpus_run_id = qa_run.manifest.parents.get("corpus")
    if not corpus_run_id:
        raise RunError(f"QA run {qa_run.id} names no corpus run.", fix="regenerate the questions")
    dim = int(config.dim or native_dim(model))
    if ensure_index:
        index_corpus(
            corpus_run_id,
            model,
            model_spec,
            dim,
            settings,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    collection = collection_name(corpus_run_id, model_spec, dim)
    return generate_answers(
        qa_run_id,
        llm=llm,
        encode=model_query_encoder(model, dim),
        search=chroma_search(settings, collection),
        config=config,
        retriever_label=retriever_label,
        model_spec=model_spec,
        retriever_info={
            "collection": collection,
            "store": "chroma-server" if settings.is_server else "chroma",
        },
        name=name,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def samples_json(samples: Sequence[RagSample]) -> str:
    """Samples as a JSON array (for downloads)."""
    return json.dumps([s.model_dump() for s in samples], ensure_ascii=False, indent=1)
