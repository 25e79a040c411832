"""Retrieval evaluation: base vs tuned per Matryoshka dimension, with intervals, tests and flips.

How it works:
1. The questions of one split of a qa run are searched against the FULL corpus of its corpus run
   (every chunk is a distractor, never only the test chunks).
2. Each model encodes the corpus and the questions once, at its native dimension (questions with
   the model's query prompt, identically for base and tuned). Every smaller dimension is a
   truncation plus renormalisation of those vectors: the same numbers as re-encoding with
   `truncate_dim`, at a fraction of the cost.
3. Exact search in numpy returns the top 100 per question, ties broken by ascending chunk id as
   sentence-transformers does, so our metrics equal its InformationRetrievalEvaluator.
   When the model's Chroma collection exists, its top 10 is compared with the exact top 10.
4. Per-query metrics (core.evaluation.metrics) get bootstrap CIs; every model-vs-base delta gets a
   paired CI and a p-value (core.evaluation.statistics); questions whose hit@k flipped are listed with both
   rankings. The random ranker's expected score, the corpus size and the query count go with
   every figure.
5. A general-similarity check (STS-style scored pairs or 0/1 labelled pairs) shows whether a
   domain gain broke general similarity.
6. Everything is saved as a retrieval_eval run: metrics.csv, deltas.csv, tradeoff.csv,
   per_query.jsonl, flips.json, similarity.csv, result.json.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from core.config import SAMPLE_DIR, ChromaSettings
from core.documents.corpus import Chunk, load_chunks
from core.embeddings import (
    ModelSpec,
    document_prompt,
    encode_texts,
    native_dim,
    query_prompt,
    truncate_normalize,
)
from core.errors import ConfigError, InputError, RunError, StoppedError, StoreError
from core.evaluation.metrics import (
    KS,
    SEARCH_DEPTH,
    first_relevant_rank,
    metric_names,
    parse_metric,
    relevance_from_indices,
    score_relevance,
)
from core.evaluation.statistics import (
    MIN_QUERIES,
    bootstrap_ci,
    compare_paired,
    random_ranker_expected,
)
from core.evaluation.verdict import (
    PRIMARY_METRIC,
    Headline,
    alpha_of,
    assign_families,
    headline_verdicts,
)
from core.progress import ProgressCallback, ProgressTracker, StopCheck
from core.questions.dataset import QAItem, load_qa
from core.runs.folders import Run, check_same_lineage, create_run, load_run, write_text_atomic

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DIMS_BELOW_NATIVE = (512, 256, 128, 64)
BM25_LABEL = "BM25"
TOP_SAVED = 10  # results per query kept in per_query.jsonl (enough for every k <= 10)
LATENCY_QUERIES = 32  # single-query searches timed per dimension
SAMPLE_STS_CSV = SAMPLE_DIR / "sts_pairs.csv"
ModelLoader = Callable[[ModelSpec], "SentenceTransformer"]

METRICS_FILE = "metrics.csv"
DELTAS_FILE = "deltas.csv"
TRADEOFF_FILE = "tradeoff.csv"
PER_QUERY_FILE = "per_query.jsonl"
FLIPS_FILE = "flips.json"
SIMILARITY_FILE = "similarity.csv"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RetrievalEvalConfig:
    """What to evaluate. The first model is the reference ("base") every other is compared with."""

    qa_run_id: str
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    dims: tuple[int, ...] = ()  # empty: native plus 512/256/128/64 below it, per model
    split: Literal["train", "validation", "test"] | None = "test"  # None: every accepted item
    include_bm25: bool = False
    flip_k: int = 5
    n_resamples: int = 2000
    n_permutations: int = 10000
    confidence: float = 0.95
    primary_metric: str = PRIMARY_METRIC  # its Holm family across dims decides the headline
    seed: int = 0
    chroma_check: bool | None = None  # None: check wherever the collection exists
    similarity_csv: str | None = str(SAMPLE_STS_CSV)  # None or "": skip the similarity check
    device: str = "auto"
    batch_size: int = 32
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "qa_run_id": self.qa_run_id,
            "models": [m.to_dict() for m in self.models],
            "dims": list(self.dims),
            "split": self.split,
            "include_bm25": self.include_bm25,
            "flip_k": self.flip_k,
            "n_resamples": self.n_resamples,
            "n_permutations": self.n_permutations,
            "confidence": self.confidence,
            "primary_metric": self.primary_metric,
            "seed": self.seed,
            "chroma_check": self.chroma_check,
            "similarity_csv": self.similarity_csv,
            "device": self.device,
            "batch_size": self.batch_size,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrievalEvalConfig:
        values = dict(data)
        values["models"] = tuple(ModelSpec.from_dict(m) for m in values.get("models", []))
        values["dims"] = tuple(int(d) for d in values.get("dims", []))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class RetrievalEvalResult:
    """Everything a retrieval_eval run holds, as tables."""

    run_id: str
    qa_run_id: str
    corpus_run_id: str
    split: str | None
    corpus_size: int
    n_queries: int
    base_label: str
    models: list[dict[str, Any]]  # label, kind (base/tuned/bm25), source, ref, native_dim, dims
    metrics: pd.DataFrame
    deltas: pd.DataFrame
    tradeoff: pd.DataFrame
    per_query: pd.DataFrame
    flips: dict[str, Any]
    similarity: pd.DataFrame | None = None
    chroma: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    random_baseline: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    gold_counts: dict[str, int] = field(default_factory=dict)  # gold chunks -> questions

    @property
    def primary_metric(self) -> str:
        return str(self.config.get("primary_metric") or PRIMARY_METRIC)

    @property
    def confidence(self) -> float:
        return float(self.config.get("confidence") or 0.95)

    def headlines(self) -> list[Headline]:
        """The headline verdict of each tuned model on the primary metric (core.evaluation.verdict)."""
        return headline_verdicts(self.deltas, self.primary_metric)

    def gold_summary(self) -> str:
        """'22 questions, 1 with 2 gold chunks' (chunks overlap, so a quote can sit in two)."""
        multi = {int(k): v for k, v in self.gold_counts.items() if int(k) > 1}
        text = f"{self.n_queries} questions"
        if multi:
            parts = [f"{v} with {k} gold chunks" for k, v in sorted(multi.items())]
            text += ", " + ", ".join(parts)
        else:
            text += ", one gold chunk each"
        return text

    def model_labels(self, kinds: Sequence[str] = ("base", "tuned", "bm25")) -> list[str]:
        return [m["label"] for m in self.models if m["kind"] in kinds]


# ------------------------------------------------------------------ search


def id_tie_ranks(chunk_ids: Sequence[str]) -> np.ndarray:
    """Position of each chunk id in ascending id order: ties in score go to the smaller id."""
    order = sorted(range(len(chunk_ids)), key=chunk_ids.__getitem__)
    ranks = np.empty(len(chunk_ids), dtype=np.int64)
    ranks[np.asarray(order, dtype=np.int64)] = np.arange(len(chunk_ids))
    return ranks


def top_k_from_scores(
    scores: np.ndarray, k: int, tie_ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k indices and scores per row of scores (b, N), ordered by (-score, tie rank).

    Returns (b, min(k, N)) indices and scores. Rows with ties at the cut-off are re-selected so the
    result never depends on how argpartition breaks ties."""
    b, n = scores.shape
    kk = min(k, n)
    if kk == 0 or b == 0:
        return np.zeros((b, kk), dtype=np.int64), np.zeros((b, kk), dtype=scores.dtype)
    rows = np.arange(b)[:, None]
    if kk < n:
        cand = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]  # (b, kk), unordered
    else:
        cand = np.tile(np.arange(n), (b, 1))
    cand_scores = scores[rows, cand]
    threshold = cand_scores.min(axis=1)
    boundary_ties = (scores >= threshold[:, None]).sum(axis=1) > kk
    order = np.lexsort((tie_ranks[cand], -cand_scores), axis=1)
    top = cand[rows, order]
    for r in np.flatnonzero(boundary_ties):
        pool = np.flatnonzero(scores[r] >= threshold[r])
        top[r] = pool[np.lexsort((tie_ranks[pool], -scores[r, pool]))[:kk]]
    return top, scores[rows, top]


