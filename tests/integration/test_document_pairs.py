"""Pairs from the documents, end to end on real files: a corpus built by the Documents stage from
a PDF, a Markdown and an HTML file; the gate; the split by chunk; alignment with a hand-written
set; the fine-tune's pairs and weights; and, on the real sample corpus, the numbers."""

from __future__ import annotations

from collections import Counter

import pytest

from core.documents.corpus import load_chunks
from core.documents.stage import UploadedFile, build_corpus, ingest_sample_corpus
from core.errors import ConfigError
from core.finetune.data import prepare_data
from core.questions.dataset import QAItem, load_qa
from core.questions.from_documents import (
    DocumentPairsConfig,
    make_document_pairs,
    preview_document_pairs,
)
from core.questions.leakage import EvidenceIndex, find_text_leaks
from core.questions.qa_runs import save_qa_run
from core.questions.sample import load_sample_qa
from core.questions.splits import SplitConfig
from core.runs.folders import load_run
from tests.support.documents import HTML, MARKDOWN, pdf_bytes


@pytest.fixture
def corpus():
    files = [
        UploadedFile("guide.pdf", pdf_bytes()),
        UploadedFile("guide.md", MARKDOWN.encode()),
        UploadedFile("guide.html", HTML.encode()),
    ]
    return build_corpus(files, name="guides").run


def test_headings_and_cloze_from_pdf_markdown_and_html_through_the_gate(corpus):
    preview = preview_document_pairs(corpus.id, DocumentPairsConfig(split=SplitConfig(seed=1)))
    headings = [i for i in preview.items if i.source == "heading"]
    accepted = {(i.meta["file"], i.question) for i in headings if i.status == "accepted"}
    # The three files share three topics: the PDF's come first, the others are duplicates.
    assert accepted == {
        ("guide.pdf", "Installing the system"),
        ("guide.pdf", "Upgrading packages safely"),
        ("guide.pdf", "Choosing a mirror near you"),
    }
    reasons = Counter((i.meta["file"], i.reason) for i in headings if i.status == "rejected")
    assert reasons[("guide.pdf", "generic_heading")] == 1  # Introduction
    assert reasons[("guide.pdf", "numbers_only")] == 1  # 3.2
    assert reasons[("guide.md", "generic_heading")] == 1  # Contents
    assert reasons[("guide.md", "duplicate")] == 3 and reasons[("guide.html", "duplicate")] == 3
    introduction = next(i for i in headings if i.question == "Introduction")
    assert introduction.meta["reason_text"] == "'Introduction' names no topic"
    assert all(i.meta.get("reason_text") for i in headings if i.status == "rejected")
    chunks = {c.id: c.text for c in load_chunks(corpus.id)}
    for item in (i for i in headings if i.status == "accepted"):
        assert item.question not in (item.positive or chunks[item.chunk_id])
        assert item.evidence and item.evidence in " ".join(chunks[item.chunk_id].split())
    cloze = [i for i in preview.items if i.source == "cloze" and i.status == "accepted"]
    assert cloze and all(i.question not in i.positive for i in cloze)
    assert {s["source"] for s in preview.sources()} == {"heading", "cloze"}
    assert find_text_leaks(preview.items, chunks) == []


def test_saved_pairs_train_with_their_own_positives_and_the_source_weights(corpus):
    run = make_document_pairs(
        corpus.id, DocumentPairsConfig(split=SplitConfig(0.8, 0.1, 0.1, seed=3))
    )
    assert run.manifest.config["source"] == "documents"
    items = load_qa(run, split="train")
    data = prepare_data(run.id)
    by_anchor = {i.question: i for i in items}
    chunks = {c.id: c.text for c in load_chunks(corpus.id)}
    assert data.n_train == len(items)
    for anchor, positive in zip(data.anchors, data.positives, strict=True):
        item = by_anchor[anchor]
        # The chunk without its sentence or heading; a heading whose section starts a chunk of
        # its own leaves the chunk whole.
        assert positive == (item.positive or chunks[item.chunk_id])
        assert anchor not in positive
    assert any(by_anchor[a].source == "cloze" for a in data.anchors)
    only_headings = prepare_data(run.id, {"cloze": 0}, seed=3)
    assert {by_anchor[a].source for a in only_headings.anchors} == {"heading"}
    assert only_headings.sources["cloze"] == {
        "available": sum(i.source == "cloze" for i in items),
        "used": 0,
    }


