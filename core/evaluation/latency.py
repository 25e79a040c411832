"""Latency at scale: one exact single-query search per (dim, precision, rescoring) cell, timed
with numpy on this machine over a synthetic corpus of the size the user names.

Random unit vectors stand in for the corpus: the timing depends on the size, not the values. The
machine's cores, architecture and numpy are recorded beside each figure, because a latency means
nothing without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.evaluation.quantization import (
    CELLS,
    RESCORE_DEPTH,
    RESCORE_MULTIPLIER,
    calibration_ranges,
    cell_name,
    quantize,
)

LATENCY_QUERIES = 10
MAX_LATENCY_BYTES = 1_000_000_000  # float32 vectors timed at once (the size is capped to fit)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def machine_text() -> str:
    """The machine latency was measured on: cores, architecture, numpy."""
    return f"{os.cpu_count()} CPU cores, {platform.machine()}, numpy {np.__version__}"


def _one_search(stored: np.ndarray, query: np.ndarray, precision: str, k: int) -> np.ndarray:
    if precision == "float32":
        scores = stored @ query  # (N,) BLAS
    elif precision == "int8":
        scores = stored @ query.astype(np.int32)  # (N,) numpy's integer loop: no int8 SIMD
    else:
        scores = -_POPCOUNT[np.bitwise_xor(stored, query)].sum(axis=1, dtype=np.int32)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


_measured: dict[tuple, pd.DataFrame] = {}  # (dims, n_vectors, k, seed) -> figures, this process
LATENCY_DIR = ("cache", "latency")  # under the data directory: figures of this machine


def _memo_path(key: tuple) -> Path:
    """Where the figures for `key` measured on this machine (host, cores, numpy) are kept."""
    from core.config import data_dir

    digest = hashlib.blake2b(
        repr((key, machine_text(), platform.node())).encode(), digest_size=12
    ).hexdigest()
    return data_dir().joinpath(*LATENCY_DIR, f"{digest}.json")


def _read_memo(key: tuple) -> pd.DataFrame | None:
    path = _memo_path(key)
    try:
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):  # none yet, or damaged: timed again
        return None
    return frame if {"dim", "cell", "latency_ms"} <= set(frame.columns) else None


def _write_memo(key: tuple, frame: pd.DataFrame) -> None:
    from core.runs.folders import write_text_atomic

    path = _memo_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        records = frame.to_dict(orient="records")  # floats kept exactly (repr round-trips)
        write_text_atomic(path, json.dumps(records, default=lambda value: value.item()))
    except OSError:  # a read-only data directory: the figures are simply timed next time
        pass


def synthetic_latency(
    dims: Sequence[int], n_vectors: int, k: int = RESCORE_DEPTH, seed: int = 0
) -> pd.DataFrame:
    """Median milliseconds of one exact single-query search per (dim, precision, rescoring)
    over `n_vectors` random unit vectors (capped so the float32 copy fits MAX_LATENCY_BYTES),
    with numpy on this machine: the top k, or for a rescored cell the top `multiplier` x k
    re-ranked by float cosine. Measured once per machine for the same sizes (kept in the data
    directory, keyed by host, cores and numpy): the figures depend on the machine, not on the
    models, so a re-run evaluation, in this process or a new job, does not time them again."""
    key = (tuple(int(d) for d in dims), int(n_vectors), int(k), int(seed))
    if key not in _measured:
        frame = _read_memo(key)
        if frame is None:
            frame = _measure(key[0], key[1], key[2], key[3])
            _write_memo(key, frame)
        _measured[key] = frame
    return _measured[key].copy()


def _measure(dims: Sequence[int], n_vectors: int, k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for dim in dims:
        size = int(min(n_vectors, MAX_LATENCY_BYTES // (4 * dim)))
        corpus = rng.standard_normal(size=(size, dim), dtype=np.float32)  # no float64 copy
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = corpus[rng.integers(0, size, LATENCY_QUERIES + 1)] + 0.01
        ranges = calibration_ranges(corpus)
        for precision, rescore in CELLS:
            stored = quantize(corpus, precision, ranges)
            if precision == "int8":
                stored = stored.astype(np.int32)  # the int8 values, accumulated in int32
            depth = min(size, k * RESCORE_MULTIPLIER if rescore else k)
            times = []
            for number, q in enumerate(queries):
                qq = quantize(q[None, :], precision, ranges)[0]
                start = time.perf_counter()
                top = _one_search(stored, qq, precision, depth)
                if rescore:
                    top = top[np.argsort(-(corpus[top] @ q))[:k]]  # float rescoring
                if number:  # the first search warms the caches and BLAS threads up
                    times.append(time.perf_counter() - start)
            rows.append(
                {
                    "dim": dim,
                    "precision": precision,
                    "rescore": rescore,
                    "cell": cell_name(precision, rescore),
                    "latency_ms": float(np.median(times) * 1000),
                    "n_vectors": size,
                    "machine": machine_text(),
                }
            )
            del stored
        del corpus
    return pd.DataFrame(rows)
