"""The RAG chain: retriever over our chunks, our LLM as a LangChain chat model, rag runs."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.errors import ConfigError, LLMError, RunError
from core.llm.client import LLM
from core.questions.dataset import QAItem, save_qa
from core.rag.answering import RagConfig, generate_answers, load_samples
from core.rag.chain import (
    build_rag_chain,
    exact_search,
    format_contexts,
    make_chat_model,
    make_retriever,
    model_query_encoder,
    search_hits,
)
from core.runs.folders import create_run, load_run
from tests.support.scripted_llm import ScriptedBackend

TEXTS = [
    "The Debian archives are updated twice every day by the archive software.",
    "Ian Murdock created the Debian Project in 1993 with help from the GNU project.",
    "The Hurd is a set of servers running on top of the GNU Mach microkernel.",
    "Packages are installed with apt, which resolves dependencies automatically.",
]
QUESTIONS = [
    ("q1", "How often are the Debian archives updated?", 0, "Twice every day."),
    ("q2", "Who created the Debian Project?", 1, "Ian Murdock, in 1993."),
    ("q3", "On which microkernel do the Hurd servers run?", 2, None),
]


class FakeEncoder:
    """A deterministic bag-of-words 'sentence-transformer': hashed word counts, 64 dims."""

    prompts: dict[str, str] = {}

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.encoded: list[str] = []

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, **kwargs):  # noqa: ANN001, ANN003, ANN201 - mimics SentenceTransformer.encode
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            self.encoded.append(text)
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out


def make_runs(questions=QUESTIONS, texts=TEXTS) -> tuple[str, list[Chunk]]:  # noqa: ANN001
    """A corpus run with `texts` and a qa run whose test split holds `questions`."""
    corpus = create_run("corpus", name="tiny corpus")
    chunks = [
        Chunk(id=chunk_id_for(t), text=t, source="faq.pdf", page=i + 1, doc_id="d1", chunk_index=i)
        for i, t in enumerate(texts)
    ]
    save_chunks(corpus, chunks)
    corpus.set_status("done")
    qa = create_run("qa", name="tiny qa", parents={"corpus": corpus.id})
    items = [
        QAItem(id=qid, question=q, chunk_id=chunks[c].id, split="test", reference_answer=ref)
        for qid, q, c, ref in questions
    ]
    items.append(
        QAItem(id="t1", question="A training question?", chunk_id=chunks[3].id, split="train")
    )
    save_qa(qa, items)
    qa.set_status("done")
    return qa.id, chunks


def fake_search(chunks: list[Chunk], encoder: FakeEncoder):  # noqa: ANN201
    from core.embeddings import encode_texts

    return exact_search([c.id for c in chunks], encode_texts(encoder, [c.text for c in chunks]))


def answer_from_context(messages) -> str:  # noqa: ANN001
    """A scripted generator: repeats the first numbered passage of the prompt."""
    match = re.search(r"\[1\] (.+)", messages[-1]["content"])
    return match.group(1) if match else "The passages do not say."


def test_exact_search_ranks_by_cosine_and_breaks_ties_by_id():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    search = exact_search(["c", "b", "a"], emb)
    hits = search(np.array([[1.0, 0.0]]), 3)[0]
    assert [h[0] for h in hits] == ["a", "c", "b"]  # a and c tie at 1.0: smaller id first
    assert hits[0][1] == pytest.approx(1.0) and hits[2][1] == pytest.approx(0.0)


def test_retriever_returns_documents_with_chunk_ids_scores_and_ranks():
    _, chunks = make_runs()
    encoder = FakeEncoder()
    retriever = make_retriever(
        model_query_encoder(encoder), fake_search(chunks, encoder), chunks, k=2
    )
    docs = retriever.invoke("Who created the Debian Project?")
    assert len(docs) == 2
    assert docs[0].metadata["chunk_id"] == chunks[1].id
    assert docs[0].metadata["rank"] == 1 and docs[1].metadata["rank"] == 2
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]
    assert docs[0].page_content == TEXTS[1]


def test_retriever_prefetch_embeds_all_questions_in_one_call():
    _, chunks = make_runs()
    encoder = FakeEncoder()
    calls = []
    search = fake_search(chunks, encoder)

    def counting_search(q, k):  # noqa: ANN001, ANN202
        calls.append(len(q))
        return search(q, k)

    retriever = make_retriever(model_query_encoder(encoder), counting_search, chunks, k=1)
    retriever.prefetch([q for _, q, _, _ in QUESTIONS])
    for _, question, gold, _ in QUESTIONS:
        assert retriever.invoke(question)[0].page_content == TEXTS[gold]
    assert calls == [3]  # one batched search, no per-question search afterwards


def test_retriever_refuses_a_chunk_the_corpus_does_not_have():
    _, chunks = make_runs()
    retriever = make_retriever(
        lambda qs: np.ones((len(qs), 2)), lambda q, k: [[("c_unknown", 0.9)]], chunks, k=1
    )
    with pytest.raises(RunError, match="not in the corpus run"):
        retriever.invoke("anything")


def test_chat_model_goes_through_our_llm_with_roles_cache_and_token_counts(tmp_path):
    backend = ScriptedBackend("An answer.")
    llm = LLM(backend, cache_dir=tmp_path / "cache")
    chat = make_chat_model(llm, temperature=0.0, max_tokens=50)
    from langchain_core.messages import HumanMessage, SystemMessage

    first = chat.invoke([SystemMessage("be brief"), HumanMessage("hello there")])
    second = chat.invoke([SystemMessage("be brief"), HumanMessage("hello there")])
    assert first.content == second.content == "An answer."
    assert backend.calls == [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    ]
    assert first.usage_metadata["input_tokens"] == 4 and first.usage_metadata["output_tokens"] == 2
    assert second.response_metadata["cached"] is True
    assert llm.usage.calls == 1 and llm.usage.cached == 1


def test_chain_prompts_with_numbered_contexts_and_returns_answer_and_documents(tmp_path):
    _, chunks = make_runs()
    encoder = FakeEncoder()
    backend = ScriptedBackend(answer_from_context)
    llm = LLM(backend, use_cache=False)
    retriever = make_retriever(
        model_query_encoder(encoder), fake_search(chunks, encoder), chunks, k=2
    )
    chain = build_rag_chain(retriever, make_chat_model(llm))
    out = chain.invoke("On which microkernel do the Hurd servers run?")
    assert out["answer"] == TEXTS[2]
    assert [d.page_content for d in out["documents"]][0] == TEXTS[2]
    prompt = backend.calls[0][-1]["content"]
    assert prompt.startswith("Context passages:\n\n[1] The Hurd") and "\n\n[2] " in prompt
    assert prompt.endswith("Question: On which microkernel do the Hurd servers run?")
    assert backend.calls[0][0]["role"] == "system"


def test_format_contexts_numbers_and_truncates():
    from langchain_core.documents import Document

    text = format_contexts(
        [Document(page_content="a" * 10), Document(page_content=" b ")], max_chars=4
    )
    assert text == "[1] aaaa …\n\n[2] b"
    assert format_contexts([]) == "(no passages were retrieved)"


def test_generate_answers_saves_a_rag_run_with_ragas_fields(tmp_path):
    qa_id, chunks = make_runs()
    encoder = FakeEncoder()
    llm = LLM(ScriptedBackend(answer_from_context), cache_dir=tmp_path / "cache")
    run = generate_answers(
        qa_id,
        llm=llm,
        encode=model_query_encoder(encoder),
        search=fake_search(chunks, encoder),
        config=RagConfig(k=2),
        retriever_label="base",
    )
    samples = load_samples(run.id)
    assert [s.id for s in samples] == ["q1", "q2", "q3"]  # the test split only, in order
    first = samples[0]
    assert first.user_input == QUESTIONS[0][1]
    assert first.retrieved_contexts[0] == TEXTS[0] and len(first.retrieved_ids) == 2
    assert first.response == TEXTS[0]
    assert first.reference == "Twice every day."
    assert first.reference_contexts == [TEXTS[0]] and first.gold_chunk_id == chunks[0].id
    assert first.gold_rank == 1
    assert samples[2].reference is None
    manifest = load_run(run.id).manifest
    assert manifest.kind == "rag" and manifest.status == "done"
    assert manifest.parents == {"qa": qa_id}
    assert manifest.config["k"] == 2 and manifest.config["retriever"] == "base"
    assert manifest.summary["n_answered"] == 3 and manifest.summary["n_failed"] == 0
    assert manifest.summary["gold_in_top_k"] == 1.0
    usage = run.read_json("usage.json")["generation"]
    assert usage["calls"] == 3 and usage["prompt_tokens"] > 0


def test_generate_answers_keeps_failed_questions_with_their_error(tmp_path):
    qa_id, chunks = make_runs()
    encoder = FakeEncoder()

    def flaky(messages):  # noqa: ANN001, ANN202
        if "microkernel" in messages[-1]["content"]:
            return LLMError(
                "The LLM server is rate-limiting (HTTP 429).", kind="rate_limit", retryable=True
            )
        return "An answer."

    llm = LLM(ScriptedBackend(flaky), use_cache=False, max_retries=1, retry_base_delay_s=0)
    run = generate_answers(
        qa_id,
        llm=llm,
        encode=model_query_encoder(encoder),
        search=fake_search(chunks, encoder),
        config=RagConfig(k=1),
    )
    samples = {s.id: s for s in load_samples(run.id)}
    assert len(samples) == 3
    assert samples["q3"].response == "" and samples["q3"].error_kind == "rate_limit"
    assert samples["q3"].retrieved_contexts == [TEXTS[2]]  # retrieval kept even without an answer
    assert samples["q1"].response == "An answer." and samples["q1"].error is None
    assert run.manifest.summary["n_failed"] == 1 and llm.usage.retries == 1


def test_generate_answers_second_run_is_served_from_the_cache(tmp_path):
    qa_id, chunks = make_runs()
    encoder = FakeEncoder()
    backend = ScriptedBackend(answer_from_context)
    llm = LLM(backend, cache_dir=tmp_path / "cache")
    kwargs = {
        "llm": llm,
        "encode": model_query_encoder(encoder),
        "search": fake_search(chunks, encoder),
    }
    generate_answers(qa_id, config=RagConfig(k=2), **kwargs)
    again = generate_answers(qa_id, config=RagConfig(k=2), **kwargs)
    assert len(backend.calls) == 3
    assert all(s.cached for s in load_samples(again.id))
    assert again.read_json("usage.json")["generation"]["cached"] == 3


def test_generate_answers_limit_and_progress(tmp_path):
    qa_id, chunks = make_runs()
    encoder = FakeEncoder()
    events = []
    run = generate_answers(
        qa_id,
        llm=LLM(ScriptedBackend("ok"), use_cache=False),
        encode=model_query_encoder(encoder),
        search=fake_search(chunks, encoder),
        config=RagConfig(k=1, limit=2),
        on_progress=events.append,
    )
    assert len(load_samples(run.id)) == 2
    answering = [e for e in events if e.stage == "answering"]
    assert answering[-1].done == 2 and answering[-1].total == 2


def test_rag_config_validates():
    with pytest.raises(ConfigError, match="Top-k must be at least 1"):
        RagConfig(k=0)
    with pytest.raises(ConfigError, match="Limit must be at least 1"):
        RagConfig(limit=0)
    assert RagConfig(k=3, dim=64).to_dict()["prompt_version"] == "rag-v1"


def test_generate_answers_refuses_a_run_that_is_not_qa(tmp_path):
    corpus = create_run("corpus")
    with pytest.raises(ConfigError, match="is a corpus run, not a qa run"):
        generate_answers(
            corpus.id,
            llm=LLM(ScriptedBackend("x"), use_cache=False),
            encode=lambda q: q,
            search=lambda q, k: [],
            config=RagConfig(),
        )


def test_every_gold_chunk_of_a_question_counts_in_the_rag_run(tmp_path):
    """A question whose evidence sits in two chunks: both are reference contexts, and the gold
    rank is the first of either among the retrieved."""
    qa_id, chunks = make_runs()
    qa = load_run(qa_id)
    from core.questions.dataset import load_qa

    items = load_qa(qa, accepted_only=False)
    items[2] = items[2].model_copy(update={"gold_chunk_ids": [chunks[0].id]})  # q3 also in c0
    save_qa(qa, items)
    encoder = FakeEncoder()
    llm = LLM(ScriptedBackend(answer_from_context), cache_dir=tmp_path / "cache")
    run = generate_answers(
        qa_id,
        llm=llm,
        encode=model_query_encoder(encoder),
        search=fake_search(chunks, encoder),
        config=RagConfig(k=4),
        retriever_label="base",
    )
    third = load_samples(run.id)[2]
    assert third.gold_ids == [chunks[2].id, chunks[0].id]
    assert third.reference_contexts == [TEXTS[2], TEXTS[0]]
    ranks = [third.retrieved_ids.index(c) + 1 for c in third.gold_ids]
    assert third.gold_rank == min(ranks)


class BlindEncoder(FakeEncoder):
    """A dense model that ranks every chunk the same: only BM25 or a reranker can tell them
    apart (exact search then returns the smallest chunk id first for every question)."""

    def encode(self, texts, **kwargs):  # noqa: ANN001, ANN003, ANN201
        return np.ones((len(texts), self.dim), dtype=np.float32)


def blind_answering(tmp_path, chunks) -> dict:  # noqa: ANN001
    """generate_answers' arguments for answering with BlindEncoder and the scripted LLM."""
    encoder = BlindEncoder()
    return {
        "llm": LLM(ScriptedBackend(answer_from_context), cache_dir=tmp_path / "cache"),
        "encode": model_query_encoder(encoder),
        "search": fake_search(chunks, encoder),
        "retriever_label": "base",
    }


