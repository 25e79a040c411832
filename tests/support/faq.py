"""Small runs from the hand-written sample set: a corpus whose chunks are its evidence quotes,
and question sets over it (every question in one split), for page tests."""

from __future__ import annotations

import json

from core.config import SAMPLE_DIR
from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import Run, create_run


def faq_items(n: int) -> list[dict]:
    """The first `n` rows of the sample set (question, evidence, answer)."""
    lines = (SAMPLE_DIR / "qa_sample.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()][:n]


def faq_corpus(name: str, items: list[dict]) -> Run:
    """A finished corpus run whose chunks are the items' evidence quotes."""
    corpus = create_run("corpus", name=name)
    save_chunks(
        corpus, [Chunk(chunk_id_for(i["evidence"]), i["evidence"], "faq.pdf") for i in items]
    )
    corpus.set_status("done")
    return corpus


def faq_qa(corpus: Run, name: str, items: list[dict], split: str = "test") -> Run:
    """A finished qa run of `items` on `corpus`, every question in `split`."""
    qa = create_run("qa", name=name, parents={"corpus": corpus.id})
    save_qa(
        qa,
        [
            QAItem(
                id=i["id"],
                question=i["question"],
                chunk_id=chunk_id_for(i["evidence"]),
                split=split,
            )
            for i in items
        ],
    )
    qa.set_status("done")
    return qa
