"""The random draws behind the statistics (core.evaluation.statistics): bootstrap resamples of
clusters and sign-flip patterns, drawn once per evaluation and replayed, and BLAS kept on one
thread while they are used.

How it works:
1. A draw depends only on (kind, clusters M, count, seed): one evaluation asks for the same
   draws for every metric, model, dim and frontier cell. The first request draws them exactly as
   before (the same generator, the same blocks of 500) and keeps them compact (int8 signs, int32
   counts); later requests replay the kept blocks as float64, so every product and every p-value
   is what drawing again gives, without drawing again. Memory: 10,000 x M bytes of signs and
   2,000 x M x 4 bytes of counts (54 MB for M = 3,000 clusters); at most _DRAWS_KEPT sets, each
   under _DRAWS_MAX_BYTES (64 MB: M up to 6,400 signs, 8,000 resamples; a larger set is drawn
   each time, as before), so at most 256 MB.
2. The products with the draws are thin ((500, M) by (M, k)) and memory-bound: BLAS threads
   that wait on each other make them up to 18x slower on a busy 2-core machine (measured: 12.7
   ms against 0.7 ms for M = 2,300, k = 1), so they run on one BLAS thread (same numbers).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

EXACT_SIGN_FLIP_MAX_N = 16
_WEIGHT_BLOCK = 500  # resamples per block, to bound memory at (block, n) counts

_blas: list[Any] = []  # threadpoolctl's controller, made on first use


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside (see the module docstring): the same numbers, faster."""
    if not _blas:
        from threadpoolctl import ThreadpoolController

        _blas.append(ThreadpoolController())
    with _blas[0].limit(limits=1, user_api="blas"):
        yield


def sign_patterns(m: int, n_permutations: int, seed: int) -> tuple[bool, Iterator[np.ndarray]]:
    """Whether the test is exact, and the sign patterns (blocks of (size, m) of ±1): all 2^m
    for m <= EXACT_SIGN_FLIP_MAX_N, else `n_permutations` seeded random ones."""
    if m <= EXACT_SIGN_FLIP_MAX_N:
        codes = np.arange(2**m)[:, None] >> np.arange(m)[None, :] & 1
        return True, iter([1.0 - 2.0 * codes])

    def blocks() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        for start in range(0, n_permutations, _WEIGHT_BLOCK):
            size = min(_WEIGHT_BLOCK, n_permutations - start)
            yield rng.choice(np.array([-1.0, 1.0]), size=(size, m))

    return False, _replayed(("signs", m, n_permutations, seed), blocks, np.int8)


def resample_weights(m: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples of m clusters as blocks of (size, m) float64 counts."""

    def blocks() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        pvals = np.full(m, 1.0 / m)
        for start in range(0, n_resamples, _WEIGHT_BLOCK):
            size = min(_WEIGHT_BLOCK, n_resamples - start)
            yield rng.multinomial(m, pvals, size=size).astype(np.float64)

    return _replayed(("resamples", m, n_resamples, seed), blocks, np.int32)


_DRAWS_KEPT = 4  # sets of draws kept (two per evaluation: its signs and its resamples)
_DRAWS_MAX_BYTES = 64_000_000  # a larger set is drawn again each time, as before
_draws: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
_draws_lock = threading.Lock()


def _replayed(
    key: tuple, blocks: Callable[[], Iterator[np.ndarray]], compact: type
) -> Iterator[np.ndarray]:
    """The blocks `blocks()` yields, as float64, drawn once per key and replayed after: the same
    numbers, in the same block shapes, as drawing them again."""
    _, m, count, _ = key
    if m * count * np.dtype(compact).itemsize > _DRAWS_MAX_BYTES:
        return blocks()
    with _draws_lock:
        kept = _draws.get(key)
        if kept is None:
            kept = [block.astype(compact) for block in blocks()]
            _draws[key] = kept
            while len(_draws) > _DRAWS_KEPT:
                _draws.popitem(last=False)
        _draws.move_to_end(key)
    return (block.astype(np.float64) for block in kept)
