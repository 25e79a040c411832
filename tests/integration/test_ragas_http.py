"""Real RAGAS metrics and the RAG chain through our OpenAI-compatible client, against the test's
own scripted chat-completions server on loopback. The server refuses n>1 (as many do), rate-limits
once, and answers each ragas prompt by reading it."""

from __future__ import annotations

import json
import threading

import pytest

from core.config import LLMSettings
from core.llm.client import make_llm
from core.rag.answering import RagConfig, generate_answers, load_samples
from core.rag.chain import model_query_encoder
from core.rag.metrics import LLM_METRICS, RagasConfig
from core.rag.results import load_ragas_eval
from core.rag.stage import evaluate_rag, retry_failed
from tests.support.openai_server import ChatServer, Reply
from tests.unit.test_rag import QUESTIONS, TEXTS, FakeEncoder, fake_search, make_runs
from tests.unit.test_ragas_eval import happy, schema_of


class ScriptedJudgeServer:
    """Decides each HTTP reply: generation, ragas judgements, a 429 once, refusals of n>1."""

    def __init__(self, *, broken_recall: bool = False) -> None:
        self.broken_recall = broken_recall
        self.rate_limited = False
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        if int(body.get("n", 1)) > 1:
            return Reply(status=400, raw_body='{"error": {"message": "n must be 1"}}')
        prompt = body["messages"][-1]["content"]
        if prompt.startswith("Context passages:"):
            # The generator: answer with the first passage (a grounded answer).
            return Reply(content=prompt.split("[1] ", 1)[1].split("\n\n", 1)[0])
        kind = schema_of(body["messages"][0]["content"])
        with self.lock:
            if kind == "ContextRecallOutput" and not self.rate_limited:
                self.rate_limited = True
                return Reply(status=429, raw_body='{"error": "slow down"}')
        if kind == "ContextRecallOutput" and self.broken_recall:
            return Reply(content="I think most statements are attributed.")
        return Reply(content=happy_for(body["messages"][0]["content"]))


def happy_for(prompt: str) -> str:
    """The unit tests' scripted verdicts, adapted to these documents."""
    kind = schema_of(prompt)
    if kind == "AnswerRelevanceOutput":
        data = json.loads(prompt.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0])
        question = next(
            (q for _, q, c, _ in QUESTIONS if TEXTS[c] == data["response"]), "unrelated"
        )
        return json.dumps({"question": question, "noncommittal": 0})
    if kind == "ContextPrecisionOutput":
        data = json.loads(prompt.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0])
        gold = {TEXTS[c] for _, q, c, _ in QUESTIONS if q == data["question"]}
        return json.dumps({"reason": "r", "verdict": int(data["context"] in gold)})
    return happy(prompt)


@pytest.fixture
def settings_for():
    def make(server: ChatServer) -> LLMSettings:
        return LLMSettings(
            backend="openai",
            base_url=server.base_url,
            model="judge-model",
            timeout_s=5,
            max_concurrency=4,
            max_retries=2,
        )

    return make


def test_rag_and_ragas_run_through_the_http_client(tmp_path, settings_for):
    from core.rag.judges import SentenceTransformerEmbeddings

    qa_id, chunks = make_runs()
    encoder = FakeEncoder()
    with ChatServer(ScriptedJudgeServer()) as server:
        llm = make_llm(settings_for(server), cache_dir=tmp_path / "cache")
        llm.retry_base_delay_s = 0.01
        rag = generate_answers(
            qa_id,
            llm=llm,
            encode=model_query_encoder(encoder),
            search=fake_search(chunks, encoder),
            config=RagConfig(k=2),
        )
        run = evaluate_rag(
            {"base": rag.id},
            judge=llm,
            embeddings=SentenceTransformerEmbeddings(encoder),
            config=RagasConfig(metrics=LLM_METRICS + ("id_based_context_recall",), strictness=3),
        )
        n_requests = len(server.requests)
    samples = load_samples(rag.id)
    assert [s.response for s in samples] == [TEXTS[0], TEXTS[1], TEXTS[2]]
    result = load_ragas_eval(run.id)
    scores = result.scores.set_index(["sample_id", "metric"])["value"]
    assert scores[("q1", "faithfulness")] == pytest.approx(0.5)
    assert scores[("q1", "answer_relevancy")] == pytest.approx(1.0)
    assert scores[("q2", "context_precision")] == pytest.approx(1.0)  # gold ranked first
    assert scores[("q1", "context_recall")] == pytest.approx(2 / 3)
    assert scores[("q1", "factual_correctness")] == pytest.approx(0.67)
    assert scores[("q3", "id_based_context_recall")] == 1.0
    summary = result.summary["retrievers"]["base"]
    assert summary["factual_correctness"]["n_skipped"] == 1  # q3 has no reference answer
    assert all(e["n_failed"] == 0 for e in summary.values())
    bodies = server.requests
    assert all(int(b.get("n", 1)) == 1 for b in bodies)  # never asks for n>1
    judge_bodies = [b for b in bodies if "response_format" in b]
    assert judge_bodies and all(b["response_format"]["type"] == "json_schema" for b in judge_bodies)
    relevancy = [
        b for b in bodies if schema_of(b["messages"][0]["content"]) == "AnswerRelevanceOutput"
    ]
    assert len(relevancy) == 3 * 3 and {b["temperature"] for b in relevancy} == {0.3}
    assert llm.usage.retries == 1  # the one 429 was retried by our client
    usage = result.usage["scoring"]["judge"]
    assert usage["calls"] == n_requests - 3 - 1 and usage["prompt_tokens"] > 0  # minus answers, 429


def test_unparseable_judge_replies_fail_then_retry_failed_rescores_them(tmp_path, settings_for):
    from core.rag.judges import SentenceTransformerEmbeddings

    qa_id, chunks = make_runs()
    encoder = FakeEncoder()
    emb = SentenceTransformerEmbeddings(encoder)
    config = RagasConfig(metrics=("context_recall", "faithfulness"))
    with ChatServer(ScriptedJudgeServer(broken_recall=True)) as server:
        llm = make_llm(settings_for(server), cache_dir=tmp_path / "cache")
        llm.retry_base_delay_s = 0.01
        rag = generate_answers(
            qa_id,
            llm=llm,
            encode=model_query_encoder(encoder),
            search=fake_search(chunks, encoder),
            config=RagConfig(k=2),
        )
        first = evaluate_rag({"base": rag.id}, judge=llm, embeddings=emb, config=config)
    entry = load_ragas_eval(first.id).summary["retrievers"]["base"]["context_recall"]
    assert entry["n_failed"] == 3 and entry["failures"] == {"parse": 3} and entry["mean"] is None
    with ChatServer(ScriptedJudgeServer()) as server:
        server.handler.rate_limited = True  # no 429 this time
        llm = make_llm(settings_for(server), cache_dir=tmp_path / "cache")
        second = retry_failed(first.id, judge=llm, embeddings=emb)
        kinds = [schema_of(b["messages"][0]["content"]) for b in server.requests]
    assert kinds == ["ContextRecallOutput"] * 3  # faithfulness was not asked again
    retried = load_ragas_eval(second.id).summary["retrievers"]["base"]
    assert retried["context_recall"]["n_ok"] == 3 and retried["context_recall"][
        "mean"
    ] == pytest.approx(2 / 3)
    assert retried["faithfulness"]["mean"] == pytest.approx(0.5)
