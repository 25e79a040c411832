"""A corpus of exactly the same files and settings is found, so it can be reused."""

from __future__ import annotations

from core.documents.chunking import ChunkingConfig
from core.documents.stage import UploadedFile, build_corpus, identical_corpus

A = UploadedFile("a.txt", ("Rainfall in deserts is rare and sudden. " * 40).encode())
B = UploadedFile("b.md", ("# Volcanoes\n\nMagma rises through the crust. " * 40).encode())


def test_the_same_files_in_the_same_order_match_and_anything_else_does_not():
    run = build_corpus([A, B], name="two files").run
    assert identical_corpus([A, B]).id == run.id
    # The order decides which copy of a duplicate chunk stays; a name how a file is parsed.
    assert identical_corpus([B, A]) is None
    assert identical_corpus([UploadedFile("a.md", A.data), B]) is None
    assert identical_corpus([A]) is None
    assert identical_corpus([A, UploadedFile("b.md", B.data + b" More.")]) is None
    assert identical_corpus([A, B], ChunkingConfig(chunk_size=500, chunk_overlap=50)) is None
    assert identical_corpus([A, B], max_bytes=1024) is None


def test_runs_made_before_fingerprints_are_never_matched():
    run = build_corpus([A, B]).run
    config = dict(run.manifest.config)
    config.pop("files")
    run.manifest.config = config
    run.save()
    assert identical_corpus([A, B]) is None


def test_the_newest_finished_run_is_offered_and_failed_runs_are_not():
    old = build_corpus([A, B]).run
    new = build_corpus([A, B]).run
    assert identical_corpus([A, B]).id == new.id
    new.set_status("failed")
    assert identical_corpus([A, B]).id == old.id
