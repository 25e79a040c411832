"""The LangChain RAG chain: a retriever that embeds the question with the model's query prompt
(truncated to the chosen Matryoshka dim) and asks an injected search function (Chroma in the app,
exact search in tests) for the top k chunks, optionally fused with BM25 and reranked by a
cross-encoder over its top N (core.rerankers); our LLM as the chat model (cache, retries, limits,
token counts); a prompt with numbered passages. LangChain is imported inside functions."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import ChromaSettings
from core.documents.corpus import Chunk
from core.errors import ConfigError, RunError
from core.rerankers import DEFAULT_RERANK_TOP

if TYPE_CHECKING:
    from core.llm.client import LLM


PROMPT_VERSION = "rag-v1"


SYSTEM_PROMPT = (
    "You answer questions about a document collection. Use only the numbered context passages. "
    "If they do not contain the answer, say that the passages do not say. "
    "Answer in one to three plain sentences."
)


USER_TEMPLATE = "Context passages:\n\n{context}\n\nQuestion: {question}"


# (n_queries, dim) L2-normalised query embeddings for a list of questions.
QueryEncoder = Callable[[list[str]], np.ndarray]


# Top-k (chunk id, similarity) per query embedding.
SearchFn = Callable[[np.ndarray, int], list[list[tuple[str, float]]]]
# Top-k (chunk id, score) per question text (BM25), fused with the dense hits by RRF.
LexicalSearchFn = Callable[[list[str], int], list[list[tuple[str, float]]]]
FUSION_DEPTH = 100  # hits per list fused by RRF, as in retrieval eval


def model_query_encoder(model: Any, dim: int | None = None, batch_size: int = 32) -> QueryEncoder:
    """Questions -> (n, dim) embeddings with the model's own query prompt (as retrieval eval does)."""
    from core.embeddings import encode_texts, query_prompt

    prompt = query_prompt(model)
    lock = threading.Lock()  # one encode at a time on a shared model

    def encode(questions: list[str]) -> np.ndarray:
        with lock:
            return encode_texts(
                model, list(questions), dim=dim, prompt=prompt, batch_size=batch_size
            )

    return encode


