"""Latency at scale: the timed search is the real exact search, and the size is capped to fit."""

from __future__ import annotations

import numpy as np

from core.evaluation import latency
from core.evaluation.latency import _one_search, machine_text, synthetic_latency
from core.evaluation.quantization import CELLS, calibration_ranges, quantize


def test_timed_float_search_returns_the_exact_top_k():
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(500, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    expected = np.argsort(-(corpus @ query), kind="stable")[:10]
    assert list(_one_search(corpus, query, "float32", 10)) == list(expected)


def test_timed_binary_search_ranks_by_hamming_distance():
    rng = np.random.default_rng(2)
    corpus = rng.normal(size=(300, 64)).astype(np.float32)
    ranges = calibration_ranges(corpus)
    stored = quantize(corpus, "binary", ranges)
    query = quantize(corpus[7:8], "binary", ranges)[0]
    top = _one_search(stored, query, "binary", 5)
    assert top[0] == 7  # a vector is at Hamming distance 0 from itself
    bits = np.unpackbits(stored, axis=1) != np.unpackbits(query)[None, :]
    distances = bits.sum(axis=1)
    assert list(distances[top]) == sorted(distances)[:5]


def test_every_cell_is_timed_and_the_machine_is_recorded():
    frame = synthetic_latency([8, 16], 1_000)
    assert len(frame) == 2 * len(CELLS)
    assert (frame["latency_ms"] > 0).all()
    assert set(frame["n_vectors"]) == {1_000}
    assert set(frame["machine"]) == {machine_text()}
    assert "CPU cores" in machine_text()


def test_the_synthetic_corpus_is_capped_to_fit(monkeypatch):
    monkeypatch.setattr(latency, "MAX_LATENCY_BYTES", 4 * 32 * 700)
    monkeypatch.setattr(latency, "_measured", {})
    frame = synthetic_latency([32], 10_000_000)
    assert set(frame["n_vectors"]) == {700}


def counted_searches(monkeypatch) -> list[int]:  # noqa: ANN001
    """An empty memo, and a list that grows by one for every timed search."""
    monkeypatch.setattr(latency, "_measured", {})
    searches: list[int] = []
    real = latency._one_search
    monkeypatch.setattr(latency, "_one_search", lambda *a: searches.append(1) or real(*a))
    return searches


def test_the_same_sizes_are_timed_once_per_process(monkeypatch):
    searches = counted_searches(monkeypatch)
    first = synthetic_latency([8], 500)
    timed = len(searches)
    assert timed == len(CELLS) * (latency.LATENCY_QUERIES + 1)
    first.loc[0, "latency_ms"] = -1.0  # a caller's change does not reach the memo
    again = synthetic_latency([8], 500)
    assert len(searches) == timed and (again["latency_ms"] > 0).all()
    synthetic_latency([8], 600)  # another size is timed
    assert len(searches) == 2 * timed


def test_the_figures_are_kept_on_disk_so_a_new_process_does_not_time_them_again(monkeypatch):
    searches = counted_searches(monkeypatch)
    first = synthetic_latency([8], 500)
    timed = len(searches)
    monkeypatch.setattr(latency, "_measured", {})  # a new process: an empty memo
    again = synthetic_latency([8], 500)
    assert len(searches) == timed  # read from the data directory, not timed
    assert again["latency_ms"].tolist() == first["latency_ms"].tolist()
    assert set(again["machine"]) == {machine_text()}
    (memo,) = latency._memo_path(((8,), 500, latency.RESCORE_DEPTH, 0)).parent.glob("*.json")
    memo.write_text("{not json", encoding="utf-8")  # damaged: timed again, no crash
    monkeypatch.setattr(latency, "_measured", {})
    synthetic_latency([8], 500)
    assert len(searches) == 2 * timed
