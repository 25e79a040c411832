"""Shared fixtures: offline environment, a per-test data directory, a session-wide model."""

from __future__ import annotations

import os

from core.config import apply_offline_env

apply_offline_env(force=True)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """Every test gets its own data directory, so no test touches another's runs."""
    root = tmp_path / "ragbench_data"
    monkeypatch.setenv("RAGBENCH_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once per test session (CPU)."""
    from core.embeddings import ModelSpec, load_model

    return load_model(ModelSpec(), device="cpu")


def pytest_collection_modifyitems(config, items):
    """gpu tests skip when CUDA is absent (never faked)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if has_cuda or os.environ.get("RAGBENCH_FORCE_GPU_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
