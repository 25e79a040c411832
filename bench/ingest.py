"""Parse + chunk throughput (pages per second) on the sample PDF, printed as a table.

    .venv/bin/python -m bench.ingest                 # the 73-page sample, best of 3
    .venv/bin/python -m bench.ingest --big           # also a 730-page PDF (the sample x10)
    .venv/bin/python -m bench.ingest --pdf a.pdf     # also your own PDFs
    .venv/bin/python -m bench.ingest --strategy token

Imports and the first (cold) run are excluded: figures are steady-state, one process, one core
for pymupdf (it is single-threaded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from core.documents.chunking import STRATEGIES, ChunkingConfig, chunk_documents
from core.documents.parsing import count_pages, parse_file
from core.documents.stage import SAMPLE_PDF


def repeat_pdf(data: bytes, times: int) -> bytes:
    """A PDF made of `times` copies of `data` (a bigger input without downloading anything)."""
    import pymupdf

    src = pymupdf.open(stream=data, filetype="pdf")
    out = pymupdf.open()
    for _ in range(times):
        out.insert_pdf(src)
    return out.tobytes()


def measure(name: str, data: bytes, config: ChunkingConfig, repeat: int) -> dict[str, object]:
    """Best-of-`repeat` seconds for parsing and chunking one file."""
    pages = count_pages(name, data)
    parse_times, chunk_times = [], []
    doc = result = None
    for _ in range(repeat):
        start = time.perf_counter()
        doc = parse_file(name, data, max_bytes=1 << 40)
        parsed = time.perf_counter()
        result = chunk_documents([doc], config)
        done = time.perf_counter()
        parse_times.append(parsed - start)
        chunk_times.append(done - parsed)
    assert doc is not None and result is not None
    parse_s, chunk_s = min(parse_times), min(chunk_times)
    total = parse_s + chunk_s
    return {
        "file": name,
        "pages": pages,
        "chars": doc.n_chars,
        "chunks": len(result.chunks),
        "dupes": result.duplicates_removed,
        "parse s": f"{parse_s:.3f}",
        "chunk s": f"{chunk_s:.3f}",
        "total s": f"{total:.3f}",
        "pages/s": f"{pages / total:.0f}",
        "median total s": f"{statistics.median(p + c for p, c in zip(parse_times, chunk_times, strict=True)):.3f}",
    }


def print_table(rows: list[dict[str, object]]) -> None:
    headers = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(headers, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per file; the best counts")
    parser.add_argument("--big", action="store_true", help="also a 730-page PDF (sample x10)")
    parser.add_argument("--pdf", type=Path, action="append", default=[], help="extra PDF files")
    parser.add_argument("--strategy", choices=STRATEGIES, default="recursive")
    args = parser.parse_args()

    config = ChunkingConfig.for_strategy(args.strategy)
    sample = SAMPLE_PDF.read_bytes()
    inputs = [(SAMPLE_PDF.name, sample)]
    if args.big:
        inputs.append(("debian-faq x10 (generated)", repeat_pdf(sample, 10)))
    inputs += [(p.name, p.read_bytes()) for p in args.pdf]

    measure(SAMPLE_PDF.name, sample, config, 1)  # warm-up: imports, tokenizer, caches
    rows = [measure(name, data, config, args.repeat) for name, data in inputs]
    print(
        f"parse + chunk ({config.strategy}, size {config.chunk_size}, overlap "
        f"{config.chunk_overlap} {config.unit}); {os.cpu_count()} CPU cores; best of {args.repeat}"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
