"""Per-dimension retrieval evaluation: ours vs sentence-transformers' SequentialEvaluator.

    .venv/bin/python -m bench.eval_speed              # FAQ chapters 1-3 (quick), 5 dims
    .venv/bin/python -m bench.eval_speed --full       # the whole 73-page FAQ
    .venv/bin/python -m bench.eval_speed --device cuda

Data: the sample PDF (pymupdf text, whitespace collapsed) cut into ~80-word chunks with 20 words
of overlap; queries are the hand-written questions of data/sample/qa_sample.jsonl whose evidence
quote lies inside a chunk (the first such chunk is the gold one). Both sides use the same loaded
model, batch size and data; the model is warmed up first. Ours encodes corpus and queries once
and derives every dimension by truncation + renormalisation; sentence-transformers' evaluator
re-encodes both for every dimension (truncate_dim). Prints both times, the speed-up and whether
every metric is identical (to 1e-9).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

import numpy as np

from core.config import SAMPLE_DIR, apply_offline_env
from core.documents.corpus import chunk_id_for
from core.embedding_cache import CACHE_ENV
from core.evaluation.metrics import metric_names, st_metric_key

DIMS = (384, 256, 128, 64, 32)
QUICK_PAGES = range(9, 21)  # 1-based PDF pages of chapters 1-3


def build_data(
    full: bool, words: int = 80, overlap: int = 20
) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Chunks {id: text} from the sample PDF and queries [(id, question, gold chunk id)]."""
    import pymupdf

    doc = pymupdf.open(SAMPLE_DIR / "debian-faq.en.pdf")
    pages = range(1, doc.page_count + 1) if full else QUICK_PAGES
    chunks: dict[str, str] = {}
    per_page: dict[int, list[str]] = {}
    for number in pages:
        tokens = re.sub(r"\s+", " ", doc[number - 1].get_text()).split()
        for start in range(0, max(1, len(tokens) - overlap), words - overlap):
            text = " ".join(tokens[start : start + words])
            if text:
                cid = chunk_id_for(text)
                chunks.setdefault(cid, text)
                per_page.setdefault(number, []).append(cid)
    queries = []
    for line in (SAMPLE_DIR / "qa_sample.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        for cid in per_page.get(item["page"], []):
            if item["evidence"] in chunks[cid]:
                queries.append((item["id"], item["question"], cid))
                break
    return chunks, queries


def run_ours(model, chunks: dict[str, str], queries, dims) -> dict[int, dict[str, float]]:  # noqa: ANN001
    from core.evaluation.scoring import encode_corpus_and_queries, score_dims
    from core.evaluation.search import id_tie_ranks

    ids = list(chunks)
    index_of = {cid: i for i, cid in enumerate(ids)}
    corpus, query = encode_corpus_and_queries(
        model, [chunks[c] for c in ids], [q for _, q, _ in queries]
    )
    scored = score_dims(
        corpus,
        query,
        [[index_of[g]] for _, _, g in queries],
        dims,
        id_tie_ranks(ids),
        measure_latency=False,
    )
    return {s.dim: {m: float(np.mean(v)) for m, v in s.per_query.items()} for s in scored}


def run_st(model, chunks: dict[str, str], queries, dims) -> dict[int, dict[str, float]]:  # noqa: ANN001
    from sentence_transformers.base.evaluation import SequentialEvaluator
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    evaluator = SequentialEvaluator(
        [
            InformationRetrievalEvaluator(
                queries={qid: q for qid, q, _ in queries},
                corpus=chunks,
                relevant_docs={qid: {g} for qid, _, g in queries},
                truncate_dim=dim,
                name=f"dim_{dim}",
                write_csv=False,
                batch_size=32,
            )
            for dim in dims
        ]
    )
    flat = evaluator(model)
    return {
        dim: {m: float(flat[f"dim_{dim}_cosine_{st_metric_key(m)}"]) for m in metric_names()}
        for dim in dims
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole PDF instead of chapters 1-3")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--repeat", type=int, default=1, help="best of N timings per side")
    args = parser.parse_args()
    apply_offline_env()
    os.environ[CACHE_ENV] = "0"  # time the encoding, not the embedding cache

    from core.embeddings import ModelSpec, load_model, native_dim

    chunks, queries = build_data(args.full)
    model = load_model(ModelSpec(), device=args.device)
    dims = tuple(d for d in DIMS if d <= native_dim(model))
    model.encode(list(chunks.values())[:64], batch_size=32)  # warm-up: kernels, caches

    # Wall time, and CPU time of this process: on a shared machine the CPU seconds are the
    # steadier figure (other processes stretch wall time, not our CPU time).
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    results = {}
    for name, fn in (("ours", run_ours), ("sentence-transformers", run_st)):
        timings[name] = cpu[name] = float("inf")
        for _ in range(max(1, args.repeat)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            results[name] = fn(model, chunks, queries, dims)
            timings[name] = min(timings[name], time.perf_counter() - wall0)
            cpu[name] = min(cpu[name], time.process_time() - cpu0)

    diffs = [
        abs(results["ours"][d][m] - results["sentence-transformers"][d][m])
        for d in dims
        for m in metric_names()
    ]
    max_diff = max(diffs)
    print(
        f"data: {len(chunks)} chunks, {len(queries)} queries, dims {list(dims)}, device {args.device}"
    )
    for name, label in (
        ("ours", "ours (encode once, truncate per dim)"),
        ("sentence-transformers", "sentence-transformers SequentialEvaluator"),
    ):
        print(f"{label:<44} wall {timings[name]:8.2f} s   cpu {cpu[name]:8.2f} s")
    st_wall, st_cpu = timings["sentence-transformers"], cpu["sentence-transformers"]
    print(f"speed-up: {st_wall / timings['ours']:.2f}x wall, {st_cpu / cpu['ours']:.2f}x cpu")
    print(
        f"metrics identical to 1e-9: {max_diff <= 1e-9} (max |diff| {max_diff:.2e} over {len(diffs)} values)"
    )
    print(
        "ndcg@10 per dim: " + ", ".join(f"{d}: {results['ours'][d]['ndcg@10']:.4f}" for d in dims)
    )


if __name__ == "__main__":
    main()
