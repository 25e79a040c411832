"""A corpus of exactly the same files and settings is found, so it can be reused."""

from __future__ import annotations

import pytest

from core.documents.chunking import ChunkingConfig
from core.documents.stage import UploadedFile, add_documents, build_corpus, identical_corpus
from core.errors import InputError
from core.runs.folders import list_runs

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


def test_building_the_same_files_again_reuses_the_run_instead_of_a_copy():
    """Issue 26, item 4: the build itself, not only an offer beside it, makes no copy."""
    from core.documents.reuse import build_or_reuse

    first = build_or_reuse([A, B], name="two files")
    again = build_or_reuse([A, B], name="two files again")
    assert not first.reused and again.reused
    assert again.run.id == first.run.id and again.n_chunks == first.n_chunks
    assert [f.name for f in again.ok_files] == ["a.txt", "b.md"]
    assert len(list_runs("corpus")) == 1


def test_adding_files_the_corpus_already_holds_is_refused_and_makes_no_run():
    base = build_corpus([A, B]).run
    with pytest.raises(InputError) as caught:
        add_documents(base.id, [B, A])
    assert str(caught.value).startswith(
        f"Corpus run {base.id} already holds the 2 uploaded file(s). Found: b.md, a.txt."
    )
    assert len(list_runs("corpus")) == 1


def test_adding_a_mix_adds_only_the_new_file_and_twice_makes_no_copy():
    from core.documents.reuse import add_or_reuse

    base = build_corpus([A]).run
    added = add_or_reuse(base.id, [A, B])
    assert not added.reused and [f.name for f in added.ok_files] == ["a.txt", "b.md"]
    assert added.run.manifest.name.endswith("+ 1 file(s)")
    again = add_or_reuse(base.id, [B])
    assert again.reused and again.run.id == added.run.id
    assert len(list_runs("corpus")) == 2


def test_indexing_from_the_embedding_cache_does_not_say_it_embedded():
    """Issue 26: re-indexing from the cache said '248 chunk(s) embedded' when none was."""
    from core.documents.index_job import index_text

    summary = {"collection": "c", "n_added": 248, "n_encoded": 0, "n_from_cache": 248}
    assert index_text({**summary, "n_skipped": 0, "seconds": 1.2}) == (
        "Collection **c**: 248 chunks added (0 embedded, 248 from the embedding cache), "
        "0 already there (1.2 s)."
    )
    fresh = {"collection": "c", "n_added": 5, "n_encoded": 5, "n_skipped": 2, "seconds": 3}
    assert (
        index_text(fresh) == "Collection **c**: 5 chunks added (embedded), 2 already there (3.0 s)."
    )
    # Browser tour: '1 chunk(s) added'; the noun agrees with the number.
    one = {**fresh, "n_added": 1, "n_encoded": 1}
    assert index_text(one).startswith("Collection **c**: 1 chunk added (embedded)")
