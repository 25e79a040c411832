"""Retrieval evaluation as a background job: a real subprocess writes its progress and results to
the run folder (equal to the same evaluation in this process), stops on request, and a refused
configuration leaves no run behind."""

from __future__ import annotations

import numpy as np
import pytest

from core.documents.corpus import load_chunks
from core.documents.stage import UploadedFile, build_corpus
from core.embeddings import ModelSpec
from core.errors import ConfigError
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.job import start_retrieval_eval
from core.evaluation.results import load_retrieval_eval
from core.evaluation.stage import evaluate_retrieval
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import create_run, list_runs
from core.runs.jobs import job_status, read_progress, request_stop, tail_log
from tests.integration.test_jobs import wait_for

pytestmark = pytest.mark.slow

FACTS = [
    "Rainfall in deserts is rare and sudden; flash floods follow the storms.",
    "Magma rises through the crust and erupts as lava from volcanoes.",
    "Tides follow the moon; the sea rises and falls twice a day.",
    "Glaciers carve valleys as the ice slowly flows downhill.",
    "Coral reefs grow in warm shallow water and shelter many fish.",
]
QUESTIONS = [
    "What follows desert storms?",
    "How does lava reach the surface?",
    "What makes the sea rise twice a day?",
    "What carves valleys?",
    "Where do reefs grow?",
]


def make_config(**overrides) -> RetrievalEvalConfig:
    corpus = build_corpus(
        [UploadedFile(f"f{i}.txt", (fact + "\n").encode()) for i, fact in enumerate(FACTS)]
    ).run
    chunks = load_chunks(corpus.id)
    qa = create_run("qa", name="facts", parents={"corpus": corpus.id})
    items = [
        QAItem(
            id=f"q{i}",
            question=q,
            chunk_id=next(c.id for c in chunks if FACTS[i][:25] in c.text),
            split="test",
        )
        for i, q in enumerate(QUESTIONS)
    ]
    save_qa(qa, items)
    qa.set_status("done")
    values = {
        "qa_run_id": qa.id,
        "models": (ModelSpec(),),
        "dims": (384, 64),
        "include_bm25": True,
        "hybrid": False,
        "frontier": False,
        "similarity_csv": None,
        "n_resamples": 200,
        "n_permutations": 200,
        "device": "cpu",
    }
    return RetrievalEvalConfig(**{**values, **overrides})


def test_a_background_evaluation_reports_progress_and_equals_one_in_this_process(minilm):
    config = make_config()
    run = start_retrieval_eval(config)
    assert run.manifest.status == "running"
    status = wait_for(lambda: job_status(run).finished and job_status(run), 300, "the job")
    assert status.status == "done", tail_log(run)
    events = read_progress(run)
    assert any(e["event"] == "phase" and "corpus" in e["message"] for e in events)
    assert (events[-1]["event"], events[-1]["status"]) == ("end", "done")
    background = load_retrieval_eval(run.id)
    here = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    cols = ["model", "dim", "metric"]
    a = background.metrics.sort_values(cols).reset_index(drop=True)
    b = here.metrics.sort_values(cols).reset_index(drop=True)
    assert list(a[cols].itertuples(index=False)) == list(b[cols].itertuples(index=False))
    np.testing.assert_allclose(a["value"], b["value"], atol=1e-6)


def test_stop_ends_the_background_evaluation_as_stopped(minilm):
    run = start_retrieval_eval(make_config())
    request_stop(run)  # before the model has even loaded
    status = wait_for(lambda: job_status(run).finished and job_status(run), 300, "the job")
    assert status.status == "stopped", tail_log(run)
    assert read_progress(run)[-1]["status"] == "stopped"
    assert not run.artifact("metrics.csv").exists()  # no half-made result


def test_a_refused_configuration_starts_nothing_and_leaves_no_run():
    with pytest.raises(ConfigError, match="primary metric"):
        start_retrieval_eval(make_config(primary_metric="bogus@3"))
    assert list_runs("retrieval_eval") == []
