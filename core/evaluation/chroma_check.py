"""Chroma agreement: does a model's Chroma collection return what exact search returns?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import ChromaSettings
from core.embeddings import (
    ModelSpec,
)
from core.errors import StoreError

if TYPE_CHECKING:
    pass


def chroma_report(
    settings: ChromaSettings,
    corpus_run_id: str,
    spec: ModelSpec,
    label: str,
    dim: int,
    query_emb: np.ndarray,
    exact_idx: np.ndarray,
    corpus_size: int,
    chunk_ids: list[str],
    explicit: bool,
    k: int = 10,
) -> dict[str, Any] | None:
    """Compare the top-k of the model's Chroma collection with exact search; None when there is no
    complete collection (and no check was asked for explicitly)."""
    try:
        from core.documents import vector_store as store

        if not settings.is_server and not store.chroma_path().exists() and not explicit:
            return None  # no embedded store yet: nothing indexed, and no need to load chromadb
        name = store.collection_name(corpus_run_id, spec, dim)
        count = store.count_indexed(settings, name)
        if count < corpus_size:
            if not explicit:
                return None
            return {
                "model": label,
                "dim": dim,
                "collection": name,
                "checked": False,
                "warning": f"Chroma check skipped for {label} at dim {dim}: collection {name} holds "
                f"{count} of {corpus_size} chunks (index the corpus on the Documents page).",
            }
        got = store.search(settings, name, query_emb, k)
    except (StoreError, ImportError) as exc:
        if not explicit:
            return None
        return {
            "model": label,
            "dim": dim,
            "checked": False,
            "warning": f"Chroma check failed for {label} at dim {dim}: {exc}",
        }
    report = chroma_agreement(got, [[chunk_ids[int(i)] for i in row[:k]] for row in exact_idx], k)
    report.update({"model": label, "dim": dim, "collection": name, "checked": True})
    if report["overlap"] < 0.99:
        report["warning"] = (
            f"Chroma and exact search disagree for {label} at dim {dim}: top-{k} overlap "
            f"{report['overlap']:.3f}, identical top-{k} in {report['identical_rate']:.1%} of queries."
        )
    return report


def chroma_agreement(
    chroma: list[list[tuple[str, float]]], exact: list[list[str]], k: int = 10
) -> dict[str, Any]:
    """How far Chroma's top-k agrees with exact search: mean set overlap, share of identical
    top-k sets and share of identical top-1. Approximate search and score ties may differ a bit."""
    if len(chroma) != len(exact):
        raise ValueError(f"{len(chroma)} Chroma result lists but {len(exact)} exact ones")
    overlaps, identical, top1 = [], [], []
    for got, want in zip(chroma, exact, strict=True):
        ids = [cid for cid, _ in got[:k]]
        want = want[:k]
        denom = max(1, min(k, len(want)))
        overlaps.append(len(set(ids) & set(want)) / denom)
        identical.append(set(ids) == set(want))
        top1.append(bool(ids) and bool(want) and ids[0] == want[0])
    n = max(1, len(exact))
    return {
        "k": k,
        "n_queries": len(exact),
        "overlap": float(sum(overlaps) / n),
        "identical_rate": float(sum(identical) / n),
        "top1_rate": float(sum(top1) / n),
    }
