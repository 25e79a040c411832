"""The steps of a retrieval evaluation and what each is expected to cost, so its progress line
names the step running and gives a fair ETA (core.progress.StepPlan).

Costs are estimated seconds on the 2-core development machine, from the sizes that drive each
step: N chunks, n evaluated and n_val validation questions, the dims, the clusters M. The
constants come from `python -m bench.scale` at 10,000 chunks x 3,000 questions (see the README's
Benchmarks); the plan rescales them by how fast this machine has gone so far, so a faster or a
busier machine gets a fair ETA after the first steps. Encoding's cost is restated from the
number of texts the embedding cache does not hold, once the encoder knows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.evaluation.metrics import metric_names
from core.progress import ProgressCallback, StepPlan, StopCheck

ENCODE_S_PER_TEXT = 1 / 30  # a chunk encoded by MiniLM on 2 CPU cores
QUERY_S_PER_TEXT = 1 / 120  # a question (short)
DENSE_S = 5.0e-11  # per question x chunk x (dim + 64): the product and the top 100
CELLS_S = 2.3e-10  # the four quantized searches of one dim, same unit
BM25_S = 5.0e-8  # per question x chunk (sparse product, top 100)
BM25_INDEX_S = 1.5e-4  # per chunk (tokens, the sparse matrix)
HYBRID_S = 7.7e-8  # per (question or validation question x 11 weights) x chunk
CHROMA_S = 1.0e-4  # per question per dim
BOOTSTRAP_S = 3.0e-9  # per scored (model, dim) x resample x cluster
PERMUTATION_S = 1.7e-9  # per metric x comparison x permutation x cluster
ROWS_S = 1.1e-4  # per question x scored (model, dim): per-question table, flips
SAVE_S = 5.0e-5  # per question x scored (model, dim)
CELL_STATS_S = 1.3e-9  # per cell x (resamples + permutations) x cluster
LATENCY_S = 4.0  # the frontier's latency on synthetic vectors (once per machine)
SIMILARITY_S = 2.0
RERANK_S_PER_PAIR = 0.11  # a (question, passage) pair, MiniLM-size cross-encoder, 2 CPU cores


def corpus_step(label: str) -> str:
    return f"{label}: encoding the corpus"


def questions_step(label: str) -> str:
    return f"{label}: encoding the questions"


def dense_step(label: str, dim: int) -> str:
    return f"{label}: exact search at {dim}d"


def cells_step(label: str, dim: int) -> str:
    return f"{label}: int8 and binary cells at {dim}d"


def hybrid_step(label: str) -> str:
    return f"{label}: hybrids with BM25"


def chroma_step(label: str) -> str:
    return f"{label}: Chroma check"


BM25_INDEX_STEP = "BM25 index"
BM25_STEP = "BM25"
BOOTSTRAP_STEP = "bootstrap intervals"
PAIRED_STEP = "paired tests, max-T adjusted"
ROWS_STEP = "per-question table and flips"
FRONTIER_STEP = "what to ship: cell statistics and latency"
SIMILARITY_STEP = "general similarity"
SAVE_STEP = "saving"
RERANK_STEP = "reranking"


def add_model_steps(
    plan: StepPlan,
    label: str,
    dims: Sequence[int],
    sizes: tuple[int, int, int],
    *,
    frontier: bool,
    hybrid: bool,
    chroma: bool,
) -> None:
    """One model's steps: encoding, exact search and the frontier's cells per dim, its hybrids,
    its Chroma check. `sizes` is (N chunks, n questions, n validation questions)."""
    n_corpus, n, n_val = sizes
    plan.add(corpus_step(label), n_corpus * ENCODE_S_PER_TEXT)
    plan.add(questions_step(label), (n + (n_val if hybrid else 0)) * QUERY_S_PER_TEXT)
    for dim in dims:
        plan.add(dense_step(label, dim), n * n_corpus * (dim + 64) * DENSE_S)
        if frontier:
            plan.add(cells_step(label, dim), n * n_corpus * (dim + 64) * CELLS_S)
    if hybrid:
        plan.add(hybrid_step(label), (n + 11 * n_val) * n_corpus * HYBRID_S)
    if chroma:
        plan.add(chroma_step(label), n * len(dims) * CHROMA_S)


def evaluation_plan(
    model_dims: dict[str, Sequence[int]],
    sizes: tuple[int, int, int],
    n_clusters: int,
    *,
    frontier: bool,
    hybrid: bool,
    bm25: bool,
    chroma: bool,
    similarity: bool,
    n_resamples: int,
    n_permutations: int,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    rerank: tuple[int, int] = (0, 0),
) -> StepPlan:
    """Every step of one evaluation, in the order it runs, with its estimated cost. `rerank` is
    (reranked arms, passages reranked per question)."""
    plan = StepPlan("retrieval eval", on_progress, should_stop)
    n_corpus, n, _ = sizes
    if bm25 or hybrid:
        plan.add(BM25_INDEX_STEP, n_corpus * BM25_INDEX_S)
    for label, dims in model_dims.items():
        add_model_steps(plan, label, dims, sizes, frontier=frontier, hybrid=hybrid, chroma=chroma)
    if bm25:
        plan.add(BM25_STEP, n * n_corpus * BM25_S)
    n_arms, top = rerank
    if n_arms:
        plan.add(RERANK_STEP, n_arms * n * top * RERANK_S_PER_PAIR)
    n_scored = sum(len(d) for d in model_dims.values()) + 2 * hybrid * len(model_dims) + bm25
    n_compared = max(0, n_scored - len(next(iter(model_dims.values()), [])) - bm25) + 2 * n_arms
    n_scored += n_arms
    per_metric = len(metric_names()) * n_permutations * n_clusters  # in the stage's order:
    plan.add(PAIRED_STEP, per_metric * max(1, n_compared) * PERMUTATION_S)
    plan.add(ROWS_STEP, n * n_scored * ROWS_S)
    if similarity:
        plan.add(SIMILARITY_STEP, SIMILARITY_S)
    plan.add(BOOTSTRAP_STEP, n_scored * n_resamples * n_clusters * BOOTSTRAP_S)
    if frontier:
        n_cells = 5 * sum(len(d) for d in model_dims.values())
        cell_draws = n_cells * (2 * n_resamples + n_permutations) * n_clusters
        plan.add(FRONTIER_STEP, cell_draws * CELL_STATS_S + LATENCY_S)
    plan.add(SAVE_STEP, n * n_scored * SAVE_S)
    return plan
