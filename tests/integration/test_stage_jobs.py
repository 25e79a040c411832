"""Every long stage runs as a background job that Stop ends cleanly: question generation, Chroma
indexing and RAG evaluation (retrieval eval: tests/integration/test_eval_job.py). Real
subprocesses, real MiniLM and Chroma, answers and judgements from a loopback server."""

from __future__ import annotations

import json

from core.config import ChromaSettings, LLMSettings
from core.documents.index_job import start_indexing
from core.embeddings import ModelSpec
from core.questions.gate import GateConfig
from core.questions.generation import GenerationConfig
from core.questions.job import start_question_generation
from core.rag.answering import RagConfig
from core.rag.job import RagEvalRequest, start_rag_eval
from core.rag.metrics import RagasConfig
from core.runs.actor import Actor, acting_as
from core.runs.audit import read_audit
from core.runs.folders import list_runs, load_run
from core.runs.guard import INTERRUPTED
from core.runs.jobs import job_status, read_progress, request_stop, tail_log
from tests.support.jobs import wait_for_job
from tests.support.openai_server import ChatServer, Reply
from tests.unit.test_rag import make_runs

SECRET = "sk-test-never-on-disk-7731"


def server_settings(server: ChatServer, concurrency: int = 4) -> LLMSettings:
    return LLMSettings(
        backend="openai",
        base_url=server.base_url,
        model="test-model",
        api_key=SECRET,
        max_concurrency=concurrency,
    )


def base_request(qa_id: str, metrics: tuple[str, ...], *, hybrid: bool) -> RagEvalRequest:
    """The base model (and its hybrid with BM25) on the qa run's test split, top 2, `metrics`."""
    return RagEvalRequest(
        qa_run_id=qa_id,
        base=ModelSpec(),
        tuned=None,
        hybrid=hybrid,
        rag_config=RagConfig(k=2),
        ragas_config=RagasConfig(metrics=metrics),
    )


def no_secret_on_disk(run_path) -> None:  # noqa: ANN001
    for path in run_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def corpus_of(n: int) -> str:
    """A finished corpus run with `n` distinct chunks."""
    from core.documents.corpus import Chunk, chunk_id_for, save_chunks
    from core.runs.folders import create_run

    texts = [
        f"Topic {i}: the mirror number {i} serves packages for release {i % 7} over HTTPS."
        for i in range(n)
    ]
    corpus = create_run("corpus", name=f"{n} chunks")
    chunks = [
        Chunk(id=chunk_id_for(t), text=t, source="m.txt", page=1, doc_id="d1", chunk_index=i)
        for i, t in enumerate(texts)
    ]
    save_chunks(corpus, chunks)
    corpus.set_status("done", n_chunks=n)
    return corpus.id


def test_question_generation_runs_as_a_job_and_stop_ends_it_stopped_with_what_was_asked():
    corpus_id = corpus_of(8)
    seen: list[str] = []

    def handler(body: dict) -> Reply:
        seen.append(body["messages"][-1]["content"])
        if len(seen) == 2:  # the second chunk is being asked: the user presses Stop
            request_stop(list_runs("qa")[0])
        question = f"What does mirror {len(seen)} serve over HTTPS for its release?"
        return Reply(content=json.dumps({"questions": [{"question": question}]}))

    config = GenerationConfig(n_per_chunk=1, gate=GateConfig(check_near_duplicates=False))
    with ChatServer(handler) as server:
        run = start_question_generation(corpus_id, config, server_settings(server, 1))
        assert load_run(run.id).manifest.status == "running"  # the caller did not wait
        assert wait_for_job(run) == "stopped", tail_log(run)
    fresh = load_run(run.id)
    assert len(seen) < 8  # the chunks after the stop were never asked
    assert "Traceback" not in (fresh.manifest.error or "")
    no_secret_on_disk(fresh.path)


def test_question_generation_job_fills_the_run_it_made():
    corpus_id = corpus_of(3)

    def handler(body: dict) -> Reply:
        topic = body["messages"][-1]["content"].split("Topic ", 1)[1].split(":", 1)[0]
        question = f"Which release does the mirror of topic {topic} serve packages for?"
        return Reply(content=json.dumps({"questions": [{"question": question}]}))

    config = GenerationConfig(n_per_chunk=1, gate=GateConfig(check_near_duplicates=False))
    with ChatServer(handler) as server:
        run = start_question_generation(corpus_id, config, server_settings(server))
        assert wait_for_job(run) == "done", tail_log(run)
    fresh = load_run(run.id)
    assert fresh.manifest.summary["n_accepted"] == 3
    assert fresh.manifest.config["llm"]["identity"]  # recorded by the page's process
    no_secret_on_disk(fresh.path)


