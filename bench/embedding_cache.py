"""The embedding cache: what it saves and what it costs, on the sample corpus.

    .venv/bin/python -m bench.embedding_cache

In a temporary data directory: the Debian FAQ is ingested and indexed into embedded Chroma with
the packaged MiniLM (cold), then built and indexed again as a second corpus run from the same
file; the hand-written questions are evaluated (base model, BM25, the page's defaults) right
after indexing, again unchanged, and cold with the cache off and on (cleared) for the overhead.
Prints seconds and how many texts each step encoded and read from the cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from core.config import apply_offline_env
from core.embedding_cache import CACHE_ENV


def _step(rows: list[tuple[str, float, int, int]], label: str, fn: Callable[[], Any]) -> Any:
    from core.embedding_cache import default_cache

    cache = default_cache()
    hits, misses = (cache.stats.hits, cache.stats.misses) if cache else (0, 0)
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    cache = default_cache()
    encoded = cache.stats.misses - misses if cache else -1
    cached = cache.stats.hits - hits if cache else 0
    rows.append((label, seconds, encoded, cached))
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return out


def _job_step(rows: list, label: str, config: Any, clear: bool) -> None:
    """Time an evaluation run as the page runs it: a background job, from start to done, with
    the texts it encoded as its run records them."""
    import shutil

    from core.config import data_dir
    from core.embedding_cache import default_cache
    from core.evaluation.job import start_retrieval_eval
    from core.evaluation.latency import LATENCY_DIR
    from core.runs.folders import load_run
    from core.runs.jobs import job_status

    if clear:
        default_cache().clear()
        shutil.rmtree(data_dir().joinpath(*LATENCY_DIR), ignore_errors=True)
    started = time.perf_counter()
    run = start_retrieval_eval(config)
    while not job_status(run).finished:
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    summary = load_run(run.id).manifest.summary
    rows.append(
        (label, seconds, summary.get("texts_encoded", -1), summary.get("texts_from_cache", 0))
    )
    print(f"  {label}: {seconds:.1f} s", flush=True)


def run(split: str | None) -> str:
    """Run the steps and return a markdown table."""
    from core.documents.stage import index_corpus_run, ingest_sample_corpus
    from core.embedding_cache import default_cache
    from core.embeddings import ModelSpec, load_model
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval
    from core.questions.sample import load_sample_qa

    model = load_model(ModelSpec(), device="cpu")
    rows: list[tuple[str, float, int, int]] = []
    corpus = ingest_sample_corpus()
    chunks = corpus.run.manifest.summary.get("n_chunks")
    _step(rows, "index the corpus run (cold)", lambda: index_corpus_run(corpus.run.id, model=model))
    again = ingest_sample_corpus()
    _step(
        rows,
        "index a second run of the same file",
        lambda: index_corpus_run(again.run.id, model=model),
    )
    qa = load_sample_qa(corpus.run.id)
    config = RetrievalEvalConfig(qa_run_id=qa.id, models=(ModelSpec(),), split=split)

    def evaluate() -> Any:
        return evaluate_retrieval(config, model_loader=lambda spec: model)

    _step(rows, "evaluate right after indexing", evaluate)
    _step(rows, "evaluate again, nothing changed", evaluate)
    os.environ[CACHE_ENV] = "0"
    _step(rows, "evaluate, cache off (cold)", evaluate)
    os.environ[CACHE_ENV] = "1"
    default_cache().clear()
    _step(rows, "evaluate, cache on and empty (cold)", evaluate)
    _job_step(rows, "as a background job, cold (cache and latency memo cleared)", config, True)
    _job_step(rows, "as a background job again, nothing changed", config, False)
    seconds = {label: s for label, s, _, _ in rows}
    off = seconds["evaluate, cache off (cold)"]
    cold = seconds["evaluate, cache on and empty (cold)"]
    warm = seconds["evaluate again, nothing changed"]
    job_cold = seconds["as a background job, cold (cache and latency memo cleared)"]
    job_warm = seconds["as a background job again, nothing changed"]
    lines = [
        f"Sample corpus: {chunks} chunks; {split or 'all'} split; all-MiniLM-L6-v2 on CPU.",
        "",
        "| step | seconds | texts encoded | texts from the cache |",
        "|---|---|---|---|",
        *(
            f"| {label} | {s:.1f} | {'-' if enc < 0 else enc} | {hit} |"
            for label, s, enc, hit in rows
        ),
        "",
        f"Re-run of an unchanged evaluation: {cold / warm:.1f}x faster than a cold one.",
        f"As background jobs (a new process each, as the page runs them): "
        f"{job_cold / job_warm:.1f}x ({job_warm:.1f} s vs {job_cold:.1f} s).",
        f"Cache overhead on a cold evaluation: {100 * (cold - off) / off:+.1f}% "
        f"({cold:.1f} s with the cache vs {off:.1f} s without).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", help="test (default), validation, train or all")
    args = parser.parse_args()
    apply_offline_env()
    os.environ[CACHE_ENV] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("RAGBENCH_DATA_DIR", tmp)
        print(run(None if args.split == "all" else args.split))


if __name__ == "__main__":
    main()
