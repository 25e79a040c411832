"""The whole RAG + RAGAS stage on the sample corpus with the embedded offline LLM: real chunks,
real Chroma, real MiniLM, real SmolLM2 answers and judgements (3 questions, to stay quick).

SmolLM2-135M is a weak judge that often does not reply with JSON: the test accepts a judged score
or a counted failure with its reason, and checks that nothing is silently dropped."""

from __future__ import annotations

import math

import pytest

from core.config import LLMSettings
from core.embeddings import ModelSpec
from core.llm.client import make_llm
from core.rag.answering import RagConfig, load_samples
from core.rag.metrics import NON_LLM_METRICS, RagasConfig
from core.rag.results import load_ragas_eval
from core.rag.stage import RetrieverChoice, compare_retrievers
from core.runs.folders import load_run

N_QUESTIONS = 3


@pytest.mark.slow
@pytest.mark.llm
def test_rag_and_ragas_on_the_sample_corpus_with_the_embedded_llm(minilm, tmp_path):
    from core.documents.stage import ingest_sample_corpus
    from core.questions.sample import load_sample_qa
    from core.rag.judges import SentenceTransformerEmbeddings

    corpus = ingest_sample_corpus()
    qa = load_sample_qa(corpus.run.id)
    llm = make_llm(LLMSettings(backend="embedded"), cache_dir=tmp_path / "cache")
    metrics = ("faithfulness", *NON_LLM_METRICS)
    run = compare_retrievers(
        qa.id,
        [RetrieverChoice("base", minilm, ModelSpec())],
        llm=llm,
        judge=llm,
        embeddings=SentenceTransformerEmbeddings(minilm, label="all-MiniLM-L6-v2"),
        rag_config=RagConfig(k=3, limit=N_QUESTIONS, max_tokens=64),
        ragas_config=RagasConfig(metrics=metrics, max_tokens=96, parse_retries=0),
    )
    result = load_ragas_eval(run.id)
    samples = load_samples(result.summary["rag_runs"]["base"])
    assert len(samples) == N_QUESTIONS
    assert all(s.response and len(s.retrieved_contexts) == 3 for s in samples)
    assert all(s.reference and s.reference_contexts for s in samples)  # sample set has answers
    rag_manifest = load_run(result.summary["rag_runs"]["base"]).manifest
    assert rag_manifest.config["collection"] and rag_manifest.parents == {"qa": qa.id}

    scores = result.scores
    assert len(scores) == N_QUESTIONS * len(metrics)  # one row per sample and metric, none dropped
    ok = scores[scores["status"] == "ok"]
    assert ok["value"].between(-1.0, 1.0).all()
    failed = scores[scores["status"] == "failed"]
    assert (failed["error"] != "").all() and failed["value"].isna().all()
    judge_free = scores[scores["metric"].isin(NON_LLM_METRICS)]
    assert (judge_free["status"] == "ok").all()
    recall = scores[scores["metric"] == "id_based_context_recall"]["value"]
    hits = sum(s.gold_rank is not None for s in samples)
    assert recall.sum() == hits  # chunk-id recall is exactly the gold-in-top-k count

    summary = result.summary
    assert summary["low_confidence_judge"] is True
    for entry in summary["retrievers"]["base"].values():
        assert entry["n_ok"] + entry["n_failed"] + entry["n_skipped"] == N_QUESTIONS
        assert sum(entry["failures"].values()) == entry["n_failed_judgements"]
        if entry["n_ok"]:
            assert entry["mean"] is not None and not math.isnan(entry["mean"])
    usage = result.usage
    assert usage["generation"]["base"]["calls"] == N_QUESTIONS
    # Every sample was judged at least once.
    assert usage["scoring"]["judge"]["calls"] >= N_QUESTIONS
    assert usage["scoring"]["embeddings"]["texts_embedded"] > 0
