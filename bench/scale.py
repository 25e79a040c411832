"""Every stage at real sizes: about 10,000 and 100,000 chunks, with a question set at each.

    .venv/bin/python -m bench.scale                    # both sizes (see below for the vectors)
    .venv/bin/python -m bench.scale --sizes 10k        # one size
    .venv/bin/python -m bench.scale --encode           # encode every chunk missing from the cache

Corpora (bench.scale_corpus): 10k is the R manuals and Octave's manual from Debian (10,176
chunks, all real); 100k adds gnuplot's, LilyPond's and Why3's manuals (17,427 real chunks) and
generated Markdown for the rest. Questions: pairs from the documents (headings and cloze
sentences, no LLM), split 45 / 15 / 40 by chunk so the test split holds about 3,000 questions;
cloze sentences from every chunk at 10k and from 10,000 chunks drawn with the seed at 100k, so
the question set stays that size. Heading pairs only with `--headings`: on the 10k corpus they
ran over 30 minutes without finishing (the README says where the time goes). Near-duplicate
tying is off (it would encode every pair).

Per stage and size it prints wall time, CPU time, peak resident memory (and its growth over the
stage) and items per second: parse, chunk, the pairs (headings, cloze, specificity, the gate,
splitting, the leak check, saving), indexing (raw encoding against indexing on the same chunks,
then the whole corpus into Chroma from the embedding cache), every step of the evaluation (as
its progress line names them), the HTML report, and the Retrieval eval and Runs pages rendered
with AppTest.

Encoding: the evaluation reads the corpus's vectors from the embedding cache (bench/out/scale/
data/cache, kept between runs). Chunks the cache lacks are encoded with MiniLM when `--encode`
is given; otherwise they get stand-in vectors (random unit vectors seeded by the text), written
to this benchmark's own cache only, and the output says how many: the timings of everything
after encoding depend on the sizes, not on the values, but the metrics of stand-ins mean
nothing. On the 2-core machine MiniLM encodes 10 to 30 chunks a second, so 100,000 chunks take
one to three hours.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.scale_corpus import OUT, TARGETS, WordLaw, generated_documents, real_files
from bench.scale_meter import Meter

DATA = OUT / "data"
STAND_INS = DATA / "cache" / "stand-ins.txt"  # digests of the chunks given stand-in vectors
SPLIT = {"train": 0.45, "validation": 0.15, "test": 0.4}
CLOZE_CHUNKS_100K = 10_000
INDEX_SAMPLE = ("R-FAQ.pdf", "R-data.pdf", "R-lang.pdf")  # 427 chunks: raw vs indexing rate


def files_for(size: str) -> list[Any]:
    """The uploaded files of one size: the real PDFs, then generated text up to the target."""
    from core.documents.chunking import ChunkingConfig, chunk_documents
    from core.documents.stage import UploadedFile, parse_files

    real = [UploadedFile(p.name, p.read_bytes()) for p in real_files(size)]
    if size == "10k":
        return real
    docs, _ = parse_files(real)
    chunks = chunk_documents(docs, ChunkingConfig()).chunks
    law = WordLaw.of([c.text for c in chunks])
    extra = generated_documents(TARGETS[size] - len(chunks), law, seed=0)
    return real + [UploadedFile(name, data) for name, data in extra]


def build_corpus_run(size: str, meter: Meter) -> str:
    from core.documents.stage import build_corpus

    files = files_for(size)
    clock = meter.steps(size, "")
    result = build_corpus(files, name=f"scale {size}", on_progress=clock)
    clock.close()
    for row in meter.rows[-2:]:
        row.items, row.unit = (
            (result.n_chunks, "chunks") if row.stage == "chunking" else (len(files), "files")
        )
    return result.run.id


def make_pairs(size: str, corpus_id: str, meter: Meter, headings: bool) -> str:
    """Pairs from the documents, each part timed by wrapping the functions the stage calls."""
    from core.questions import from_documents as fd
    from core.questions.splits import SplitConfig

    parts = {
        "_heading_pairs": "pairs: headings",
        "cloze_items": "pairs: cloze sentences",
        "reject_unspecific": "pairs: specificity",
        "apply_gate": "pairs: gate",
        "assign_splits": "pairs: splitting",
        "check_no_leak": "pairs: leak check",
        "save_document_pairs": "pairs: saving",
    }
    originals = {name: getattr(fd, name) for name in parts}

    def timed(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            items = args[0] if args and isinstance(args[0], list) else None
            with meter.measure(size, parts[name], len(items) if items else None, "items"):
                return originals[name](*args, **kwargs)

        return call

    config = fd.DocumentPairsConfig(
        headings=headings,
        max_chunks=0 if size == "10k" else CLOZE_CHUNKS_100K,
        split=SplitConfig(**SPLIT),
    )
    try:
        for name in parts:
            setattr(fd, name, timed(name))
        with meter.measure(size, "pairs from the documents (all parts)") as row:
            preview = fd.preview_document_pairs(corpus_id, config)
            run = fd.save_document_pairs(preview)
            row.items, row.unit = len(preview.items), "pairs"
    finally:
        for name, fn in originals.items():
            setattr(fd, name, fn)
    counts = preview.splits()
    print(f"{size}: pairs {preview.n_accepted:,} accepted of {len(preview.items):,}; {counts}")
    return run.id


def fill_vectors(size: str, corpus_id: str, model: Any, encode: bool) -> str:
    """Make sure the cache holds a vector for every chunk; returns what the output says."""
    from core.documents.corpus import load_chunks
    from core.embedding_cache import default_cache, model_key, text_key
    from core.embeddings import document_prompt, encode_texts

    texts = [c.text for c in load_chunks(corpus_id)]
    store, key = default_cache(), model_key(model, document_prompt(model))
    digests = [text_key(t) for t in texts]
    have = store.get(key, digests)
    stood_in = set(STAND_INS.read_text().split()) if STAND_INS.exists() else set()
    missing = [
        (d, t) for d, t in zip(digests, texts, strict=True) if d not in have or d.hex() in stood_in
    ]
    if not missing:
        return f"all {len(texts):,} chunk vectors from MiniLM, read from the embedding cache"
    if encode:
        # past the cache (it may hold stand-ins); the newer shard wins when the cache is read
        texts_todo = [t for _, t in missing]
        vectors = encode_texts(model, texts_todo, prompt=document_prompt(model), cache=None)
        store.put(key, [d for d, _ in missing], vectors, {"model": "MiniLM"})
        STAND_INS.write_text("\n".join(stood_in - {d.hex() for d, _ in missing}))
        return f"{len(missing):,} chunks encoded into the cache first (not timed here)"
    width = model.get_embedding_dimension()
    vectors = np.stack(
        [
            np.random.default_rng(int.from_bytes(d[:8], "little")).normal(size=width)
            for d, _ in missing
        ]
    ).astype(np.float32)
    meta = {"model": "stand-in", "prompt": "", "dim": width}
    for start in range(0, len(missing), 8192):
        part = missing[start : start + 8192]
        store.put(key, [d for d, _ in part], vectors[start : start + len(part)], meta)
    STAND_INS.write_text("\n".join(stood_in | {d.hex() for d, _ in missing}))
    return (
        f"{len(texts) - len(missing):,} chunk vectors from MiniLM and {len(missing):,} STAND-INS "
        "(random unit vectors: timings hold, metrics do not)"
    )


def index_rates(meter: Meter, model: Any) -> None:
    """Raw encoding against indexing into Chroma, on the same chunks, embedding cache off."""
    from core.documents.corpus import load_chunks
    from core.documents.stage import UploadedFile, build_corpus, index_corpus_run
    from core.embedding_cache import CACHE_ENV
    from core.embeddings import ModelSpec

    pdfs = [p for p in real_files("10k") if p.name in INDEX_SAMPLE]
    corpus = build_corpus([UploadedFile(p.name, p.read_bytes()) for p in pdfs], name="index")
    texts = [c.text for c in load_chunks(corpus.run.id)]
    os.environ[CACHE_ENV] = "0"
    try:
        model.encode(texts[:32], batch_size=32)  # warm-up
        with meter.measure("10k", "raw encoding (model.encode)", len(texts), "chunks") as raw:
            model.encode(texts, batch_size=32, show_progress_bar=False)
        with meter.measure("10k", "indexing into Chroma", len(texts), "chunks") as indexed:
            index_corpus_run(corpus.run.id, ModelSpec(), model=model)
    finally:
        os.environ.pop(CACHE_ENV, None)
    indexed.note = (
        f"{raw.wall_s / indexed.wall_s:.0%} of the raw rate by wall time, "
        f"{raw.cpu_s / indexed.cpu_s:.0%} by CPU time (same chunks, embedding cache off)"
    )


def evaluate(size: str, qa_id: str, meter: Meter, note: str) -> str:
    from core.embeddings import ModelSpec
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval

    config = RetrievalEvalConfig(
        qa_run_id=qa_id, models=(ModelSpec(),), include_bm25=True, hybrid=True, device="cpu"
    )
    clock = meter.steps(size, "eval: ")
    with meter.measure(size, "evaluation (all steps)", unit="questions", note=note) as row:
        result = evaluate_retrieval(config, on_progress=clock)
        clock.close()
        row.items = result.n_queries
    encoding = sum(
        r.wall_s for r in meter.rows if r.size == size and r.stage.startswith("eval: ")
        and "encoding" in r.stage
    )  # fmt: skip
    row.note += f"; without encoding {row.wall_s - encoding:.1f} s"
    return result.run_id


def report_and_pages(size: str, eval_id: str, meter: Meter) -> None:
    from bench.page_render import render, write_wrapper
    from core.report.export import build_report, report_zip

    with meter.measure(size, "HTML report") as row:
        report = build_report([eval_id])
        archive = report_zip(report)
    row.note = f"HTML {len(report.html) / 1e6:.1f} MB, zip {len(archive) / 1e6:.1f} MB"
    wrapper = write_wrapper(OUT)
    render(wrapper, "home.py")  # pays the imports once
    for page in ("retrieval_eval.py", "runs.py"):
        with meter.measure(size, f"page {page} (AppTest, cold)") as row:
            got = render(wrapper, page, repeat=1, timeout_s=600)
        row.note = f"warm rerun {got['warm s']:.1f} s" + (
            f"; error: {got['error']}" if got["error"] else ""
        )


def run_size(size: str, meter: Meter, model: Any, args: argparse.Namespace) -> None:
    corpus_id = build_corpus_run(size, meter)
    qa_id = make_pairs(size, corpus_id, meter, args.headings)
    note = fill_vectors(size, corpus_id, model, args.encode)
    print(f"{size}: {note}", flush=True)
    if size == "10k" and "index" not in args.skip:
        index_rates(meter, model)
    if "index" not in args.skip:
        from core.documents.stage import index_corpus_run
        from core.embeddings import ModelSpec

        with meter.measure(size, "indexing from the cache", unit="chunks") as row:
            report = index_corpus_run(corpus_id, ModelSpec(), model=model)
            row.items = report.n_added
        row.note = "Chroma adds only: every vector read from the embedding cache"
    eval_id = evaluate(size, qa_id, meter, note)
    report_and_pages(size, eval_id, meter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k", help="10k, 100k or both")
    parser.add_argument("--encode", action="store_true", help="encode chunks the cache lacks")
    parser.add_argument("--skip", default="", help="comma-separated: index")
    parser.add_argument(
        "--headings", action="store_true", help="heading pairs too (slow: see the README)"
    )
    parser.add_argument(
        "--eval-only",
        metavar="QA_RUN",
        help="only the evaluation, of this qa run of the last run's data (e.g. with older code)",
    )
    args = parser.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    if not args.eval_only:
        for sub in ("runs", "chroma", "cache/models"):  # the vectors in cache/embeddings stay
            shutil.rmtree(DATA / sub, ignore_errors=True)
    os.environ["RAGBENCH_DATA_DIR"] = str(DATA)
    from bench.__main__ import machine_info
    from core.config import apply_offline_env
    from core.embeddings import ModelSpec, load_model

    apply_offline_env()
    print("machine:", machine_info(), flush=True)
    started = time.perf_counter()
    meter = Meter()
    model = load_model(ModelSpec(), device="cpu")
    for size in args.sizes.split(","):
        if args.eval_only:
            evaluate(size, args.eval_only, meter, "evaluation only")
            continue
        run_size(size, meter, model, args)
    meter.sampler.close()
    print(f"\n{meter.table()}\n")
    print(
        f"load average at the end: {os.getloadavg()}; total {time.perf_counter() - started:.0f} s"
    )
    (OUT / "latest.md").write_text(meter.table() + "\n", encoding="utf-8")
    print(f"table saved to {Path(OUT / 'latest.md').relative_to(Path.cwd())}")


if __name__ == "__main__":
    main()