def test_a_hybrid_retriever_fuses_dense_and_bm25_by_rank(tmp_path):
    """RAG can answer with a hybrid: the dense hits and BM25's, fused by reciprocal rank."""
    from core.evaluation.hybrid import RRF_K, fuse_hits

    fused = fuse_hits([("a", 0.9), ("b", 0.8)], [("b", 7.0), ("c", 3.0)], 3)
    assert fused == [
        ("b", pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))),
        ("a", pytest.approx(1 / (RRF_K + 1))),
        ("c", pytest.approx(1 / (RRF_K + 2))),
    ]
    qa_id, chunks = make_runs()

    common = blind_answering(tmp_path, chunks)
    dense = load_samples(generate_answers(qa_id, config=RagConfig(k=1), **common).id)
    hybrid = load_samples(generate_answers(qa_id, config=RagConfig(k=1, hybrid=True), **common).id)
    # Blind dense search returns the smallest chunk id first for every question; the fusion
    # brings BM25's finds in, so more gold chunks are retrieved.
    assert len({s.retrieved_ids[0] for s in dense}) == 1
    assert len({s.retrieved_ids[0] for s in hybrid}) > 1
    found = [sum(s.gold_rank is not None for s in samples) for samples in (dense, hybrid)]
    assert found[1] > found[0]