def test_indexing_runs_as_a_job_a_stop_keeps_whole_batches_and_indexing_again_finishes():
    corpus_id = corpus_of(300)
    first = start_indexing(corpus_id, ModelSpec(), None, ChromaSettings())
    request_stop(first)  # before the first batch: the job stops at its first check
    assert wait_for_job(first) == "stopped", tail_log(first)
    assert load_run(first.id).manifest.error  # a reason, not an exception name
    second = start_indexing(corpus_id, ModelSpec(), None, ChromaSettings())
    assert wait_for_job(second, timeout=600) == "done", tail_log(second)
    summary = load_run(second.id).manifest.summary
    assert summary["n_added"] + summary["n_skipped"] == 300
    assert load_run(second.id).manifest.parents == {"corpus": corpus_id}
    third = start_indexing(corpus_id, ModelSpec(), None, ChromaSettings())
    assert wait_for_job(third) == "done", tail_log(third)
    assert load_run(third.id).manifest.summary["n_added"] == 0  # nothing embedded twice


def test_rag_eval_job_stopped_while_scoring_keeps_every_answer_it_made():
    from tests.integration.test_ragas_http import ScriptedJudgeServer

    qa_id, _ = make_runs()
    scripted = ScriptedJudgeServer()
    judged: list[int] = []

    def handler(body: dict) -> Reply:
        if not body["messages"][-1]["content"].startswith("Context passages:"):
            judged.append(1)
            if len(judged) == 1:  # the first judgement: every answer is made; Stop
                request_stop(list_runs("ragas_eval")[0])
        return scripted(body)

    request = base_request(qa_id, ("faithfulness",), hybrid=True)
    starter = Actor("ana@team.test", "member")
    with ChatServer(handler) as server, acting_as(starter):
        run = start_rag_eval(request, server_settings(server, 1))
        assert wait_for_job(run) == "stopped", tail_log(run)
    fresh = load_run(run.id)
    assert set(fresh.manifest.parents) == {"rag_base", "rag_base + BM25"}
    for rag_id in fresh.manifest.parents.values():
        assert load_run(rag_id).manifest.status == "done"  # the answers are kept
        assert load_run(rag_id).manifest.created_by == starter.name  # made by the job, for her
    actions = {(e["action"], e["user"]) for e in read_audit()}
    assert ("started", starter.name) in actions and ("created", starter.name) in actions
    assert job_status(run).phase  # progress was written to the run folder
    phases = [e["message"] for e in read_progress(run) if e.get("event") == "phase"]
    assert any(m.startswith("base (1/2) · ") for m in phases), phases  # which one answers
    assert any(m.startswith("base + BM25 (2/2) · ") for m in phases), phases
    assert fresh.manifest.error != INTERRUPTED
    no_secret_on_disk(fresh.path)


def test_rag_eval_request_that_needs_a_judge_is_refused_before_any_run():
    import pytest

    from core.errors import ConfigError

    qa_id, _ = make_runs()
    before = {r.id for r in list_runs()}
    request = base_request(qa_id, ("faithfulness",), hybrid=False)
    with pytest.raises(ConfigError):
        start_rag_eval(request, LLMSettings(backend="openai", base_url="", model=""))
    assert {r.id for r in list_runs()} == before


def test_retrying_the_failed_judgements_runs_as_a_job_and_keeps_the_rest():
    from core.rag.job import start_retry
    from tests.integration.test_ragas_http import ScriptedJudgeServer

    qa_id, _ = make_runs()
    request = base_request(qa_id, ("context_recall", "id_based_context_recall"), hybrid=False)
    with ChatServer(ScriptedJudgeServer(broken_recall=True)) as server:
        first = start_rag_eval(request, server_settings(server))
        assert wait_for_job(first) == "done", tail_log(first)
    assert load_run(first.id).manifest.summary["n_failed"] == 3  # every recall judgement
    with ChatServer(ScriptedJudgeServer()) as server:
        retry = start_retry(first.id, server_settings(server))
        assert wait_for_job(retry) == "done", tail_log(retry)
    fresh = load_run(retry.id)
    assert fresh.manifest.summary["n_failed"] == 0
    assert fresh.manifest.parents["retry_of"] == first.id
    assert fresh.manifest.summary["n_judgements"] == 6  # the judge-free rows were kept
    no_secret_on_disk(fresh.path)
