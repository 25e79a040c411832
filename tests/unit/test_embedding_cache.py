"""The embedding cache: hits and misses, a changed model, concurrent writers, damaged files."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from core.embedding_cache import (
    EmbeddingCache,
    cache_dir,
    default_cache,
    model_key,
    text_key,
    weights_fingerprint,
)
from core.embeddings import encode_texts, truncate_normalize

TEXTS = [
    "The Debian archives are updated every day.",
    "Packages in main are free software.",
    "A stable release is supported for about three years.",
    "Testing holds the packages bound for the next release.",
]
ROOT = Path(__file__).resolve().parents[2]


class CountingEncode:
    """Wraps a real model's encode to count the texts it is asked to encode."""

    def __init__(self, model) -> None:
        self.model, self.texts = model, []
        self._encode = model.encode

    def __call__(self, texts, **kwargs):
        self.texts.extend(texts)
        return self._encode(texts, **kwargs)


@pytest.fixture
def counting(minilm, monkeypatch):
    spy = CountingEncode(minilm)
    monkeypatch.setattr(minilm, "encode", spy)
    return spy


def test_a_second_encode_is_served_from_the_cache_with_the_same_vectors(minilm, counting):
    uncached = encode_texts(minilm, TEXTS, cache=None)
    first = encode_texts(minilm, TEXTS, dim=128)
    assert len(counting.texts) == 2 * len(TEXTS)
    second = encode_texts(minilm, TEXTS[::-1] + TEXTS, dim=128)
    assert len(counting.texts) == 2 * len(TEXTS)  # nothing encoded again
    np.testing.assert_array_equal(second[: len(TEXTS)], first[::-1])
    np.testing.assert_allclose(first, truncate_normalize(uncached, 128), atol=1e-6)
    # The cache holds raw native vectors: truncation and normalisation are applied on the way out.
    np.testing.assert_allclose(encode_texts(minilm, TEXTS), uncached, atol=1e-6)
    assert default_cache().stats.hits >= 3 * len(TEXTS)


def test_only_the_new_texts_are_encoded_and_duplicates_once(minilm, counting):
    encode_texts(minilm, TEXTS[:2])
    encode_texts(minilm, TEXTS + [TEXTS[3], TEXTS[3]])
    assert sorted(counting.texts[:2]) == sorted(TEXTS[:2])
    assert sorted(counting.texts[2:]) == sorted(TEXTS[2:])  # each new text once


def test_texts_go_to_the_model_longest_first_and_come_back_in_order(minilm, counting):
    vectors = encode_texts(minilm, TEXTS, cache=None)
    assert counting.texts == sorted(TEXTS, key=len, reverse=True)  # batches of one length
    for text, vector in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vector, encode_texts(minilm, [text], cache=None)[0], atol=1e-5)


def test_a_prompt_or_a_sequence_length_is_another_key(minilm, counting):
    encode_texts(minilm, TEXTS)
    encode_texts(minilm, TEXTS, prompt="query: ")
    assert len(counting.texts) == 2 * len(TEXTS)
    before = minilm.max_seq_length
    try:
        minilm.max_seq_length = 8
        short = encode_texts(minilm, TEXTS)
    finally:
        minilm.max_seq_length = before
    assert len(counting.texts) == 3 * len(TEXTS)
    assert not np.allclose(short, encode_texts(minilm, TEXTS), atol=1e-3)


def test_a_model_whose_weights_change_in_place_gets_no_stale_vectors(minilm):
    model = copy.deepcopy(minilm)
    before = encode_texts(model, TEXTS)
    key = model_key(model, None)
    weight = next(p for name, p in model.named_parameters() if name.endswith("query.weight"))
    with torch.no_grad():  # in place, as an optimizer step does
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    assert model_key(model, None) != key
    after = encode_texts(model, TEXTS)
    fresh = encode_texts(model, TEXTS, cache=None)
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert not np.allclose(after, before, atol=1e-4)


