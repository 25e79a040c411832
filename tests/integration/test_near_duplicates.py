"""Near-duplicate questions across splits, with the packaged MiniLM: a set ragbench deals ties
them into one split; a split column that puts them in two is refused like a text leak."""

from __future__ import annotations

import pandas as pd
import pytest

from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.errors import InputError
from core.questions.columns import guess_mapping
from core.questions.importing import preview_import, save_import
from core.questions.leakage import NEAR_DUPLICATES_KEY
from core.questions.qa_runs import read_gate_report
from core.runs.folders import create_run

TEXTS = [
    "Debian archives are updated twice every day by the mirror network.",
    "Mirrors copy the archive after each of the two daily updates.",
    "The dpkg program installs a downloaded package file onto the system.",
    "APT resolves dependencies and fetches packages from configured sources.",
    "Stable releases receive security updates for about three years.",
    "The testing distribution holds packages waiting to enter the next release.",
]
QUESTIONS = [
    "How often are the Debian archives updated?",
    "How frequently are the Debian archives updated?",  # cosine 0.996 with the first
    "Which program installs a package file?",
    "What does APT do with dependencies?",
    "How long do stable releases get security updates?",
    "What does the testing distribution hold?",
]


def corpus_run() -> str:
    run = create_run("corpus", name="near-duplicates")
    save_chunks(
        run,
        [
            Chunk(id=chunk_id_for(t), text=t, source="d.txt", doc_id="d", chunk_index=i)
            for i, t in enumerate(TEXTS)
        ],
    )
    run.set_status("done")
    return run.id


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_near_duplicates_are_dealt_into_one_split(minilm, seed):
    """On main each question's split came from its own chunk: the paraphrase of a training
    question could be a test question, scored on what the model was trained to answer."""
    from core.questions.splits import SplitConfig

    frame = pd.DataFrame({"question": QUESTIONS, "context": TEXTS})
    preview = preview_import(
        "nd.csv",
        frame,
        guess_mapping(frame.columns),
        corpus_run_id=corpus_run(),
        split_config=SplitConfig(0.5, 0.25, 0.25, seed=seed),
        model=minilm,
    )
    first, second = preview.items[:2]
    assert first.split == second.split
    assert first.meta[NEAR_DUPLICATES_KEY] == [second.id]
    assert preview.near_duplicates == 1
    run = save_import(preview).run
    assert read_gate_report(run)["near_duplicates_tied"] == 1


@pytest.mark.slow
def test_a_split_column_that_separates_near_duplicates_is_refused(minilm):
    frame = pd.DataFrame(
        {
            "question": QUESTIONS,
            "context": TEXTS,
            "split": ["train", "test", "train", "train", "validation", "test"],
        }
    )
    with pytest.raises(InputError) as info:
        preview_import(
            "nd.csv", frame, guess_mapping(frame.columns), corpus_run_id=corpus_run(), model=minilm
        )
    message = str(info.value)
    assert "1 pair(s) of near-duplicate questions in different splits" in message
    assert "How frequently are the Debian archives updated?" in message
    assert "drop the split column" in message
