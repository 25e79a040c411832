"""The stages read and fill the embedding cache: a second corpus run of the same files embeds no
chunk, evaluating the base model right after indexing encodes only the questions, and an
unchanged evaluation encodes nothing and gives the same figures."""

from __future__ import annotations

import numpy as np
import pytest

from core.documents.corpus import load_chunks
from core.documents.stage import UploadedFile, build_corpus, index_corpus_run
from core.embedding_cache import default_cache
from core.embeddings import ModelSpec
from core.evaluation.config import RetrievalEvalConfig
from core.evaluation.stage import evaluate_retrieval
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import create_run

pytestmark = pytest.mark.slow

TOPICS = {
    "rain": "Rainfall in deserts is rare and sudden; flash floods follow the storms.",
    "magma": "Magma rises through the crust and erupts as lava from volcanoes.",
    "tides": "Tides follow the moon; the sea rises and falls twice a day.",
    "glaciers": "Glaciers carve valleys as the ice slowly flows downhill.",
    "coral": "Coral reefs grow in warm shallow water and shelter many fish.",
    "wind": "Trade winds blow steadily toward the equator from the east.",
}
QUESTIONS = {
    "rain": "What follows desert storms?",
    "magma": "How does lava reach the surface?",
    "tides": "What makes the sea rise twice a day?",
    "glaciers": "What carves valleys?",
    "coral": "Where do reefs grow?",
    "wind": "Which winds blow toward the equator?",
}


def _files() -> list[UploadedFile]:
    return [UploadedFile(f"{k}.txt", (v + "\n\n").encode() * 3) for k, v in TOPICS.items()]


def _topic_questions(corpus_run_id: str):  # noqa: ANN202 - a Run
    """A finished qa run: one test question per topic, its gold chunk the topic's."""
    chunks = load_chunks(corpus_run_id)
    qa = create_run("qa", name="topics", parents={"corpus": corpus_run_id})
    items = []
    for i, (topic, question) in enumerate(QUESTIONS.items()):
        chunk_id = next(c.id for c in chunks if TOPICS[topic][:30] in c.text)
        items.append(QAItem(id=f"q{i}", question=question, chunk_id=chunk_id, split="test"))
    save_qa(qa, items)
    qa.set_status("done")
    return qa


def _counts() -> tuple[int, int]:
    stats = default_cache().stats
    return stats.hits, stats.misses


def test_indexing_and_evaluation_never_encode_a_text_twice(minilm):
    first = build_corpus(_files()).run
    n_chunks = len(load_chunks(first.id))
    _, misses = _counts()
    index_corpus_run(first.id, model=minilm)
    assert _counts()[1] - misses == n_chunks

    second = build_corpus(_files()).run  # the same files again: a new run
    _, misses = _counts()
    report = index_corpus_run(second.id, model=minilm)
    assert _counts()[1] - misses == 0  # no chunk embedded
    assert report.n_added == n_chunks  # and every chunk is in its collection

    qa = _topic_questions(first.id)
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(ModelSpec(),),
        dims=(384, 64),
        include_bm25=False,
        hybrid=False,
        frontier=False,
        similarity_csv=None,
        n_resamples=200,
        n_permutations=200,
    )
    _, misses = _counts()
    result = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    assert _counts()[1] - misses == len(QUESTIONS)  # only the questions

    hits, misses = _counts()
    again = evaluate_retrieval(config, model_loader=lambda spec: minilm)
    assert _counts()[1] - misses == 0
    assert _counts()[0] - hits == n_chunks + len(QUESTIONS)
    cols = ["model", "dim", "metric", "value"]
    np.testing.assert_array_equal(
        result.metrics.sort_values(cols[:3])[cols[3]].to_numpy(),
        again.metrics.sort_values(cols[:3])[cols[3]].to_numpy(),
    )


def test_hard_negative_mining_reads_the_cache_and_mines_what_sentence_transformers_mines(minilm):
    """Mining through the cache gives sentence-transformers' own result on the raw model, and
    the corpus vectors indexing made are not encoded again."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from core.embeddings import CachedEncoder

    corpus = [t for t in TOPICS.values()] + [
        "Deserts get little rain but sudden storms can flood dry riverbeds.",
        "Volcanoes erupt when pressure pushes magma up through cracks in the crust.",
    ]
    pairs = Dataset.from_dict(
        {
            "anchor": [QUESTIONS[k] for k in TOPICS],
            "positive": list(TOPICS.values()),
        }
    )
    options = dict(
        anchor_column_name="anchor",
        positive_column_name="positive",
        corpus=corpus,
        range_min=0,
        range_max=4,
        num_negatives=2,
        sampling_strategy="top",
        output_format="n-tuple",
        verbose=False,
    )
    reference = mine_hard_negatives(pairs, minilm, **options).to_dict()
    from core.embeddings import encode_texts

    encode_texts(minilm, corpus)  # as indexing does: the corpus is in the cache
    _, misses = _counts()
    mined = mine_hard_negatives(pairs, CachedEncoder(minilm), **options).to_dict()
    assert _counts()[1] - misses == len(QUESTIONS)  # only the questions were encoded
    assert mined == reference
    hits, misses = _counts()
    mine_hard_negatives(pairs, CachedEncoder(minilm), **options)
    assert _counts()[1] - misses == 0 and _counts()[0] - hits == len(corpus) + len(QUESTIONS)


def test_an_unchanged_rerun_never_loads_the_model_and_changed_files_load_it_again(
    tmp_path, monkeypatch
):
    """The default loader defers the weights: the second evaluation of an unchanged model folder
    reads its facts and every vector from the caches (same figures); touching a file of the
    folder makes it another model, loaded again."""
    import shutil

    import core.embeddings as embeddings
    from core.embeddings import default_model_path
    from core.evaluation.stage import create_retrieval_eval_run, run_retrieval_eval

    folder = tmp_path / "minilm"
    shutil.copytree(default_model_path(), folder)
    spec = ModelSpec("local", str(folder))
    first = build_corpus(_files()).run
    qa = _topic_questions(first.id)
    config = RetrievalEvalConfig(
        qa_run_id=qa.id,
        models=(spec,),
        dims=(384, 64),
        include_bm25=False,
        hybrid=False,
        frontier=False,
        similarity_csv=None,
        chroma_check=False,
        n_resamples=200,
        n_permutations=200,
    )
    loads = []
    real = embeddings.load_model
    monkeypatch.setattr(embeddings, "load_model", lambda *a, **k: loads.append(1) or real(*a, **k))
    result = run_retrieval_eval(create_retrieval_eval_run(config))
    assert len(loads) == 1
    again = run_retrieval_eval(create_retrieval_eval_run(config))
    assert len(loads) == 1  # facts and vectors from the caches: no weights loaded
    cols = ["model", "dim", "metric", "value"]
    np.testing.assert_array_equal(
        result.metrics.sort_values(cols[:3])[cols[3]].to_numpy(),
        again.metrics.sort_values(cols[:3])[cols[3]].to_numpy(),
    )
    config_file = folder / "config.json"
    config_file.write_text(config_file.read_text())  # the same bytes, a new modification time
    run_retrieval_eval(create_retrieval_eval_run(config))
    assert len(loads) == 2