def test_the_fingerprint_is_of_the_weights_not_the_object(minilm):
    twin = copy.deepcopy(minilm)
    assert weights_fingerprint(twin) == weights_fingerprint(minilm)
    assert weights_fingerprint(object()) is None  # not a torch model: nothing is cached


def test_a_model_that_is_not_a_torch_module_is_encoded_without_the_cache(data_root):
    class Fake:
        def encode(self, texts, **kwargs):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    out = encode_texts(Fake(), TEXTS)
    assert out.shape == (4, 2)
    assert not cache_dir().exists()


def test_the_cache_can_be_turned_off(minilm, counting, monkeypatch):
    monkeypatch.setenv("RAGBENCH_EMBEDDING_CACHE", "0")
    encode_texts(minilm, TEXTS)
    encode_texts(minilm, TEXTS)
    assert len(counting.texts) == 2 * len(TEXTS)
    assert not cache_dir().exists()


def test_a_damaged_file_is_skipped_with_a_warning_and_recomputed(minilm, counting, caplog):
    expected = encode_texts(minilm, TEXTS)
    key = model_key(minilm, None)
    shards = list((cache_dir() / key).glob("*.npz"))
    assert len(shards) == 1
    shards[0].write_bytes(shards[0].read_bytes()[:100])  # a crash mid-copy, a bad disk
    fresh = EmbeddingCache(cache_dir())  # another process: nothing loaded yet
    with caplog.at_level(logging.WARNING, logger="core.embedding_cache"):
        again = encode_texts(minilm, TEXTS, cache=fresh)
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert len(counting.texts) == 2 * len(TEXTS)  # recomputed
    assert fresh.stats.damaged == [str(shards[0])]
    assert "damaged embedding cache file" in caplog.text
    assert shards[0].with_name(shards[0].name + ".damaged").exists()  # set aside, not re-read
    assert encode_texts(minilm, TEXTS, cache=EmbeddingCache(cache_dir())) is not None
    assert len(counting.texts) == 2 * len(TEXTS)  # the recomputed vectors were saved


