"""Import and export round-trips, the column mapping, leak checks on import, and the sample set
mapped onto a corpus run."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter

import pandas as pd
import pytest

from core.documents.corpus import Chunk, chunk_id_for, load_chunks, save_chunks
from core.errors import InputError
from core.questions.columns import ColumnMapping, guess_mapping, read_table
from core.questions.dataset import QAItem, load_qa
from core.questions.exporting import export_hf_dataset, export_hf_zip, export_qa
from core.questions.gate import GateConfig
from core.questions.importing import import_gate_config, import_qa, preview_import, save_import
from core.questions.leakage import find_text_leaks
from core.questions.qa_runs import read_dealing
from core.questions.sample import find_evidence_chunk, load_sample_qa
from core.questions.splits import SplitConfig, assign_splits
from core.runs.folders import create_run, list_runs, load_run

TEXTS = [
    "Debian archives are updated twice every day by the mirror network.",
    "The dpkg program installs a downloaded package file onto the system.",
    "APT resolves dependencies and fetches packages from configured sources.",
    "Stable releases receive security updates for about three years.",
    "The testing distribution holds packages waiting to enter the next release.",
]
QUESTIONS = [
    "How often are the Debian archives updated?",
    "Which program installs a downloaded package file?",
    "What does APT do with dependencies?",
    "How long do stable releases get security updates?",
    "What does the testing distribution contain?",
    "Where do packages wait before the next release?",
]


def make_corpus(texts: list[str] = TEXTS) -> tuple[str, list[Chunk]]:
    run = create_run("corpus", name="io corpus")
    chunks = [
        Chunk(id=chunk_id_for(t), text=t, source="doc.txt", doc_id="d", chunk_index=i)
        for i, t in enumerate(texts)
    ]
    save_chunks(run, chunks)
    run.set_status("done")
    return run.id, chunks


def make_items(chunks: list[Chunk]) -> list[QAItem]:
    items = [
        QAItem(
            id=f"q{i}",
            question=q,
            chunk_id=chunks[min(i, len(chunks) - 1)].id,
            reference_answer=f"Answer {i}" if i % 2 == 0 else None,
        )
        for i, q in enumerate(QUESTIONS)
    ]
    return assign_splits(items)


def essence(items: list[QAItem]) -> set[tuple]:
    return {(i.question, i.chunk_id, i.split, i.reference_answer) for i in items}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_then_import_round_trips_into_the_same_corpus(fmt):
    corpus_id, chunks = make_corpus()
    items = make_items(chunks)
    texts = {c.id: c.text for c in chunks}
    data = export_qa(items, texts, fmt)
    frame = read_table(f"pairs.{fmt}", data)
    assert list(frame.columns)[:3] == ["id", "anchor", "positive"]
    mapping = guess_mapping(list(frame.columns))
    assert mapping == ColumnMapping("anchor", "positive", "text", "reference_answer", "split")
    result = import_qa(f"pairs.{fmt}", frame, mapping, corpus_run_id=corpus_id)
    assert not result.new_corpus and result.corpus_run_id == corpus_id
    imported = load_qa(result.run)
    assert essence(imported) == essence(items)
    assert all(i.origin == "imported" for i in imported)
    assert result.run.manifest.parents == {"corpus": corpus_id}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_import_without_corpus_makes_one_from_the_contexts(fmt):
    _, chunks = make_corpus()
    items = make_items(chunks)
    data = export_qa(items, {c.id: c.text for c in chunks}, fmt)
    frame = read_table(f"pairs.{fmt}", data)
    result = import_qa(f"pairs.{fmt}", frame, guess_mapping(list(frame.columns)))
    assert result.new_corpus
    new_chunks = load_chunks(result.corpus_run_id)
    assert {c.id for c in new_chunks} == {i.chunk_id for i in items}  # content-hash ids
    assert essence(load_qa(result.run)) == essence(items)
    corpus = load_run(result.corpus_run_id)
    assert corpus.manifest.status == "done" and corpus.read_json("documents.json")[0]["chunks"] == 5


def test_chunk_id_mapping_and_unknown_ids():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {"query": ["How often are the Debian archives updated?"], "chunk_id": [chunks[0].id]}
    )
    mapping = guess_mapping(list(frame.columns))
    assert mapping == ColumnMapping("query", "chunk_id", "id", None, None)
    result = import_qa("ids.csv", frame, mapping, corpus_run_id=corpus_id)
    assert load_qa(result.run)[0].chunk_id == chunks[0].id
    with pytest.raises(InputError, match="need the corpus run they come from"):
        import_qa("ids.csv", frame, mapping)
    bad = pd.DataFrame({"query": ["What is this?"], "chunk_id": ["c_missing"]})
    with pytest.raises(InputError, match="1 row\\(s\\) have chunk ids that are not in corpus run"):
        import_qa("ids.csv", bad, mapping, corpus_run_id=corpus_id)


def test_texts_not_in_the_picked_corpus_are_refused():
    corpus_id, _ = make_corpus()
    frame = pd.DataFrame({"question": ["Is this here?"], "context": ["A context from elsewhere."]})
    with pytest.raises(InputError, match="chunk texts that are not in corpus run") as info:
        import_qa("x.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    assert "make a new corpus from them" in str(info.value)


def test_whitespace_differences_still_match_the_corpus():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {
            "question": ["How often are the archives updated?"],
            "context": ["  Debian archives are updated\ntwice every  day by the mirror network. "],
        }
    )
    result = import_qa("x.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    assert load_qa(result.run)[0].chunk_id == chunks[0].id


def test_a_leaking_split_column_fails_loudly_and_saves_nothing():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {
            "anchor": ["How often are the archives updated?", "Who updates the archives daily?"],
            "positive": [chunks[0].text, chunks[0].text],
            "split": ["train", "test"],
        }
    )
    from core.runs.folders import list_runs

    with pytest.raises(InputError, match="leaks between splits") as info:
        import_qa("leaky.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    assert f"{chunks[0].id} in test+train" in str(info.value)
    assert list_runs("qa") == []


def test_a_clean_split_column_is_kept_and_gaps_filled():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {
            "anchor": QUESTIONS[:3],
            "positive": [chunks[0].text, chunks[1].text, chunks[2].text],
            "split": ["test", "", "val"],
        }
    )
    result = import_qa("s.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    splits = [i.split for i in load_qa(result.run)]
    assert splits[0] == "test" and splits[2] == "validation" and splits[1] is not None


def test_import_can_run_the_gate_on_broken_datasets():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {
            "anchor": [
                "QUESTION #1\n",
                "...', additional_kwargs={}, response_metadata={})]",
                QUESTIONS[0],
            ],
            "positive": [chunks[0].text, chunks[1].text, chunks[0].text],
        }
    )
    result = import_qa(
        "broken.csv",
        frame,
        guess_mapping(frame.columns),
        corpus_run_id=corpus_id,
        gate_config=GateConfig(check_near_duplicates=False),
    )
    items = load_qa(result.run, accepted_only=False)
    assert [(i.status, i.reason) for i in items] == [
        ("rejected", "template_echo"),
        ("rejected", "message_repr"),
        ("accepted", ""),
    ]
    assert result.run.read_json("gate_report.json")["by_reason"] == {
        "template_echo": 1,
        "message_repr": 1,
    }


def test_blank_rows_are_skipped_and_counted():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {
            "question": [QUESTIONS[0], "", QUESTIONS[1]],
            "context": [chunks[0].text, chunks[1].text, ""],
        }
    )
    result = import_qa("b.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    assert result.n_items == 1 and result.skipped_rows == [2, 3]


def test_unknown_columns_and_files_are_refused():
    corpus_id, _ = make_corpus()
    frame = pd.DataFrame({"question": ["What?"], "context": [TEXTS[0]]})
    with pytest.raises(InputError, match="Column 'nope' is not in the file"):
        import_qa("x.csv", frame, ColumnMapping("nope", "context"), corpus_run_id=corpus_id)
    with pytest.raises(InputError, match="unknown file type .xlsx"):
        read_table("pairs.xlsx", b"whatever")
    with pytest.raises(InputError, match="Cannot read 'pairs.parquet' as PARQUET"):
        read_table("pairs.parquet", b"not parquet at all")
    with pytest.raises(InputError, match="has no rows"):
        read_table("empty.csv", b"question,context\n")


def test_guess_mapping_knows_common_names():
    assert guess_mapping(["user_input", "reference_context", "reference"]) == ColumnMapping(
        "user_input", "reference_context", "text", "reference", None
    )
    assert guess_mapping(["Question", "Context", "Answer"]) == ColumnMapping(
        "Question", "Context", "text", "Answer", None
    )
    assert guess_mapping(["a", "b"]) is None


def test_hf_datasets_folder_round_trips(tmp_path):
    from datasets import load_from_disk

    _, chunks = make_corpus()
    items = make_items(chunks)
    texts = {c.id: c.text for c in chunks}
    folder = export_hf_dataset(items, texts, tmp_path / "hf")
    loaded = load_from_disk(str(folder))
    assert set(loaded) <= {"train", "validation", "test"}
    assert sum(len(loaded[s]) for s in loaded) == len(items)
    row = loaded["train"][0]
    assert row["positive"] == texts[row["chunk_id"]]
    assert {"anchor", "positive", "id", "split", "reference_answer"} <= set(
        loaded["train"].column_names
    )
    back = {(r["anchor"], r["chunk_id"], r["split"]) for s in loaded for r in loaded[s]}
    assert back == {(i.question, i.chunk_id, i.split) for i in items}
    archive = zipfile.ZipFile(io.BytesIO(export_hf_zip(items, texts, "myset")))
    assert "myset/dataset_dict.json" in archive.namelist()


def test_jsonl_export_is_one_object_per_line():
    _, chunks = make_corpus()
    items = make_items(chunks)
    lines = export_qa(items, {c.id: c.text for c in chunks}, "jsonl").decode().splitlines()
    assert len(lines) == len(items)
    assert json.loads(lines[0])["anchor"] == items[0].question


# --------------------------------------------------------------------------- the sample set


def write_sample(tmp_path, rows: list[dict]) -> object:
    path = tmp_path / "qa_sample.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sample_questions_map_to_the_chunk_holding_their_quote(tmp_path):
    texts = [
        "Intro. Debian archives are updated\ntwice every day by the mirror network. More text.",
        "The dpkg program installs a downloaded package file onto the system. The quote starts "
        "here and runs",
        "on into the next chunk a little way. Stable releases receive security updates.",
    ]
    corpus_id, chunks = make_corpus(texts)
    rows = [
        {
            "id": "s001",
            "question": "How often are the archives updated?",
            "evidence": "Debian archives are updated twice every day",
            "page": 1,
            "reference_answer": "Twice a day.",
        },
        {
            "id": "s002",
            "question": "Where does the quote run?",
            "evidence": "The quote starts here and runs on into",
            "page": 2,
            "reference_answer": "Into the next chunk.",
        },
        {
            "id": "s003",
            "question": "Is this quote anywhere at all?",
            "evidence": "completely absent words that match nothing",
            "page": 3,
            "reference_answer": "No.",
        },
    ]
    run = load_sample_qa(corpus_id, path=write_sample(tmp_path, rows))
    items = {i.id: i for i in load_qa(run, accepted_only=False)}
    assert items["s001"].chunk_id == chunks[0].id and items["s001"].meta["match"] == "contained"
    assert items["s002"].chunk_id == chunks[1].id and items["s002"].meta["match"] == "overlap"
    assert (items["s003"].status, items["s003"].reason) == ("rejected", "evidence_not_found")
    assert items["s001"].origin == "sample" and items["s001"].reference_answer == "Twice a day."
    assert run.manifest.parents == {"corpus": corpus_id}
    assert run.manifest.summary["n_accepted"] == 2


def test_straddling_quote_picks_the_larger_overlap():
    a = Chunk(id="a", text="blah blah the quick brown", source="s")
    b = Chunk(id="b", text="fox jumps over the lazy dog today", source="s")
    assert find_evidence_chunk("the quick brown fox jumps over the lazy dog", [a, b]) == (
        "b",
        "overlap",
    )
    assert find_evidence_chunk("blah blah the quick brown fox jumps", [a, b]) == ("a", "overlap")


def test_sample_on_an_unrelated_corpus_fails_clearly(tmp_path):
    corpus_id, _ = make_corpus()
    with pytest.raises(InputError, match="pick the corpus built from the sample"):
        load_sample_qa(corpus_id)


@pytest.mark.slow
def test_real_sample_set_on_the_real_sample_corpus():
    """Built with core.documents.stage.ingest_sample_corpus (pymupdf + the default chunker)."""
    from core.documents.stage import ingest_sample_corpus

    corpus = ingest_sample_corpus()
    run = load_sample_qa(corpus.run.id)
    items = load_qa(run, accepted_only=False)
    assert len(items) >= 150
    unmatched = [i.id for i in items if i.status != "accepted"]
    assert unmatched == []
    chunks = {c.id: " ".join(c.text.split()) for c in load_chunks(corpus.run.id)}
    first = next(i for i in items if i.id == "s001")
    assert "The archives are updated twice every day." in chunks[first.chunk_id]
    assert all(
        " ".join(str(i.evidence).split()) in chunks[c]
        for i in items
        if i.meta["match"] == "contained"
        for c in i.gold_ids
    )
    assert {i.split for i in items} == {"train", "validation", "test"}
    # Chunks overlap by 150 characters: 6 of the 163 quotes sit whole in two chunks, and both
    # count as relevant; no held-out quote shares a run of words with a train chunk (s126's
    # quote is in a train chunk on the old split, and scored as a miss there).
    assert Counter(len(i.gold_ids) for i in items) == {1: 157, 2: 6}
    assert find_text_leaks(items, {c.id: c.text for c in load_chunks(corpus.run.id)}) == []
    s126 = next(i for i in items if i.id == "s126")
    assert len(s126.gold_ids) == 2 and run.manifest.summary["n_multi_gold"] == 6


# --------------------------------------------------------------------------- review findings


def test_questions_that_differ_by_a_meaningful_symbol_are_both_imported():
    """'... in C++?' is not a duplicate of '... in C?': they point at different passages, so the
    gate keeps both and the dealt split does not report a leak."""
    texts = ["C++ lets you define functions and classes.", "C lets you define functions."]
    frame = pd.DataFrame(
        {
            "question": [
                "Can I create my own functions in C++?",
                "Can I create my own functions in C?",
            ],
            "context": texts,
        }
    )
    for seed in range(8):  # whatever the chunks' splits, no "leak"
        result = import_qa(
            f"langs{seed}.csv",
            frame,
            guess_mapping(frame.columns),
            split_config=SplitConfig(train=0.5, validation=0.0, test=0.5, seed=seed),
            gate_config=import_gate_config(),
        )
        assert result.n_accepted == 2


def test_the_same_question_on_two_chunks_is_dealt_into_one_split():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame(
        {"question": ["What is in this passage?"] * 2, "context": [TEXTS[0], TEXTS[1]]}
    )
    for seed in range(8):  # half train, half test: two lone chunks would be parted
        result = import_qa(
            "same.csv",
            frame,
            guess_mapping(frame.columns),
            corpus_run_id=corpus_id,
            split_config=SplitConfig(train=0.5, validation=0.0, test=0.5, seed=seed),
        )
        assert len({i.split for i in load_qa(result.run)}) == 1


def test_a_refused_import_leaves_no_corpus_run_and_names_the_split_column():
    frame = pd.DataFrame(
        {
            "anchor": ["How often are the archives updated?", "Who updates the archives daily?"],
            "positive": [TEXTS[0], TEXTS[0]],
            "split": ["train", "test"],
        }
    )
    with pytest.raises(InputError, match="drop the split column on import"):
        import_qa("leaky.csv", frame, guess_mapping(frame.columns))
    assert list_runs("corpus") == [] and list_runs("qa") == []


def test_human_questions_are_not_held_to_the_generated_length_rule():
    corpus_id, chunks = make_corpus()
    frame = pd.DataFrame({"question": ["What is APT?", "QUESTION #1"], "context": TEXTS[1:3]})
    preview = preview_import(
        "short.csv",
        frame,
        guess_mapping(frame.columns),
        corpus_run_id=corpus_id,
        gate_config=import_gate_config(),
    )
    assert [(i.question, i.status) for i in preview.items] == [
        ("What is APT?", "accepted"),
        ("QUESTION #1", "rejected"),
    ]
    assert preview.rejections() == {"template_echo": 1}
    assert list_runs("qa") == []  # a preview writes nothing
    strict = GateConfig(check_near_duplicates=False)
    assert preview_import(
        "short.csv",
        frame,
        guess_mapping(frame.columns),
        corpus_run_id=corpus_id,
        gate_config=strict,
    ).rejections() == {"too_short": 1, "template_echo": 1}


def test_import_offers_the_split_seed_and_shares():
    corpus_id, _ = make_corpus()
    frame = pd.DataFrame({"question": QUESTIONS[:5], "context": TEXTS})
    mapping = guess_mapping(frame.columns)
    a = preview_import(
        "s.csv",
        frame,
        mapping,
        corpus_run_id=corpus_id,
        split_config=SplitConfig(0.6, 0.2, 0.2, seed=1),
    )
    b = preview_import(
        "s.csv",
        frame,
        mapping,
        corpus_run_id=corpus_id,
        split_config=SplitConfig(0.6, 0.2, 0.2, seed=7),
    )
    assert Counter(i.split for i in a.items) == {"train": 3, "validation": 1, "test": 1}
    assert [i.split for i in a.items] != [i.split for i in b.items]
    result = import_qa(
        "s.csv",
        frame,
        mapping,
        corpus_run_id=corpus_id,
        split_config=SplitConfig(0.6, 0.2, 0.2, seed=1),
    )
    assert result.run.manifest.config["split"]["seed"] == 1


def test_an_evidence_column_makes_every_chunk_holding_the_quote_gold():
    overlap = [
        "Intro text. The archives are updated twice every day",
        "The archives are updated twice every day by mirrors.",
    ]
    corpus_id, chunks = make_corpus(overlap + TEXTS[1:3])
    frame = pd.DataFrame(
        {
            "question": ["How often are the archives updated?", "Which program installs packages?"],
            "context": [overlap[1], TEXTS[1]],
            "evidence": ["The archives are updated twice every day", None],
        }
    )
    mapping = guess_mapping(frame.columns)
    assert mapping.evidence == "evidence"
    result = import_qa("ev.csv", frame, mapping, corpus_run_id=corpus_id)
    first, second = load_qa(result.run)
    assert first.gold_ids == [chunks[1].id, chunks[0].id]  # its own chunk first
    assert second.gold_ids == [chunks[2].id]  # no evidence: its chunk only


def test_one_word_evidence_links_no_chunk_and_the_preview_says_why():
    """On main the quote 'Debian' made most of a Debian corpus gold for one question (165 of
    203 sample chunks) and a random ranker scored hit@1 0.82."""
    texts = [f"Debian fact number {i}: {t}" for i, t in enumerate(TEXTS)]
    corpus_id, chunks = make_corpus(texts)
    frame = pd.DataFrame(
        {
            "question": [f"What is fact {i}?" for i in range(len(texts))],
            "context": texts,
            "answer_span": ["Debian"] * len(texts),
        }
    )
    mapping = guess_mapping(frame.columns)
    assert mapping.evidence == "answer_span"
    preview = preview_import("short.csv", frame, mapping, corpus_run_id=corpus_id)
    assert all(i.gold_ids == [i.chunk_id] for i in preview.items)
    assert all(i.linked_chunk_ids == [] for i in preview.items)
    assert preview.evidence.too_short == len(texts)
    (note,) = preview.evidence_notes()
    assert note.startswith("5 evidence quote(s) have fewer than 5 words")
    assert "fewer than 5 words" in preview.items[0].meta["evidence_note"]


def test_evidence_that_differs_from_its_chunk_in_case_keeps_its_chunks_and_imports():
    """On main the quote was not found by `quote in text`, lost its linked chunk, and the import
    was refused with 're-split by chunk', a fix that cannot work."""
    overlap = [
        "Intro text. The archives are updated twice every day",
        "The archives are updated twice every day by mirrors.",
    ]
    corpus_id, chunks = make_corpus(overlap + TEXTS[1:4])
    frame = pd.DataFrame(
        {
            "question": ["How often are the archives updated?"]
            + [f"What does chunk {i} say?" for i in range(3)],
            "context": [overlap[1], *TEXTS[1:4]],
            "evidence": ["THE ARCHIVES ARE UPDATED TWICE EVERY DAY", None, None, None],
        }
    )
    result = import_qa("case.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    first = load_qa(result.run)[0]
    assert first.gold_ids == [chunks[1].id, chunks[0].id]
    assert first.meta["match"] == "contained"


def test_import_report_shows_asked_against_achieved_shares():
    corpus_id, _ = make_corpus()
    frame = pd.DataFrame({"question": QUESTIONS[:5], "context": TEXTS})
    preview = preview_import("s.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_id)
    rows = {r["split"]: r for r in preview.dealing().rows()}
    assert rows["train"]["asked"] == "70%" and rows["test"]["asked"] == "15%"
    assert sum(r["chunks"] for r in rows.values()) == len(TEXTS)
    result = save_import(preview)
    assert read_dealing(result.run) == preview.dealing()
