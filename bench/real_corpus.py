"""Pairs from the documents on a real manual set, through the CLI as a user runs it: the R
manuals from Debian's `r-doc-pdf` (8 PDFs, about 3,100 pages, a 2,400-page reference manual full
of repeated phrases).

    .venv/bin/python -m bench.real_corpus            # fetches r-doc-pdf with apt-get if needed

Steps, each timed: `ragbench ingest PDFS --no-index` and `ragbench questions CORPUS
--from-documents` (near-duplicates tied with the packaged MiniLM). Prints pages, chunks, pairs
accepted and rejected by reason, each split's share of chunks asked against achieved, the largest
group the split dealt, and the most gold chunks of any accepted pair. The data directory and the
PDFs live in bench/out/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "real_corpus"
PACKAGE = "r-doc-pdf"
MANUALS = (
    "R-FAQ.pdf",
    "R-admin.pdf",
    "R-data.pdf",
    "R-exts.pdf",
    "R-intro.pdf",
    "R-ints.pdf",
    "R-lang.pdf",
    "refman.pdf",
)


def fetch_manuals() -> Path:
    """The 8 PDFs of r-doc-pdf in bench/out (downloaded with apt-get and unpacked once)."""
    pdfs = OUT / "pdfs"
    if all((pdfs / m).exists() for m in MANUALS):
        return pdfs
    deb_dir = OUT / "deb"
    deb_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", PACKAGE], cwd=deb_dir, check=True)
    deb = next(deb_dir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(deb_dir / "root")], check=True)
    source = deb_dir / "root" / "usr" / "share" / "R" / "doc" / "manual"
    pdfs.mkdir(parents=True, exist_ok=True)
    for name in MANUALS:
        shutil.copy(source / name, pdfs / name)
    return pdfs


def ragbench(*args: str, data: Path) -> tuple[dict, float]:
    """Run the CLI, return its last JSON line and the wall time."""
    env = {**os.environ, "RAGBENCH_DATA_DIR": str(data)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "core", "--quiet", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ragbench {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def gold_and_groups(qa_run: str, data: Path) -> tuple[int, int]:
    """The most gold chunks of an accepted pair, and the largest group the split dealt."""
    os.environ["RAGBENCH_DATA_DIR"] = str(data)
    from core.questions.dataset import load_qa
    from core.questions.qa_runs import read_dealing

    items = load_qa(qa_run)
    dealing = read_dealing(qa_run)
    return max(len(i.gold_ids) for i in items), dealing.largest_group if dealing else 0


def main() -> list[str]:
    from core.config import apply_offline_env

    apply_offline_env()
    pdfs = fetch_manuals()
    data = OUT / "data"
    shutil.rmtree(data, ignore_errors=True)
    paths = [str(pdfs / m) for m in MANUALS]
    ingest, t_ingest = ragbench("ingest", *paths, "--name", "R manuals", "--no-index", data=data)
    os.environ["RAGBENCH_DATA_DIR"] = str(data)
    from core.runs.folders import load_run

    corpus = load_run(ingest["corpus_run"])
    pages = corpus.manifest.summary.get("n_pages", "?")
    pairs, t_pairs = ragbench("questions", ingest["corpus_run"], "--from-documents", data=data)
    most_gold, largest = gold_and_groups(pairs["qa_run"], data)
    rejected = ", ".join(f"{k} {v:,}" for k, v in pairs["rejected_by_reason"].items())
    shares = " / ".join(f"{r['achieved']}" for r in pairs["shares"])
    lines = [
        "| step | result | time (s) |",
        "|---|---|---|",
        f"| `ragbench ingest` 8 PDFs `--no-index` | {pages:,} pages, {ingest['chunks']:,} chunks "
        f"| {t_ingest:.0f} |",
        f"| `ragbench questions --from-documents` | {pairs['n_items']:,} pairs, "
        f"{pairs['n_accepted']:,} accepted; rejected: {rejected} | {t_pairs:.0f} |",
        f"| splits by chunk | asked 70% / 15% / 15%, achieved {shares}; largest group "
        f"{largest:,} chunks; near-duplicate pairs tied {pairs['near_duplicates_tied']} | |",
        f"| gold chunks | at most {most_gold} for any accepted pair | |",
    ]
    for problem in pairs["dealing_problems"]:
        lines.append(f"\nwarning: {problem}")
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
