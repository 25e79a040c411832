"""Fixtures of the bad-input suite: a saved baseline (a corpus run and a qa run) that every case
must leave exactly as it was."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.documents.corpus import load_chunks
from core.documents.stage import UploadedFile, build_corpus
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import Run, create_run
from tests.support.store_guard import StoreGuard

GOOD_TEXT = (
    "Debian packages are installed with dpkg and apt. The apt tool resolves dependencies and "
    "downloads packages from the mirrors listed in sources.list.\n\n"
    "A stable release is supported for about three years, and security updates are published "
    "for it by the security team."
)


@dataclass
class Baseline:
    """Runs saved before the bad input arrives, and the guard that checks they survive."""

    corpus: Run
    qa: Run
    guard: StoreGuard

    def intact(self) -> None:
        self.guard.check()


@pytest.fixture
def baseline(data_root) -> Baseline:
    """A finished corpus run (two text files) and a qa run on it, captured by a StoreGuard."""
    built = build_corpus(
        [
            UploadedFile("apt.txt", GOOD_TEXT.encode()),
            UploadedFile(
                "release.md", b"# Releases\n\nA new stable release comes every two years."
            ),
        ]
    )
    chunks = [c.id for c in load_chunks(built.run)]
    qa = create_run("qa", name="baseline questions", parents={"corpus": built.run.id})
    save_qa(
        qa,
        [
            QAItem(id="b1", question="Which tool resolves package dependencies?", chunk_id=chunks[0],
                   split="train", origin="manual"),
            QAItem(id="b2", question="How often is a new stable release made?", chunk_id=chunks[-1],
                   split="test", origin="manual"),
        ],
    )  # fmt: skip
    qa.set_status("done")
    return Baseline(built.run, qa, StoreGuard.capture())