def _human_set(corpus_id: str) -> str:
    """Hand-written questions on the PDF's chunks, one per section, dealt into three splits."""
    chunks = [c for c in load_chunks(corpus_id) if c.source == "guide.pdf"]
    index = EvidenceIndex.of(chunks)
    questions = [
        ("How do I start the installer?", "The installer boots from a USB stick"),
        ("What does the package manager track?", "keeps a database of installed files"),
        ("Why use a nearby mirror?", "A mirror close to you answers faster"),
        ("Installing the system", "answers faster and costs less"),  # a heading's text
    ]
    items = []
    for n, ((question, quote), split) in enumerate(
        zip(questions, ["test", "validation", "train", "train"], strict=True)
    ):
        match = index.match(quote)
        items.append(
            QAItem(
                id=f"h{n}",
                question=question,
                chunk_id=str(match.primary),
                gold_chunk_ids=match.gold_ids,
                linked_chunk_ids=match.linked_ids,
                evidence=quote,
                split=split,  # type: ignore[arg-type]
                origin="imported",
            )
        )
    return save_qa_run(items, corpus_id, name="hand-written").id


def test_aligned_pairs_never_train_on_the_chunks_the_hand_written_set_holds_out(corpus):
    human_id = _human_set(corpus.id)
    human = load_qa(human_id)
    held = {c: i.split for i in human if i.split != "train" for c in i.split_chunk_ids}
    preview = preview_document_pairs(corpus.id, DocumentPairsConfig(align_with=human_id))
    accepted = [i for i in preview.items if i.status == "accepted"]
    for item in accepted:
        touched = {held[c] for c in item.split_chunk_ids if c in held}
        assert touched <= {item.split}, (item.question, touched, item.split)
    assert any(i.split == "test" for i in accepted)  # some pairs sit on the test chunk
    twin = next(i for i in preview.items if i.question == "Installing the system")
    assert twin.status == "rejected" and twin.reason == "duplicate"
    assert "aligned set" in twin.meta["reason_text"]
    # Copying the hand-written questions in keeps their splits.
    merged = preview_document_pairs(
        corpus.id, DocumentPairsConfig(align_with=human_id, include_aligned=True)
    )
    copied = {i.id: i.split for i in merged.items if i.source == "human"}
    assert copied == {i.id: i.split for i in human}
    run = make_document_pairs(
        corpus.id, DocumentPairsConfig(align_with=human_id, include_aligned=True)
    )
    assert load_run(run.id).manifest.parents["aligned"] == human_id
    data = prepare_data(run.id, {"human": 2, "heading": 1, "cloze": 0})
    assert data.sources["human"]["used"] == 2 * data.sources["human"]["available"]


def test_aligning_with_a_set_of_another_corpus_is_refused(corpus):
    other = build_corpus([UploadedFile("other.md", MARKDOWN.encode())], name="other").run
    human_id = _human_set(corpus.id)
    with pytest.raises(ConfigError, match="cannot be aligned") as info:
        preview_document_pairs(other.id, DocumentPairsConfig(align_with=human_id))
    assert "pick a question set made on this corpus run" in str(info.value)


def test_a_corpus_without_original_files_gives_cloze_pairs_and_says_why(corpus):
    import pandas as pd

    from core.questions.columns import ColumnMapping
    from core.questions.importing import import_qa

    frame = pd.DataFrame(
        {
            "question": ["What does the installer do first?"],
            "context": [
                "The installer boots from a USB stick and asks for a mirror, then partitions the disk for you."
            ],
        }
    )
    result = import_qa("pairs.csv", frame, ColumnMapping("question", "context"))
    preview = preview_document_pairs(result.corpus_run_id)
    assert {i.source for i in preview.items} == {"cloze"}
    assert "no original files" in preview.notes[0]