def exact_search(chunk_ids: Sequence[str], embeddings: np.ndarray) -> SearchFn:
    """Exact cosine search over in-memory L2-normalised chunk embeddings (n_chunks, dim), the
    same search as retrieval eval's (core.evaluation.search): ties go to the smaller chunk id."""
    from core.evaluation.search import id_tie_ranks, search_exact

    ids = list(chunk_ids)
    corpus = np.asarray(embeddings, dtype=np.float32)
    if corpus.ndim != 2 or corpus.shape[0] != len(ids):
        raise ConfigError(f"Expected ({len(ids)}, dim) chunk embeddings, got {corpus.shape}.")
    ties = id_tie_ranks(ids)

    def search(queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        q = np.asarray(queries, dtype=np.float32)
        top, scores = search_exact(q[None, :] if q.ndim == 1 else q, corpus, k, ties)
        return [
            [(ids[int(i)], float(v)) for i, v in zip(row, vals, strict=True)]
            for row, vals in zip(top, scores, strict=True)
        ]

    return search


def bm25_search(chunks: Sequence[Chunk]) -> LexicalSearchFn:
    """BM25 over the chunks' texts (core.evaluation.search), for a hybrid retriever."""
    from core.evaluation.search import bm25_index, bm25_scores, id_tie_ranks, top_k_from_scores

    ids = [c.id for c in chunks]
    index = bm25_index([c.text for c in chunks])
    ties = id_tie_ranks(ids)

    def search(questions: list[str], k: int) -> list[list[tuple[str, float]]]:
        top, scores = top_k_from_scores(bm25_scores(index, questions), k, ties)
        return [
            [(ids[int(i)], float(v)) for i, v in zip(row, vals, strict=True)]
            for row, vals in zip(top, scores, strict=True)
        ]

    return search


def chroma_search(settings: ChromaSettings, collection: str) -> SearchFn:
    """Search one Chroma collection through core.documents.vector_store."""
    from core.documents.vector_store import search

    def run(queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        return search(settings, collection, queries, k)

    return run


def search_hits(retriever: Any, questions: list[str]) -> list[list[tuple[str, float]]]:
    """A ChunkRetriever's top k (chunk id, score) per question: dense, or dense and BM25 fused
    by RRF; with a reranker, the first `rerank_top` hits reordered by it (those below follow in
    the retriever's order), then the top k."""
    r = retriever
    depth = max(r.k, r.rerank_top) if r.rerank is not None else r.k
    if r.lexical is None:
        hits = r.search(r.encode(questions), depth)
    else:
        from core.evaluation.hybrid import fuse_hits

        dense = r.search(r.encode(questions), FUSION_DEPTH)
        lexical = r.lexical(questions, FUSION_DEPTH)
        hits = [fuse_hits(d, w, depth) for d, w in zip(dense, lexical, strict=True)]
    if r.rerank is None:
        return hits
    from core.rerankers import rerank_hits

    out = []
    for question, found in zip(questions, hits, strict=True):
        head, tail = found[: r.rerank_top], found[r.rerank_top :]
        texts = {cid: _chunk(r.chunks, cid).text for cid, _ in head}
        out.append([*rerank_hits(question, head, texts, r.rerank), *tail][: r.k])
    return out


def _chunk(chunks: dict[str, Any], chunk_id: str) -> Any:
    """A retrieved chunk of the corpus run; a clear error when the store returned another's."""
    chunk = chunks.get(chunk_id)
    if chunk is None:
        raise RunError(
            f"The vector store returned chunk {chunk_id}, which is not in the corpus run.",
            fix="re-index the corpus run (the collection holds chunks of another corpus)",
        )
    return chunk


@functools.cache
def _langchain_classes() -> tuple[type, type]:
    """The retriever and chat-model classes, defined on first use (LangChain is heavy)."""
    from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, PrivateAttr

    class ChunkRetriever(BaseRetriever):
        """Top-k chunks of our corpus for a question: encode, then search (both injected)."""

        model_config = ConfigDict(arbitrary_types_allowed=True)

        encode: Any
        search: Any
        chunks: dict[str, Any]
        k: int = 5
        lexical: Any = None  # with BM25: the two rankings fused by RRF (a hybrid retriever)
        rerank: Any = None  # a PairScorer: the top `rerank_top` hits reordered, then the top k
        rerank_top: int = DEFAULT_RERANK_TOP
        _prefetched: dict[str, list[tuple[str, float]]] = PrivateAttr(default_factory=dict)
        _lock: Any = PrivateAttr(default_factory=threading.Lock)

        def prefetch(self, questions: list[str]) -> None:
            """Retrieve for many questions at once (one encode, one search call)."""
            todo = [q for q in dict.fromkeys(questions) if q not in self._prefetched]
            if not todo:
                return
            hits = self._search(todo)
            if len(hits) != len(todo):
                raise RunError(
                    f"Search returned {len(hits)} result lists for {len(todo)} questions."
                )
            with self._lock:
                self._prefetched.update(zip(todo, hits, strict=True))

        def _hits(self, query: str) -> list[tuple[str, float]]:
            with self._lock:
                hit = self._prefetched.get(query)
            if hit is None:
                hit = self._search([query])[0]
            return hit

        def _search(self, questions: list[str]) -> list[list[tuple[str, float]]]:
            return search_hits(self, questions)

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            docs = []
            for rank, (chunk_id, score) in enumerate(self._hits(query)[: self.k], start=1):
                chunk = _chunk(self.chunks, chunk_id)
                docs.append(
                    Document(
                        page_content=chunk.text,
                        metadata={
                            "chunk_id": chunk_id,
                            "score": float(score),
                            "rank": rank,
                            "source": chunk.source,
                            "page": chunk.page,
                        },
                    )
                )
            return docs

    class LLMChatModel(BaseChatModel):
        """Our LLM client as a LangChain chat model (cache, retries, token counts are ours)."""

        model_config = ConfigDict(arbitrary_types_allowed=True)

        llm: Any
        temperature: float = 0.0
        max_tokens: int = 256

        @property
        def _llm_type(self) -> str:
            return "ragbench-llm"

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"backend": self.llm.backend.identity, "temperature": self.temperature}

        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            payload = [{"role": _role_of(m), "content": _text_of(m)} for m in messages]
            completion = self.llm.complete(
                payload, temperature=self.temperature, max_tokens=self.max_tokens
            )
            text = completion.text
            if stop:
                for token in stop:
                    text = text.split(token)[0]
            message = AIMessage(
                content=text,
                usage_metadata={
                    "input_tokens": completion.prompt_tokens,
                    "output_tokens": completion.completion_tokens,
                    "total_tokens": completion.prompt_tokens + completion.completion_tokens,
                },
                response_metadata={
                    "model": completion.model,
                    "cached": completion.cached,
                    "latency_s": completion.latency_s,
                },
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

    return ChunkRetriever, LLMChatModel


def _role_of(message: Any) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


def _text_of(message: Any) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def make_retriever(
    encode: QueryEncoder,
    search: SearchFn,
    chunks: Sequence[Chunk],
    k: int = 5,
    lexical: LexicalSearchFn | None = None,
    rerank: Callable[[Sequence[tuple[str, str]]], np.ndarray] | None = None,
    rerank_top: int = DEFAULT_RERANK_TOP,
) -> Any:
    """A LangChain retriever over our chunks (returns Documents with chunk_id, score, rank);
    with `lexical`, a hybrid: dense and BM25 hits fused by reciprocal rank fusion; with `rerank`
    (a core.rerankers.PairScorer), the top `rerank_top` hits reordered by the cross-encoder
    before the top k are kept (their score is then the reranker's)."""
    retriever_cls, _ = _langchain_classes()
    by_id = {c.id: c for c in chunks}
    return retriever_cls(
        encode=encode,
        search=search,
        chunks=by_id,
        k=k,
        lexical=lexical,
        rerank=rerank,
        rerank_top=rerank_top,
    )


def make_chat_model(llm: LLM, temperature: float = 0.0, max_tokens: int = 256) -> Any:
    """Our LLM as a LangChain chat model."""
    _, chat_cls = _langchain_classes()
    return chat_cls(llm=llm, temperature=temperature, max_tokens=max_tokens)


def format_contexts(docs: Sequence[Any], max_chars: int = 2000) -> str:
    """Numbered passages for the prompt: '[1] text', each cut to `max_chars`."""
    parts = []
    for i, doc in enumerate(docs, start=1):
        text = doc.page_content.strip()
        if len(text) > max_chars:
            text = text[:max_chars].rstrip() + " …"
        parts.append(f"[{i}] {text}")
    return "\n\n".join(parts) if parts else "(no passages were retrieved)"


def build_rag_chain(retriever: Any, chat_model: Any, max_context_chars: int = 2000) -> Any:
    """question -> {"question", "documents", "context", "message", "answer"}: retrieve top-k,
    prompt with numbered passages, answer with the chat model (`message` keeps its metadata)."""
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableParallel, RunnablePassthrough

    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", USER_TEMPLATE)])
    return (
        RunnableParallel(question=RunnablePassthrough(), documents=retriever)
        | RunnablePassthrough.assign(
            context=lambda x: format_contexts(x["documents"], max_context_chars)
        )
        | RunnablePassthrough.assign(message=prompt | chat_model)
        | RunnablePassthrough.assign(answer=lambda x: _text_of(x["message"]))
    )