def test_a_shard_with_wrong_arrays_is_damaged_too(tmp_path):
    store = EmbeddingCache(tmp_path)
    store.put("k", [text_key("a")], np.ones((1, 3)), {})
    (tmp_path / "k" / "0-bad.npz").write_bytes(b"not a zip at all")
    np.savez(tmp_path / "k" / "1-bad.npz", keys=np.array([1, 2]), vectors=np.ones((2, 3)))
    fresh = EmbeddingCache(tmp_path)
    assert list(fresh.get("k", [text_key("a")])) == [text_key("a")]
    assert len(fresh.stats.damaged) == 2


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from core.embedding_cache import EmbeddingCache, text_key
    store = EmbeddingCache(__import__("pathlib").Path({folder!r}))
    who = int(sys.argv[1])
    for i in range(150):  # more shards than COMPACT_AFTER: compactions race with writes
        texts = [f"text {{i}} {{j}}" for j in range(4)] + [f"writer {{who}} {{i}}"]
        store.get("m", [text_key(t) for t in texts])
        vec = np.array([[sum(t.encode()) % 997, len(t), 1.0] for t in texts], dtype=np.float32)
        store.put("m", [text_key(t) for t in texts], vec, {{}})
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT), folder=str(tmp_path / "cache")))
    procs = [subprocess.Popen([sys.executable, str(script), str(w)]) for w in (1, 2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    store = EmbeddingCache(tmp_path / "cache")
    texts = [f"text {i} {j}" for i in range(150) for j in range(4)]
    texts += [f"writer {w} {i}" for w in (1, 2) for i in range(150)]
    found = store.get("m", [text_key(t) for t in texts])
    assert len(found) == len(texts)
    assert store.stats.damaged == []
    for t in texts[:50] + texts[-50:]:
        np.testing.assert_array_equal(found[text_key(t)], [sum(t.encode()) % 997, len(t), 1.0])
    assert len(list((tmp_path / "cache" / "m").glob("*.npz"))) <= 70  # compacted
    assert not list((tmp_path / "cache" / "m").glob(".tmp-*"))


def test_usage_and_clear(minilm):
    encode_texts(minilm, TEXTS)
    usage = default_cache().usage()
    assert usage.models == 1 and usage.files == 2 and usage.bytes > 4 * 384 * 4
    default_cache().clear()
    assert default_cache().usage().files == 0
    assert default_cache().get(model_key(minilm, None), [text_key(TEXTS[0])]) == {}


def test_a_digest_ending_in_zero_bytes_is_read_back_whole(tmp_path):
    """numpy's bytes scalars drop trailing zero bytes; one digest in 256 ends with one."""
    digests = [b"a" * 15 + b"\x00", b"\x00" * 16, text_key("b")]
    EmbeddingCache(tmp_path).put("k", digests, np.arange(6, dtype=np.float32).reshape(3, 2), {})
    found = EmbeddingCache(tmp_path).get("k", digests)
    assert set(found) == set(digests)
    np.testing.assert_array_equal(found[b"\x00" * 16], [2.0, 3.0])


def test_an_update_that_bypasses_the_version_counter_is_still_seen(minilm):
    """Fused optimizers and writes through `.data` leave torch's version counter alone."""
    model = copy.deepcopy(minilm)
    key = model_key(model, None)
    weight = next(p for name, p in model.named_parameters() if name.endswith("query.weight"))
    version = weight._version
    weight.data.mul_(1.01)
    assert weight._version == version  # the counter did not move
    assert model_key(model, None) != key


def test_a_vector_of_another_width_is_a_miss(minilm, counting):
    key = model_key(minilm, None)
    EmbeddingCache(cache_dir()).put(key, [text_key(TEXTS[0])], np.ones((1, 7)), {})
    out = encode_texts(minilm, TEXTS[:1], cache=EmbeddingCache(cache_dir()))
    assert out.shape == (1, 384) and counting.texts == TEXTS[:1]


def test_compaction_merges_small_shards_only_and_keeps_every_vector(tmp_path, monkeypatch):
    import core.embedding_cache as module

    monkeypatch.setattr(module, "COMPACT_AFTER", 4)
    monkeypatch.setattr(module, "SMALL_SHARD", 10)
    store = EmbeddingCache(tmp_path)
    store.put("k", [text_key(f"big {i}") for i in range(20)], np.ones((20, 2)), {})
    store.get("k", [])  # loaded: compaction applies from here on
    for i in range(12):
        store.put("k", [text_key(f"t {i}")], np.full((1, 2), i), {})
    shards = sorted((tmp_path / "k").glob("*.npz"), key=lambda p: p.stat().st_size)
    assert len(shards) < 8  # merged, and the 20-row shard was never rewritten
    fresh = EmbeddingCache(tmp_path)
    found = fresh.get("k", [text_key(f"t {i}") for i in range(12)] + [text_key("big 3")])
    assert len(found) == 13
    np.testing.assert_array_equal(found[text_key("t 7")], [7, 7])


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with caplog.at_level(logging.WARNING, logger="core.embedding_cache"):
        EmbeddingCache(tmp_path).put("k", [text_key("a")], np.ones((1, 2)), {})
    assert "No space left" in caplog.text
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["model.json"]


def test_the_usage_line_counts_models_and_prompts_in_words(tmp_path):
    """Browser tour: 'Embedding cache: 0.1 MB for 2 model(s) and prompt(s) in …'."""
    from core.embedding_cache import CacheUsage, usage_text

    assert "for 1 model and prompt in " in usage_text(CacheUsage(tmp_path, 1, 1, 100_000))
    two = usage_text(CacheUsage(tmp_path, 2, 3, 100_000))
    assert two == f"Embedding cache: 0.1 MB for 2 models and prompts in {tmp_path}"
