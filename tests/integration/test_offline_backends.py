"""The offline defaults really work with no network: a real embedding and a real completion."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.config import LLMSettings
from core.embeddings import ModelSpec, encode_texts, load_model, native_dim, truncate_normalize
from core.llm.client import make_llm


def test_offline_env_is_set():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["RAGAS_DO_NOT_TRACK"] == "true"


@pytest.mark.slow
def test_offline_embedder_gives_real_embeddings(minilm):
    assert native_dim(minilm) == 384
    texts = [
        "How do I install a Debian package?",
        "Use dpkg -i to install a .deb file.",
        "Bananas are yellow.",
    ]
    full = encode_texts(minilm, texts)
    assert full.shape == (3, 384)
    assert np.allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    sims = full @ full.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # related sentences are closer than unrelated ones
    # Matryoshka truncation equals truncating the full vectors and renormalising.
    small = encode_texts(minilm, texts, dim=64)
    assert np.allclose(small, truncate_normalize(full, 64), atol=1e-6)


def test_plain_transformer_folder_gets_mean_pooling(tmp_path, minilm):
    """A folder with only a HF transformer (no sentence-transformers config) loads with mean pooling."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    folder = tmp_path / "plain"
    minilm[0].auto_model.save_pretrained(folder)
    minilm[0].tokenizer.save_pretrained(folder)
    model = load_model(ModelSpec("local", str(folder)), device="cpu")
    pooling = [m for m in model if isinstance(m, Pooling)][0]
    assert (
        pooling.pooling_mode == "mean"
        if hasattr(pooling, "pooling_mode")
        else pooling.get_config_dict()["pooling_mode_mean_tokens"]
    )
    # Same transformer + mean pooling as MiniLM (which then normalises): same direction.
    a = model.encode(["dpkg installs packages"], normalize_embeddings=True)
    b = minilm.encode(["dpkg installs packages"], normalize_embeddings=True)
    assert float((a * b).sum()) > 0.999


def test_hub_id_offline_fails_clearly():
    from core.errors import BackendError

    with pytest.raises(
        BackendError, match="Could not load 'BAAI/bge-base-en-v1.5' from the Hugging Face hub"
    ):
        load_model(ModelSpec("hub", "BAAI/bge-base-en-v1.5"), device="cpu")


@pytest.mark.slow
def test_embedded_llm_gives_real_completion(tmp_path):
    llm = make_llm(LLMSettings(backend="embedded"), cache_dir=tmp_path / "cache")
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    completion = llm.complete(messages, max_tokens=8)
    assert completion.text.strip(), "the embedded model returned nothing"
    assert "paris" in completion.text.lower()
    assert completion.completion_tokens > 0 and completion.prompt_tokens > 5
    again = llm.complete(messages, max_tokens=8)
    assert again.cached and again.text == completion.text