def search_exact(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    tie_ranks: np.ndarray,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search of normalised queries (n, d) in a normalised corpus (N, d): top-k
    indices and scores, (n, min(k, N)) each."""
    kk = min(k, corpus.shape[0])
    idx = np.zeros((len(queries), kk), dtype=np.int64)
    val = np.zeros((len(queries), kk), dtype=np.float32)
    corpus_t = np.ascontiguousarray(corpus.T)  # (d, N)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ corpus_t  # (b, N)
        idx[start : start + block], val[start : start + block] = top_k_from_scores(
            scores, kk, tie_ranks
        )
    return idx, val


def measure_query_latency(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> float:
    """Median milliseconds of one exact single-query search (score all, take top-k)."""
    if len(queries) == 0 or len(corpus) == 0:
        return 0.0
    corpus_c = np.ascontiguousarray(corpus)
    kk = min(k, len(corpus_c)) - 1
    times = []
    _ = corpus_c @ queries[0]  # warm-up: first touch of the matrix, BLAS thread start
    for q in queries[:LATENCY_QUERIES]:
        start = time.perf_counter()
        scores = corpus_c @ q  # (N,)
        top = np.argpartition(-scores, kk)[: kk + 1]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def tokenize_bm25(text: str) -> list[str]:
    """Lower-cased word tokens for BM25."""
    return re.findall(r"\w+", text.lower())


def search_bm25(
    corpus_texts: Sequence[str],
    queries: Sequence[str],
    k: int,
    tie_ranks: np.ndarray,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """BM25 (Okapi) top-k indices and scores per query, (n, min(k, N)) each, ties by chunk id."""
    from rank_bm25 import BM25Okapi

    bm25 = BM25Okapi([tokenize_bm25(t) or ["\u2205"] for t in corpus_texts])
    kk = min(k, len(corpus_texts))
    idx = np.zeros((len(queries), kk), dtype=np.int64)
    val = np.zeros((len(queries), kk), dtype=np.float32)
    for start in range(0, len(queries), block):
        batch = queries[start : start + block]
        scores = np.stack([bm25.get_scores(tokenize_bm25(q)) for q in batch])  # (b, N)
        top, top_scores = top_k_from_scores(scores, kk, tie_ranks)
        idx[start : start + len(batch)], val[start : start + len(batch)] = top, top_scores
    return idx, val


# ------------------------------------------------------------------ prompts and dims


def dims_for(native: int, requested: Sequence[int] = ()) -> list[int]:
    """Dimensions to evaluate for a model: the requested ones that fit (largest first), or
    native plus 512/256/128/64 below it."""
    if requested:
        return sorted({int(d) for d in requested if 0 < int(d) <= native}, reverse=True)
    return [native] + [d for d in DIMS_BELOW_NATIVE if d < native]


# ------------------------------------------------------------------ the stage


@dataclass
class DimScores:
    """One model at one dimension: top results and per-query metrics."""

    label: str
    kind: str
    dim: int | None
    top_idx: np.ndarray  # (n, depth)
    top_scores: np.ndarray  # (n, depth)
    per_query: dict[str, np.ndarray]  # metric -> (n,)
    gold_rank: np.ndarray  # (n,), 0 = not in the top `depth`
    latency_ms: float | None = None


def encode_corpus_and_queries(
    model: SentenceTransformer,
    corpus_texts: Sequence[str],
    questions: Sequence[str],
    *,
    label: str = "model",
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode the corpus (document prompt) and the questions (query prompt) once, at the native
    dimension: (N, native) and (n, native), L2-normalised float32."""
    corpus = encode_texts(
        model,
        list(corpus_texts),
        prompt=document_prompt(model),
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
        stage=f"{label}: corpus",
    )
    queries = encode_texts(
        model,
        list(questions),
        prompt=query_prompt(model),
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
        stage=f"{label}: questions",
    )
    return corpus, queries


def score_dims(
    corpus_native: np.ndarray,
    query_native: np.ndarray,
    gold: Sequence[Sequence[int]],
    dims: Sequence[int],
    tie_ranks: np.ndarray,
    *,
    label: str = "model",
    kind: str = "base",
    measure_latency: bool = True,
) -> list[DimScores]:
    """Every dimension from one native encoding: truncate + renormalise, exact top-100 search,
    per-query metrics (and the median single-query search latency)."""
    out = []
    for dim in dims:
        corpus_d = truncate_normalize(corpus_native, dim)  # (N, dim)
        query_d = truncate_normalize(query_native, dim)  # (n, dim)
        top_idx, top_scores = search_exact(query_d, corpus_d, SEARCH_DEPTH, tie_ranks)
        result = _score(label, kind, dim, top_idx, top_scores, list(gold))
        if measure_latency:
            result.latency_ms = measure_query_latency(query_d, corpus_d)
        out.append(result)
    return out


def _check_model_lineage(spec: ModelSpec, qa_run: Run) -> Run | None:
    if spec.source != "run":
        return None
    model_run = load_run(spec.ref)
    if model_run.kind != "model":
        raise ConfigError(f"Run {spec.ref} is a {model_run.kind} run, not a model run.")
    check_same_lineage(model_run, qa_run, kind="corpus")
    check_same_lineage(model_run, qa_run, kind="qa")
    return model_run


def model_run_note(model_run: Run | None, label: str) -> str | None:
    """A warning for a model run that did not finish its training (stopped by the user): its
    weights are those saved at the stop, and resuming makes a new model run."""
    if model_run is None or model_run.manifest.status != "stopped":
        return None
    steps = model_run.manifest.summary.get("steps")
    at = f" at step {steps}" if steps is not None else ""
    return (
        f"{label} is a stopped fine-tune (run {model_run.id}): training was stopped{at} before "
        "its last epoch, so these figures describe the weights saved at the stop. Resuming it "
        "makes a new model run; these figures stay tied to the stopped one."
    )


def model_labels(specs: Sequence[ModelSpec], runs: Sequence[Run | None] = ()) -> list[str]:
    """Display labels: a model run's name (with its id's tail when two names clash), else the
    spec's label. The same model listed twice is refused."""
    keys = [(s.source, s.ref) for s in specs]
    repeated = sorted({specs[i].label for i, k in enumerate(keys) if keys.count(k) > 1})
    if repeated:
        raise ConfigError(
            f"The same model is listed twice: {', '.join(repeated)}.", fix="list each model once"
        )
    runs = list(runs) or [None] * len(specs)
    labels = [
        r.manifest.name if r is not None and r.manifest.name else s.label
        for s, r in zip(specs, runs, strict=True)
    ]
    taken = [*labels, BM25_LABEL]
    for i, (spec, run) in enumerate(zip(specs, runs, strict=True)):
        if taken.count(labels[i]) > 1 and run is not None:
            labels[i] = f"{labels[i]} ({run.id[-6:]})"
        elif taken.count(labels[i]) > 1 and labels[i] != spec.label:
            labels[i] = spec.label
    clashes = sorted({x for x in labels if [*labels, BM25_LABEL].count(x) > 1})
    if clashes:
        raise ConfigError(
            f"Two models would share the name {', '.join(clashes)}.", fix="rename one of them"
        )
    return labels


def _gold_indices(
    items: Sequence[QAItem], index_of: dict[str, int], corpus_run_id: str
) -> list[list[int]]:
    """Each question's relevant chunks as corpus positions: every gold chunk (all chunks holding
    its evidence), the primary one first."""
    missing = [i.id for i in items if any(c not in index_of for c in i.gold_ids)]
    if missing:
        raise InputError(
            f"{len(missing)} questions point at chunks that are not in corpus run {corpus_run_id}.",
            found=f"question ids {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
            fix="regenerate the questions for this corpus run",
        )
    return [[index_of[c] for c in i.gold_ids] for i in items]


def gold_counts(gold: Sequence[Sequence[int]]) -> dict[str, int]:
    """How many questions have 1, 2, … gold chunks ({"1": 157, "2": 6})."""
    counts: dict[str, int] = {}
    for g in gold:
        counts[str(len(g))] = counts.get(str(len(g)), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def _score(
    label: str,
    kind: str,
    dim: int | None,
    top_idx: np.ndarray,
    top_scores: np.ndarray,
    gold: list[list[int]],
) -> DimScores:
    rel, n_rel = relevance_from_indices(top_idx, gold)
    return DimScores(
        label,
        kind,
        dim,
        top_idx,
        top_scores,
        score_relevance(rel, n_rel, KS),
        first_relevant_rank(rel),
    )


def evaluate_retrieval(
    config: RetrievalEvalConfig,
    *,
    model_loader: ModelLoader | None = None,
    chroma_settings: ChromaSettings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RetrievalEvalResult:
    """Evaluate every model at every dimension on a qa run's split and save a retrieval_eval run.

    `model_loader` turns a ModelSpec into a loaded model (default: core.embeddings.load_model on
    `config.device`); pages pass their cached loader. Raises LineageError when a model run was
    trained on another qa run or corpus than the one evaluated.
    """
    from core.embeddings import load_model

    if not config.models:
        raise ConfigError("No model to evaluate.", fix="pick at least the base model")
    if not 1 <= config.flip_k <= TOP_SAVED:
        raise ConfigError(f"Flip k must be between 1 and {TOP_SAVED}, got {config.flip_k}.")
    if config.primary_metric not in metric_names(KS):
        raise ConfigError(
            f"{config.primary_metric!r} is not a metric ragbench computes.",
            fix=f"pick the primary metric from {', '.join(metric_names(KS))}",
        )
    loader = model_loader or (lambda spec: load_model(spec, device=config.device))

    qa_run = load_run(config.qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(f"Run {qa_run.id} is a {qa_run.kind} run, not a qa run.")
    corpus_run_id = qa_run.manifest.parents.get("corpus")
    if not corpus_run_id:
        raise RunError(f"QA run {qa_run.id} names no corpus run.", fix="regenerate the questions")
    model_runs = [_check_model_lineage(spec, qa_run) for spec in config.models]
    labels = model_labels(config.models, model_runs)
    items = load_qa(qa_run, split=config.split)
    if not items:
        raise InputError(
            f"QA run {qa_run.id} has no accepted questions in the {config.split or 'any'} split.",
            fix="pick another split or accept more questions on the Questions page",
        )
    chunks = load_chunks(corpus_run_id)
    if not chunks:
        raise InputError(
            f"Corpus run {corpus_run_id} has no chunks.", fix="re-run the Documents stage"
        )
    chunk_ids = [c.id for c in chunks]
    index_of = {cid: i for i, cid in enumerate(chunk_ids)}
    gold = _gold_indices(items, index_of, corpus_run_id)
    tie_ranks = id_tie_ranks(chunk_ids)
    questions = [i.question for i in items]

    parents = {"qa": qa_run.id}
    for n, model_run in enumerate(r for r in model_runs if r is not None):
        parents["model" if n == 0 else f"model_{n + 1}"] = model_run.id
    run = create_run(
        "retrieval_eval",
        name=config.name or f"{labels[0]} vs {len(labels) - 1} model(s) on {qa_run.manifest.name}",
        config=config.to_dict(),
        parents=parents,
    )
    run.set_status("running")
    try:
        result = _evaluate(
            run,
            config,
            labels,
            model_runs,
            qa_run,
            corpus_run_id,
            chunks,
            items,
            questions,
            gold,
            tie_ranks,
            loader,
            chroma_settings or ChromaSettings(),
            on_progress,
            should_stop,
        )
    except StoppedError as exc:
        run.set_status("stopped", error=str(exc))
        raise
    except BaseException as exc:
        run.set_status("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return result


def _evaluate(
    run: Run,
    config: RetrievalEvalConfig,
    labels: list[str],
    model_runs: list[Run | None],
    qa_run: Run,
    corpus_run_id: str,
    chunks: list[Chunk],
    items: list[QAItem],
    questions: list[str],
    gold: list[list[int]],
    tie_ranks: np.ndarray,
    loader: ModelLoader,
    chroma_settings: ChromaSettings,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> RetrievalEvalResult:
    warnings: list[str] = []
    scored: list[DimScores] = []
    models_info: list[dict[str, Any]] = []
    chroma_reports: list[dict[str, Any]] = []
    loaded: dict[str, Any] = {}
    texts = [c.text for c in chunks]
    n = len(items)
    if n < MIN_QUERIES:
        warnings.append(
            f"Only {n} questions in the {config.split or 'selected'} split: confidence intervals "
            "are wide and small differences cannot be told apart."
        )
    for label, model_run in zip(labels, model_runs, strict=True):
        note = model_run_note(model_run, label)
        if note:
            warnings.append(note)
    tracker = ProgressTracker(
        "retrieval eval", len(config.models) + int(config.include_bm25), on_progress, should_stop
    )
    tracker.report("starting")

    for index, (spec, label) in enumerate(zip(config.models, labels, strict=True)):
        kind = "base" if index == 0 else "tuned"
        model = loader(spec)
        loaded[label] = model
        native = native_dim(model)
        dims = dims_for(native, config.dims)
        if config.dims and set(config.dims) - set(dims):
            dropped = sorted(set(config.dims) - set(dims), reverse=True)
            warnings.append(f"{label}: dims {dropped} exceed its native {native} and were skipped.")
        if not dims:
            raise ConfigError(f"No requested dimension fits {label} (native {native}).")
        q_prompt, d_prompt = query_prompt(model), document_prompt(model)
        corpus_native, query_native = encode_corpus_and_queries(
            model,
            texts,
            questions,
            label=label,
            batch_size=config.batch_size,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        for result in score_dims(
            corpus_native, query_native, gold, dims, tie_ranks, label=label, kind=kind
        ):
            scored.append(result)
            if config.chroma_check is not False:
                report = _chroma_agreement(
                    chroma_settings,
                    corpus_run_id,
                    spec,
                    label,
                    result.dim,
                    truncate_normalize(query_native, result.dim),
                    result.top_idx,
                    len(chunks),
                    [c.id for c in chunks],
                    explicit=bool(config.chroma_check),
                )
                if report is not None:
                    chroma_reports.append(report)
                    if report.get("warning"):
                        warnings.append(report["warning"])
        model_run = model_runs[index]
        models_info.append(
            {
                **spec.to_dict(),
                "label": label,
                "kind": kind,
                "run_status": model_run.manifest.status if model_run is not None else None,
                "native_dim": native,
                "dims": dims,
                "query_prompt": q_prompt,
                "document_prompt": d_prompt,
            }
        )
        tracker.advance(1, f"{label} scored at dims {dims}")

    if config.include_bm25:
        top_idx, top_scores = search_bm25(texts, questions, SEARCH_DEPTH, tie_ranks)
        scored.append(_score(BM25_LABEL, "bm25", None, top_idx, top_scores, gold))
        models_info.append(
            {
                "source": "bm25",
                "ref": "",
                "label": BM25_LABEL,
                "kind": "bm25",
                "native_dim": None,
                "dims": [],
            }
        )
        tracker.advance(1, "BM25 scored")

    n_relevant = [len(g) for g in gold]
    baseline = random_ranker_expected(len(chunks), n_relevant, KS)
    tracker.report("statistics")
    metrics = _metrics_frame(scored, config, baseline, len(chunks), n)
    deltas = _deltas_frame(scored, labels[0], config)
    tradeoff = pd.DataFrame(
        [
            {
                "model": s.label,
                "dim": s.dim,
                "bytes_per_vector": s.dim * 4,
                "latency_ms": s.latency_ms,
            }
            for s in scored
            if s.dim is not None
        ],
        columns=["model", "dim", "bytes_per_vector", "latency_ms"],
    )
    per_query = _per_query_frame(scored, items, chunks)
    flips = {
        "k": config.flip_k,
        "base": labels[0],
        "comparisons": [],
        "texts": {},
    }
    for other in labels[1:]:
        for dim in sorted(
            {s.dim for s in scored if s.label == other and s.dim is not None}, reverse=True
        ):
            if any(s.label == labels[0] and s.dim == dim for s in scored):
                flips["comparisons"].append(
                    compute_flips(per_query, labels[0], other, dim, config.flip_k)
                )
    used = {
        cid
        for comp in flips["comparisons"]
        for row in comp["gained"] + comp["lost"]
        for cid in row["base_top"] + row["model_top"] + row["gold_ids"]
    }
    flips["texts"] = {c.id: c.text for c in chunks if c.id in used}

    similarity = None
    if config.similarity_csv:
        tracker.report("general similarity")
        try:
            pairs = load_similarity_pairs(config.similarity_csv)
            similarity = compare_similarity(
                {label: loaded[label] for label in labels},
                pairs,
                base_label=labels[0],
                n_resamples=min(config.n_resamples, 1000),
                seed=config.seed,
                batch_size=config.batch_size,
                confidence=config.confidence,
            )
        except InputError as exc:
            warnings.append(f"General-similarity check skipped: {exc}")

    if n >= MIN_QUERIES and not deltas.empty:
        # One line per model: the dims whose primary-metric interval is wider than the difference.
        # (Below MIN_QUERIES the warning above already says it for every dim.)
        primary = config.primary_metric
        weak = deltas[(deltas["metric"] == primary) & (deltas["warning"] != "")]
        for model, part in weak.groupby("model", sort=False):
            dims = ", ".join(str(int(d)) for d in part["dim"])
            warnings.append(
                f"{model} vs {labels[0]}: at dims {dims} the {config.confidence:.0%} interval of "
                f"the {primary} difference is wider than the difference itself; {n} queries "
                "cannot tell these models apart there."
            )

    result = RetrievalEvalResult(
        run_id=run.id,
        qa_run_id=qa_run.id,
        corpus_run_id=corpus_run_id,
        split=config.split,
        corpus_size=len(chunks),
        n_queries=n,
        base_label=labels[0],
        models=models_info,
        metrics=metrics,
        deltas=deltas,
        tradeoff=tradeoff,
        per_query=per_query,
        flips=flips,
        similarity=similarity,
        chroma=chroma_reports,
        warnings=warnings,
        random_baseline=baseline,
        config=config.to_dict(),
        gold_counts=gold_counts(gold),
    )
    save_retrieval_eval(run, result)
    _update_model_cards(result, labels, model_runs)
    native_ndcg = {
        s.label: round(float(np.mean(s.per_query["ndcg@10"])), 4)
        for s in scored
        if s.dim is None
        or s.dim == next(m["native_dim"] for m in models_info if m["label"] == s.label)
    }
    run.set_status(
        "done", corpus_size=len(chunks), n_queries=n, split=config.split, ndcg_at_10=native_ndcg
    )
    tracker.report("done")
    return result


def _update_model_cards(
    result: RetrievalEvalResult, labels: list[str], model_runs: list[Run | None]
) -> None:
    """Each tuned model run's card gets this evaluation's test-split verdict (core.evaluation.verdict), so
    a card pushed to the Hub says what the page says. Only test-split evaluations qualify."""
    if result.split != "test":
        return
    from core.finetune.model_card import write_eval_result

    for label, model_run in list(zip(labels, model_runs, strict=True))[1:]:
        if model_run is not None:
            try:
                write_eval_result(model_run, result, label)
            except OSError as exc:  # the card is a courtesy copy: never fail the evaluation
                logger.warning("could not update the model card of %s: %s", model_run.id, exc)


def _metrics_frame(
    scored: list[DimScores],
    config: RetrievalEvalConfig,
    baseline: dict[str, float],
    corpus_size: int,
    n: int,
) -> pd.DataFrame:
    names = metric_names(KS)
    rows = []
    for s in scored:
        values = np.stack([s.per_query[m] for m in names], axis=1)  # (n, n_metrics)
        mean, low, high = bootstrap_ci(values, config.n_resamples, config.confidence, config.seed)
        for j, name in enumerate(names):
            rows.append(
                {
                    "model": s.label,
                    "kind": s.kind,
                    "dim": s.dim,
                    "metric": name,
                    "k": parse_metric(name)[1],
                    "value": float(mean[j]),
                    "ci_low": float(low[j]),
                    "ci_high": float(high[j]),
                    "n_queries": n,
                    "corpus_size": corpus_size,
                    "random_baseline": baseline[name],
                }
            )
    frame = pd.DataFrame(rows)
    frame["dim"] = frame["dim"].astype("Int64")
    return frame


DELTA_COLUMNS = [
    "model",
    "base_model",
    "dim",
    "metric",
    "k",
    "base_value",
    "value",
    "delta",
    "ci_low",
    "ci_high",
    "p_value",
    "test",
    "n_queries",
    "sd_diff",
    "warning",
]


def _deltas_frame(
    scored: list[DimScores], base_label: str, config: RetrievalEvalConfig
) -> pd.DataFrame:
    """Every tuned model minus the base, per dim and metric, with the verdict columns of
    core.evaluation.verdict (Holm within each model's metric across dims; the primary metric decides)."""
    base = {s.dim: s for s in scored if s.label == base_label}
    rows = []
    for s in scored:
        if s.kind != "tuned" or s.dim not in base:
            continue
        for name in metric_names(KS):
            cmp = compare_paired(
                base[s.dim].per_query[name],
                s.per_query[name],
                name,
                n_resamples=config.n_resamples,
                n_permutations=config.n_permutations,
                confidence=config.confidence,
                seed=config.seed,
            )
            rows.append(
                {
                    "model": s.label,
                    "base_model": base_label,
                    "dim": s.dim,
                    "metric": name,
                    "k": parse_metric(name)[1],
                    "base_value": cmp.base,
                    "value": cmp.other,
                    "delta": cmp.delta,
                    "ci_low": cmp.ci_low,
                    "ci_high": cmp.ci_high,
                    "p_value": cmp.p_value,
                    "test": cmp.test,
                    "n_queries": cmp.n_queries,
                    "sd_diff": cmp.sd_diff,
                    "warning": cmp.warning or "",
                }
            )
    frame = pd.DataFrame(rows, columns=DELTA_COLUMNS)
    frame = assign_families(frame, config.primary_metric, alpha_of(config.confidence))
    if not frame.empty:
        frame["dim"] = frame["dim"].astype("Int64")
    return frame


PER_QUERY_COLUMNS = [
    "query_id",
    "question",
    "model",
    "dim",
    "gold_ids",
    "gold_rank",
    "top_ids",
    "top_scores",
]


def per_query_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-query table (built at evaluation, and read back from per_query.jsonl)."""
    frame = pd.DataFrame(list(rows), columns=PER_QUERY_COLUMNS)
    frame["dim"] = frame["dim"].astype("Int64")
    frame["gold_rank"] = frame["gold_rank"].astype("Int64")
    return frame


def _per_query_frame(
    scored: list[DimScores], items: list[QAItem], chunks: list[Chunk]
) -> pd.DataFrame:
    rows = []
    for s in scored:
        for q, item in enumerate(items):
            top = s.top_idx[q, :TOP_SAVED]
            rows.append(
                {
                    "query_id": item.id,
                    "question": item.question,
                    "model": s.label,
                    "dim": s.dim,
                    "gold_ids": item.gold_ids,
                    "gold_rank": int(s.gold_rank[q]) or None,
                    "top_ids": [chunks[int(i)].id for i in top],
                    "top_scores": [round(float(x), 6) for x in s.top_scores[q, :TOP_SAVED]],
                }
            )
    return per_query_table(rows)


def _same_dim(series: pd.Series, dim: int | None) -> pd.Series:
    return series.isna() if dim is None else (series == dim).fillna(False)


def compute_flips(
    per_query: pd.DataFrame, base: str, model: str, dim: int | None, k: int = 5
) -> dict[str, Any]:
    """Questions whose hit@k differs between base and model at one dim (k <= 10).

    Returns {"model", "dim", "k", "gained": [...], "lost": [...]} where gained are base misses
    that the model hits and lost the reverse; each row has both top-k lists and the gold ids."""
    if not 1 <= k <= TOP_SAVED:
        raise ConfigError(f"Flip k must be between 1 and {TOP_SAVED}, got {k}.")
    a = per_query[(per_query["model"] == base) & _same_dim(per_query["dim"], dim)].set_index(
        "query_id"
    )
    b = per_query[(per_query["model"] == model) & _same_dim(per_query["dim"], dim)].set_index(
        "query_id"
    )
    gained, lost = [], []
    for qid in a.index.intersection(b.index, sort=False):
        ra, rb = a.loc[qid], b.loc[qid]
        gold = set(ra["gold_ids"])
        hit_a = any(c in gold for c in list(ra["top_ids"])[:k])
        hit_b = any(c in gold for c in list(rb["top_ids"])[:k])
        if hit_a == hit_b:
            continue
        row = {
            "query_id": str(qid),
            "question": ra["question"],
            "gold_ids": list(ra["gold_ids"]),
            "base_rank": None if pd.isna(ra["gold_rank"]) else int(ra["gold_rank"]),
            "model_rank": None if pd.isna(rb["gold_rank"]) else int(rb["gold_rank"]),
            "base_top": list(ra["top_ids"])[:k],
            "model_top": list(rb["top_ids"])[:k],
        }
        (gained if hit_b else lost).append(row)
    return {
        "model": model,
        "dim": None if dim is None else int(dim),
        "k": k,
        "gained": gained,
        "lost": lost,
    }


def flip_rows(
    flip: dict[str, Any], texts: dict[str, str], side: Literal["gained", "lost"]
) -> pd.DataFrame:
    """One flip list as a table: rank, base chunk, model chunk (gold marked with ★)."""
    rows = []
    for item in flip[side]:
        gold = set(item["gold_ids"])
        for rank in range(max(len(item["base_top"]), len(item["model_top"]))):
            cells = {}
            for key, col in (("base_top", "base"), ("model_top", "model")):
                ids = item[key]
                cid = ids[rank] if rank < len(ids) else ""
                mark = "★ " if cid in gold else ""
                cells[col] = f"{mark}{cid}: {texts.get(cid, '')[:200]}" if cid else ""
            rows.append(
                {
                    "query_id": item["query_id"],
                    "question": item["question"],
                    "rank": rank + 1,
                    **cells,
                }
            )
    return pd.DataFrame(rows, columns=["query_id", "question", "rank", "base", "model"])


# ------------------------------------------------------------------ Chroma agreement


def _chroma_agreement(
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


# ------------------------------------------------------------------ saving and loading


def save_retrieval_eval(run: Run, result: RetrievalEvalResult) -> None:
    """Write every artifact of a retrieval_eval run (atomically, one file at a time)."""
    write_text_atomic(run.artifact(METRICS_FILE), result.metrics.to_csv(index=False))
    write_text_atomic(run.artifact(DELTAS_FILE), result.deltas.to_csv(index=False))
    write_text_atomic(run.artifact(TRADEOFF_FILE), result.tradeoff.to_csv(index=False))
    lines = []
    for rec in result.per_query.to_dict(orient="records"):
        rec["dim"] = None if pd.isna(rec["dim"]) else int(rec["dim"])
        rec["gold_rank"] = None if pd.isna(rec["gold_rank"]) else int(rec["gold_rank"])
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    write_text_atomic(run.artifact(PER_QUERY_FILE), "".join(lines))
    run.write_json(FLIPS_FILE, result.flips)
    if result.similarity is not None:
        write_text_atomic(run.artifact(SIMILARITY_FILE), result.similarity.to_csv(index=False))
    run.write_json(
        RESULT_FILE,
        {
            "qa_run_id": result.qa_run_id,
            "corpus_run_id": result.corpus_run_id,
            "split": result.split,
            "corpus_size": result.corpus_size,
            "n_queries": result.n_queries,
            "base_label": result.base_label,
            "models": result.models,
            "chroma": result.chroma,
            "warnings": result.warnings,
            "random_baseline": result.random_baseline,
            "config": result.config,
            "gold_counts": result.gold_counts,
            "headlines": [h.to_dict() for h in result.headlines()],
        },
    )


def load_retrieval_eval(run: Run | str) -> RetrievalEvalResult:
    """Read a finished retrieval_eval run back into tables."""
    if isinstance(run, str):
        run = load_run(run)
    if run.kind != "retrieval_eval":
        raise RunError(f"Run {run.id} is a {run.kind} run, not a retrieval_eval run.")
    info = run.read_json(RESULT_FILE)

    def read_csv(name: str) -> pd.DataFrame:
        path = run.artifact(name)
        if not path.exists():
            raise RunError(f"Run {run.id} has no {name}.", fix="re-run the evaluation")
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        if "dim" in frame:
            frame["dim"] = frame["dim"].astype("Int64")
        return frame

    deltas = read_csv(DELTAS_FILE)
    if "warning" in deltas:
        deltas["warning"] = deltas["warning"].fillna("")
    config = info.get("config", {})
    if not deltas.empty and "family" not in deltas:
        # Saved before verdicts were Holm-adjusted by family: decide them now, the same way.
        deltas = assign_families(
            deltas.drop(columns=["p_holm", "significant"], errors="ignore"),
            config.get("primary_metric") or PRIMARY_METRIC,
            alpha_of(config.get("confidence") or 0.95),
        )
    per_query_path = run.artifact(PER_QUERY_FILE)
    records = [
        json.loads(line)
        for line in per_query_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    per_query = per_query_table(records)
    similarity_path = run.artifact(SIMILARITY_FILE)
    return RetrievalEvalResult(
        run_id=run.id,
        qa_run_id=info["qa_run_id"],
        corpus_run_id=info["corpus_run_id"],
        split=info.get("split"),
        corpus_size=int(info["corpus_size"]),
        n_queries=int(info["n_queries"]),
        base_label=info["base_label"],
        models=info["models"],
        metrics=read_csv(METRICS_FILE),
        deltas=deltas,
        tradeoff=read_csv(TRADEOFF_FILE),
        per_query=per_query,
        flips=run.read_json(FLIPS_FILE),
        similarity=pd.read_csv(similarity_path) if similarity_path.exists() else None,
        chroma=info.get("chroma", []),
        warnings=info.get("warnings", []),
        random_baseline=info.get("random_baseline", {}),
        config=info.get("config", {}),
        gold_counts=info.get("gold_counts", {}),
    )


# ------------------------------------------------------------------ general similarity


@dataclass(frozen=True)
class SimilarityPairs:
    """Sentence pairs with a similarity score (STS-style) or a 0/1 label."""

    kind: Literal["scored", "labelled"]
    sentences1: tuple[str, ...]
    sentences2: tuple[str, ...]
    values: tuple[float, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.values)


def load_similarity_pairs(
    source: str | Path | bytes | IO[str] | IO[bytes], name: str = ""
) -> SimilarityPairs:
    """Read a CSV with columns sentence1, sentence2 and either score (any scale) or label (0/1)."""
    label = name or (Path(source).name if isinstance(source, str | Path) else "uploaded CSV")
    try:
        if isinstance(source, bytes):
            frame = pd.read_csv(io.BytesIO(source))
        else:
            frame = pd.read_csv(source)
    except FileNotFoundError as exc:
        raise InputError(f"The pairs file {label} does not exist.", fix="upload a CSV") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{label} is not a readable CSV.", found=str(exc)[:200]) from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    has = set(frame.columns)
    if not {"sentence1", "sentence2"} <= has or not ({"score", "label"} & has):
        raise InputError(
            f"{label} needs the columns sentence1, sentence2 and score (or label).",
            found=f"columns {', '.join(frame.columns) or 'none'}",
            fix="rename the columns; use score for graded similarity, label for 0/1 pairs",
        )
    kind: Literal["scored", "labelled"] = "scored" if "score" in has else "labelled"
    col = "score" if kind == "scored" else "label"
    frame = frame.dropna(subset=["sentence1", "sentence2", col])
    values = pd.to_numeric(frame[col], errors="coerce")
    if values.isna().any():
        bad = frame.loc[values.isna(), col].astype(str).head(3).tolist()
        raise InputError(f"{label}: the {col} column must be numeric.", found=f"values {bad}")
    if len(frame) < 5:
        raise InputError(
            f"{label} has {len(frame)} usable pairs.",
            fix="give at least 5 pairs (40+ for a useful check)",
        )
    if kind == "labelled":
        if not set(values.unique()) <= {0, 1}:
            raise InputError(
                f"{label}: labels must be 0 or 1.", found=f"values {sorted(values.unique())[:5]}"
            )
        if values.nunique() < 2:
            raise InputError(
                f"{label}: every label is {int(values.iloc[0])}.",
                fix="include both similar (1) and dissimilar (0) pairs",
            )
    elif values.nunique() < 2:
        raise InputError(
            f"{label}: every score is the same.", fix="give pairs with different scores"
        )
    return SimilarityPairs(
        kind=kind,
        sentences1=tuple(frame["sentence1"].astype(str)),
        sentences2=tuple(frame["sentence2"].astype(str)),
        values=tuple(float(v) for v in values),
        source=label,
    )


def pair_cosines(
    model: SentenceTransformer, pairs: SimilarityPairs, batch_size: int = 32
) -> np.ndarray:
    """Cosine similarity of each pair (n,), encoding without prompts as sentence-transformers'
    similarity evaluators do."""
    a = encode_texts(model, list(pairs.sentences1), batch_size=batch_size)  # (n, d)
    b = encode_texts(model, list(pairs.sentences2), batch_size=batch_size)  # (n, d)
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


def similarity_score(cosines: np.ndarray, pairs: SimilarityPairs) -> float:
    """Spearman of cosine vs score (scored pairs) or average precision of cosine (labelled)."""
    values = np.asarray(pairs.values)
    if pairs.kind == "scored":
        from scipy.stats import spearmanr

        return float(spearmanr(values, cosines).statistic)
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(values.astype(int), cosines))


def compare_similarity(
    models: dict[str, Any],
    pairs: SimilarityPairs,
    base_label: str,
    n_resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Spearman (scored pairs) or AP (labelled pairs) for each model, with bootstrap CIs (at
    `confidence`) over pairs and each model's paired delta against the base."""
    metric = "spearman_cosine" if pairs.kind == "scored" else "ap_cosine"
    cos = {label: pair_cosines(m, pairs, batch_size) for label, m in models.items()}
    rng = np.random.default_rng(seed)
    n = len(pairs)
    samples = rng.integers(0, n, size=(n_resamples, n))
    values = np.asarray(pairs.values)

    def boot(label: str) -> np.ndarray:
        out = np.full(n_resamples, np.nan)
        for i, idx in enumerate(samples):
            sub = SimilarityPairs(pairs.kind, (), (), tuple(values[idx]))
            if np.unique(values[idx]).size < 2:
                continue  # a resample with one class or one score has no defined metric
            out[i] = similarity_score(cos[label][idx], sub)
        return out

    boots = {label: boot(label) for label in models}
    tail = (1 - confidence) / 2
    rows = []
    for label in models:
        value = similarity_score(cos[label], pairs)
        low, high = np.nanquantile(boots[label], [tail, 1 - tail])
        row = {
            "model": label,
            "metric": metric,
            "value": value,
            "ci_low": float(low),
            "ci_high": float(high),
            "delta": np.nan,
            "delta_ci_low": np.nan,
            "delta_ci_high": np.nan,
            "n_pairs": n,
            "source": pairs.source,
        }
        if label != base_label and base_label in cos:
            diff = boots[label] - boots[base_label]
            d_low, d_high = np.nanquantile(diff, [tail, 1 - tail])
            row.update(
                delta=value - similarity_score(cos[base_label], pairs),
                delta_ci_low=float(d_low),
                delta_ci_high=float(d_high),
            )
        rows.append(row)
    return pd.DataFrame(rows)
