"""`ragbench rerank-train --background` trains a reranker as a background job, and
`ragbench eval-retrieval --reranker run:ID` evaluates retrieve-then-rerank arms with it."""

from __future__ import annotations

import json
import time

import pytest

from core.runs.folders import load_run
from core.runs.jobs import job_status
from tests.integration.test_cli import run_cli
from tests.support.finetune_data import make_qa_run


@pytest.mark.slow
def test_rerank_train_in_the_background_then_eval_retrieval_with_the_reranker(data_root):
    _, qa = make_qa_run(n_chunks=14, seed=7)  # 2 test chunks: 2 clusters
    started = run_cli(
        "rerank-train", qa.id, "--epochs", "1", "--num-negatives", "2", "--max-length", "64",
        "--rerank-top", "10", "--background", data=data_root,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    run_id = json.loads(started.stdout)["reranker_run"]
    assert load_run(run_id).kind == "reranker"
    deadline = time.monotonic() + 600
    while load_run(run_id).manifest.status in ("pending", "running"):
        assert time.monotonic() < deadline, "the reranker job did not finish"
        time.sleep(2)
    manifest = load_run(run_id).manifest
    assert manifest.status == "done", (manifest.error, (load_run(run_id).path / "job.log"))
    status = job_status(run_id)
    assert status.step == status.total_steps > 0  # progress read from the run folder

    done = run_cli(
        "eval-retrieval", qa.id, "--bm25", "--dims", "384", "--no-frontier",
        "--reranker", f"run:{run_id}", "--rerank-top", "10", data=data_root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    models = {m["model"] for m in out["metrics"]}
    assert {"all-MiniLM-L6-v2 + reranker", "BM25 + reranker"} <= models
    pairs = {(d["model"], d["base_model"]) for d in out["rerank_deltas"]}
    assert ("BM25 + reranker", "BM25") in pairs
    evaluation = load_run(out["retrieval_eval_run"])
    assert evaluation.manifest.parents["reranker"] == run_id

    # and in the RAG chain: the base model's top 10 reranked before the answer (issue 29)
    answered = run_cli(
        "rag-eval", qa.id, "--limit", "2", "--k", "2", "--reranker", f"run:{run_id}",
        "--rerank-top", "10", data=data_root,
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr[-3000:]
    ragas = load_run(json.loads(answered.stdout)["ragas_eval_run"])
    rag_runs = {k: load_run(v) for k, v in ragas.manifest.parents.items() if k.startswith("rag_")}
    reranked = rag_runs["rag_base + reranker"]
    assert reranked.manifest.parents["reranker"] == run_id
    assert reranked.manifest.config["reranker"] == f"run:{run_id}"
    assert reranked.manifest.summary["n_answered"] == 2
    # the passages given to the LLM carry the cross-encoder's own scores, best first
    from core.rag.answering import load_samples
    from core.rerankers import RerankerSpec, load_cross_encoder, pair_scorer

    score = pair_scorer(load_cross_encoder(RerankerSpec("run", run_id), device="cpu"))
    for sample in load_samples(reranked.id):
        expected = score([(sample.user_input, text) for text in sample.retrieved_contexts])
        assert sample.retrieved_scores == pytest.approx(expected.tolist(), abs=1e-4)
        assert sample.retrieved_scores == sorted(sample.retrieved_scores, reverse=True)