def test_a_reranked_retriever_reorders_its_top_n_before_keeping_k(tmp_path):
    """RAG can answer with a reranker between retrieval and the answer: the retriever's top N
    reordered by the cross-encoder's scores (here a word-overlap scorer anyone can check), then
    the top k kept; the run records the reranker among its parents and in its config."""
    qa_id, chunks = make_runs()

    def overlap(pairs):  # noqa: ANN001, ANN202
        words = [(set(re.findall(r"\w+", q.lower())), set(re.findall(r"\w+", p.lower())))
                 for q, p in pairs]  # fmt: skip
        return np.array([float(len(q & p)) for q, p in words])

    common = blind_answering(tmp_path, chunks)
    dense = load_samples(generate_answers(qa_id, config=RagConfig(k=1), **common).id)
    reranker = create_run("reranker", name="a reranker", parents={"qa": qa_id})
    config = RagConfig(k=1, reranker=f"run:{reranker.id}", rerank_top=10)
    run = generate_answers(qa_id, config=config, rerank=overlap, **common)
    reranked = load_samples(run.id)
    assert len({s.retrieved_ids[0] for s in dense}) == 1
    texts = {c.id: c.text for c in chunks}
    for sample in reranked:  # the kept passage is the best by the scorer among all chunks
        best = max(overlap([(sample.user_input, t) for t in TEXTS]))
        assert overlap([(sample.user_input, texts[sample.retrieved_ids[0]])])[0] == best
        assert len(sample.retrieved_ids) == 1
    found = [sum(s.gold_rank is not None for s in samples) for samples in (dense, reranked)]
    assert found[1] > found[0]
    saved = load_run(run.id)
    assert saved.manifest.parents["reranker"] == reranker.id
    assert saved.manifest.config["reranker"] == f"run:{reranker.id}"
    assert saved.manifest.config["rerank_top"] == 10