@pytest.mark.slow
def test_the_sample_corpus_gives_heading_and_cloze_pairs_aligned_with_the_sample_set():
    """Measured on the Debian FAQ: the outline's 165 headings and one sentence per chunk."""
    corpus = ingest_sample_corpus().run
    human = load_sample_qa(corpus.id)
    preview = preview_document_pairs(corpus.id, DocumentPairsConfig(align_with=human.id))
    sources = {s["source"]: s for s in preview.sources()}
    assert sources["heading"]["accepted"] + sources["heading"]["rejected"] == 165
    # 136 measured: a heading whose section runs on into the next chunk points at both, and
    # 11 such pairs touch two of the hand-written set's splits (rejected as spans_splits).
    assert sources["heading"]["accepted"] >= 130 and sources["cloze"]["accepted"] >= 120
    chunks = {c.id: c.text for c in load_chunks(corpus.id)}
    held = {c for i in load_qa(human) if i.split != "train" for c in i.split_chunk_ids}
    trained = [i for i in preview.items if i.status == "accepted" and i.split == "train"]
    assert trained and not any(set(i.split_chunk_ids) & held for i in trained)
    assert (
        find_text_leaks([*load_qa(human), *trained], chunks) == []
    )  # no held-out hand-written quote inside a training positive


def _model_trained_on(qa_id: str, name: str, weights: dict[str, float] | None = None) -> str:
    """A finished model run's record (its weights are the packaged MiniLM, loaded by the test)."""
    from core.runs.folders import create_run

    run = create_run(
        "model",
        name=name,
        config={"qa_run_id": qa_id, "source_weights": weights or {}, "seed": 42},
        parents={"qa": qa_id},
    )
    run.set_status("done")
    return run.id


def _evaluate(qa_id: str, model_id: str, minilm, split: str | None):
    from core.embeddings import ModelSpec
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval

    config = RetrievalEvalConfig(
        qa_run_id=qa_id,
        models=(ModelSpec(), ModelSpec("run", model_id)),
        dims=(384,),
        split=split,  # type: ignore[arg-type]
        frontier=False,
        chroma_check=False,
        similarity_csv=None,
        n_resamples=200,
        n_permutations=200,
    )
    return evaluate_retrieval(config, model_loader=lambda spec: minilm)


def test_a_model_trained_on_pairs_is_evaluated_on_the_hand_written_set_and_says_what_it_saw(
    corpus, minilm
):
    human_id = _human_set(corpus.id)
    aligned = make_document_pairs(corpus.id, DocumentPairsConfig(align_with=human_id))
    model_id = _model_trained_on(aligned.id, "docs model", {"cloze": 0.5})
    result = _evaluate(human_id, model_id, minilm, "test")
    (row,) = result.training_rows()
    assert row["model"] == "docs model" and row["trained on"] == aligned.manifest.name
    # The train split of this small aligned set holds three cloze pairs; weight 0.5 keeps two.
    assert row["training pairs"] == "cloze 2 of 3 training pairs"
    assert (row["questions it trained on"], row["questions on its training chunks"]) == (0, 0)
    assert any(
        "none of the 1 evaluated questions" in w and "held-out" in w for w in result.warnings
    )
    # Not aligned and evaluated on every hand-written question: it trained on their chunks.
    own = make_document_pairs(corpus.id, DocumentPairsConfig(split=SplitConfig(1.0, 0.0, 0.0)))
    result = _evaluate(human_id, _model_trained_on(own.id, "own-split model"), minilm, None)
    (row,) = result.training_rows()
    assert row["evaluated questions"] == 4 and row["questions on its training chunks"] > 0
    note = next(w for w in result.warnings if w.startswith("own-split model was trained on"))
    assert "not a held-out result" in note and "another question set" in note