def test_a_rag_request_adds_the_last_model_reranked():
    from core.embeddings import ModelSpec
    from core.rag.job import RagEvalRequest, retriever_choices
    from core.rag.metrics import RagasConfig

    request = RagEvalRequest(
        qa_run_id="qa-x",
        base=ModelSpec(),
        tuned=ModelSpec("run", "model-x"),
        hybrid=True,
        rag_config=RagConfig(),
        ragas_config=RagasConfig(),
        reranker="run:reranker-x",
    )
    assert request.labels == ["base", "tuned", "tuned + BM25", "tuned + reranker"]
    assert RagEvalRequest.from_dict(request.to_dict()) == request
    choices = retriever_choices(request, lambda spec: spec.label)
    assert [c.label for c in choices] == request.labels
    assert choices[-1].reranker == "run:reranker-x" and choices[-1].spec == request.tuned
    assert not choices[-1].hybrid and choices[2].reranker == ""
    with pytest.raises(ConfigError, match="Rerank top 5 is outside"):
        RagConfig(reranker="run:reranker-x", rerank_top=5)


def test_only_the_top_n_is_reranked_and_a_chunk_below_it_stays_below():
    """The reranker reorders the retriever's first `rerank_top` hits only: a chunk it would
    love that the retriever ranked below them is not pulled up."""
    from types import SimpleNamespace

    ids = [f"c{i:02d}" for i in range(14)]
    chunks = {cid: SimpleNamespace(text=f"text {cid}") for cid in ids}
    ranked = [(cid, 1.0 - i / 100) for i, cid in enumerate(ids)]  # the retriever's order

    def favours_the_last(pairs):  # noqa: ANN001, ANN202
        return np.array([100.0 if p == "text c13" else float(p[-2:]) for _, p in pairs])

    retriever = SimpleNamespace(
        k=12, rerank_top=10, rerank=favours_the_last, lexical=None, chunks=chunks,
        encode=lambda qs: np.zeros((len(qs), 2)), search=lambda q, depth: [ranked[:depth]],
    )  # fmt: skip
    (hits,) = search_hits(retriever, ["q"])
    assert [cid for cid, _ in hits] == [*reversed(ids[:10]), "c10", "c11"]  # c13 stays out
    retriever.chunks = {cid: chunks[cid] for cid in ids[1:]}
    with pytest.raises(RunError, match="not in the corpus run"):
        search_hits(retriever, ["q"])


def test_a_rag_request_refuses_a_bad_rerank_top_before_anything_runs():
    from core.embeddings import ModelSpec
    from core.rag.job import RagEvalRequest
    from core.rag.metrics import RagasConfig

    with pytest.raises(ConfigError, match="Rerank top 5 is outside"):
        RagEvalRequest(
            qa_run_id="qa-x",
            base=ModelSpec(),
            tuned=None,
            hybrid=False,
            rag_config=RagConfig(rerank_top=5),
            ragas_config=RagasConfig(),
            reranker="run:reranker-x",
        )
    request = RagEvalRequest(
        qa_run_id="qa-x",
        base=ModelSpec(),
        tuned=None,
        hybrid=False,
        rag_config=RagConfig(),
        ragas_config=RagasConfig(),
        reranker="local:/nowhere",
    )
    with pytest.raises(ConfigError, match="holds no model"):
        request.check_reranker()
