"""Cross-encoder rerankers: where they come from, how they load, and how they reorder a list.

A reranker reads a question and a passage together and gives one relevance score; it reorders
the first N hits of a retriever. It comes from (1) a finished `reranker` run (trained by
core.rerank), (2) a local cross-encoder folder, (3) a Hugging Face hub id (needs a network), or,
as a training start only, (4) the offline default embedding model's transformer with a fresh,
randomly initialised scoring head: it knows nothing about ranking until it is trained, so it is a
weak start. Retrieval eval and the RAG chain both rerank through `rerank_order`, so a reranked
list means the same everywhere. Heavy imports (torch, sentence_transformers) happen inside
functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.embeddings import default_model_path, run_model_dir, select_device
from core.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder


RerankerSource = Literal["default", "local", "hub", "run"]
RERANKER_KIND = "reranker"  # the run kind of a trained reranker
DEFAULT_RERANK_TOP = 50  # hits of the retriever a reranker reorders
MIN_RERANK_TOP = 10  # below this, metrics at k = 10 would be partly unreranked
MAX_RERANK_TOP = 100  # the depth every retriever's ranking is kept to
LATENCY_QUERIES = 8  # single-query reranks timed
WEAK_START = (
    "The reranker starts from {name}'s transformer with a new, randomly initialised scoring "
    "head: it knows nothing about ranking yet, so expect a weak reranker from a few hundred "
    "pairs. A cross-encoder already trained for ranking is a far better start (a local "
    "folder, or a hub id such as cross-encoder/ms-marco-MiniLM-L6-v2 with RAGBENCH_ONLINE=1)."
)

# (question, passage) pairs -> one relevance score each, (n_pairs,)
PairScorer = Callable[[Sequence[tuple[str, str]]], np.ndarray]


@dataclass(frozen=True)
class RerankerSpec:
    """Which cross-encoder to use. `ref` is a folder path, a hub id or a reranker run id."""

    source: RerankerSource = "run"
    ref: str = ""

    @property
    def label(self) -> str:
        """A short human name (a run's name is looked up by `reranker_label`)."""
        if self.source == "default":
            return "all-MiniLM-L6-v2 + new head"
        if self.source == "local":
            return Path(self.ref).name or self.ref
        return self.ref

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "ref": self.ref}

    @classmethod
    def from_dict(cls, data: dict[str, str] | RerankerSpec) -> RerankerSpec:
        if isinstance(data, RerankerSpec):
            return data
        return cls(source=data.get("source", "run"), ref=data.get("ref", ""))  # type: ignore[arg-type]


def parse_reranker(text: str) -> RerankerSpec:
    """'run:ID' (or a bare reranker run id), 'local:/path', 'hub:org/name' or 'default' -> spec."""
    if text in ("default", "base"):
        return RerankerSpec("default")
    if text.startswith("reranker-") and ":" not in text:
        return RerankerSpec("run", text)
    source, _, ref = text.partition(":")
    if source not in ("run", "hub", "local") or not ref:
        raise ConfigError(
            f"Reranker {text!r} is not understood.",
            fix="use run:<reranker run id>, local:<cross-encoder folder> or hub:<org/name>",
        )
    return RerankerSpec(source, ref)  # type: ignore[arg-type]


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_cross_encoder_folder(folder: Path) -> bool:
    """Whether a folder holds a one-score cross-encoder (a sequence-classification model with
    one label), as opposed to an embedding model or a plain transformer."""
    config = _read_config(folder)
    architecture = (config.get("architectures") or [""])[0]
    labels = config.get("id2label") or {}
    n_labels = len(labels) if labels else int(config.get("num_labels", 1))
    return architecture.endswith("ForSequenceClassification") and n_labels == 1


def resolve_reranker(spec: RerankerSpec, *, for_ranking: bool = False) -> tuple[str, bool]:
    """(folder or hub id, whether it is already a trained cross-encoder). `for_ranking` refuses
    a start that has no trained scoring head (the default, or a folder that is no cross-encoder):
    it would rank at random."""
    from core.runs.folders import load_run, status_phrase

    if spec.source == "default":
        path, trained = str(default_model_path()), False
    elif spec.source == "local":
        folder = Path(spec.ref).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"Reranker folder {spec.ref!r} holds no model (no config.json).",
                fix="give the folder of a saved cross-encoder",
            )
        path, trained = str(folder), is_cross_encoder_folder(folder)
    elif spec.source == "hub":
        if not spec.ref:
            raise ConfigError(
                "A hub reranker needs an id such as 'cross-encoder/ms-marco-MiniLM-L6-v2'."
            )
        path, trained = spec.ref, True
    elif spec.source == "run":
        run = load_run(spec.ref)
        if run.kind != RERANKER_KIND:
            raise ConfigError(
                f"Run {spec.ref} is a {run.kind} run, not a reranker run.",
                fix="train one with `ragbench rerank-train QA_RUN`",
            )
        folder = run_model_dir(run)
        if run.manifest.status not in ("done", "stopped") or not (folder / "config.json").exists():
            raise ConfigError(
                f"Reranker run {spec.ref} {status_phrase(run.manifest.status)}; it has no "
                "finished model.",
                fix="wait for its training to finish, or pick another",
            )
        path, trained = str(folder), True
    else:
        raise ConfigError(f"Unknown reranker source {spec.source!r}.", fix="use run, local or hub")
    if for_ranking and not trained:
        raise ConfigError(
            f"{spec.label} has no trained scoring head, so it would rank at random.",
            found="an embedding model or a plain transformer, not a cross-encoder",
            fix="train a reranker from it first (`ragbench rerank-train QA_RUN`), or pick a "
            "cross-encoder",
        )
    return path, trained


def load_cross_encoder(
    spec: RerankerSpec,
    device: str = "auto",
    max_length: int | None = None,
    *,
    for_ranking: bool = True,
) -> CrossEncoder:
    """A sentence-transformers CrossEncoder with one score. A start with no trained head (the
    default, a plain transformer or embedding-model folder) gets a fresh head (see WEAK_START);
    `for_ranking` refuses it. Offline, a hub id fails with a clear BackendError."""
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.cross_encoder import CrossEncoder

    path, trained = resolve_reranker(spec, for_ranking=for_ranking)
    dev = select_device(device)
    try:
        if trained:
            model = CrossEncoder(path, device=dev, max_length=max_length)
        else:  # the transformer only (never an embedding model's pooling), with a new head
            options = {"num_labels": 1}
            transformer = Transformer(
                path, transformer_task="sequence-classification", config_kwargs=options
            )
            model = CrossEncoder(modules=[transformer], device=dev)
    except OSError as exc:
        where = "the Hugging Face hub" if spec.source == "hub" else path
        raise BackendError(
            f"Could not load the reranker {spec.label!r} from {where}.",
            found=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            fix="check the id and your network (RAGBENCH_ONLINE=1); offline, pick a reranker "
            "run or a local cross-encoder folder",
        ) from exc
    if model.num_labels != 1:
        raise ConfigError(
            f"{spec.label} gives {model.num_labels} scores per pair; a reranker needs one.",
            fix="pick a one-score cross-encoder (a reranker), not a classifier",
        )
    if max_length:
        model.max_seq_length = max_length
    return model


def pair_scorer(model: Any, batch_size: int = 32) -> PairScorer:
    """(question, passage) pairs -> the cross-encoder's raw scores (logits: the order the
    sigmoid gives, without its ties at 1.0), float32 (n_pairs,)."""

    def score(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        import torch

        values = model.predict(
            [list(p) for p in pairs],
            batch_size=batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(values, dtype=np.float32).reshape(-1)

    return score


def rerank_order(scores: np.ndarray) -> np.ndarray:
    """Positions of one question's candidates, best reranker score first; a tie keeps the
    retriever's order (candidates come in retriever rank order)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def rerank_hits(
    question: str, hits: Sequence[tuple[str, float]], texts: dict[str, str], score: PairScorer
) -> list[tuple[str, float]]:
    """A retriever's hits (chunk id, score), best first, reordered by the reranker: (chunk id,
    reranker score) for every hit."""
    if not hits:
        return []
    values = score([(question, texts[cid]) for cid, _ in hits])
    return [(hits[i][0], float(values[i])) for i in rerank_order(values)]


def measure_rerank_latency(
    score: PairScorer, questions: Sequence[str], candidates: Sequence[Sequence[str]]
) -> float:
    """Median milliseconds to rerank one question's candidate passages (every pair scored in one
    call, as a search service would), over the first LATENCY_QUERIES questions."""
    times = []
    score([(questions[0], candidates[0][0])]) if questions and candidates[0] else None  # warm-up
    for question, passages in list(zip(questions, candidates, strict=True))[:LATENCY_QUERIES]:
        started = time.perf_counter()
        score([(question, p) for p in passages])
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000.0) if times else 0.0


def check_rerank_top(top: int) -> int:
    """The number of hits to rerank, checked: 10 to 100."""
    if not MIN_RERANK_TOP <= int(top) <= MAX_RERANK_TOP:
        raise ConfigError(
            f"Rerank top {top} is outside {MIN_RERANK_TOP}..{MAX_RERANK_TOP}.",
            fix=f"rerank at least the {MIN_RERANK_TOP} hits the metrics read, at most the "
            f"{MAX_RERANK_TOP} kept (default {DEFAULT_RERANK_TOP})",
        )
    return int(top)


def validation_worse(retriever: Any, after: Any) -> bool:
    """Whether a trained reranker's validation ndcg@10 is below its miner's own order."""
    figures = (retriever, after)
    return all(isinstance(v, (int, float)) for v in figures) and float(after) < float(retriever)


def validation_verdict(retriever: Any, after: Any, top: Any = DEFAULT_RERANK_TOP) -> str:
    """One sentence on a trained reranker's validation: whether reranking the miner's top N
    with it beat the miner's own order (ndcg@10), '' when either figure is missing. A reranker
    that orders worse than its retriever would lower retrieval wherever it is used."""
    if not isinstance(retriever, (int, float)) or not isinstance(after, (int, float)):
        return ""
    if validation_worse(retriever, after):
        return (
            f"On validation this reranker orders the miner's top {top} worse than the miner "
            f"itself (ndcg@10 {after:.3f} against {retriever:.3f}): reranking with it would "
            "lower retrieval. Train it longer or on more questions, or start from a "
            "cross-encoder already trained for ranking."
        )
    word = "no better than" if after == retriever else "better than"
    return (
        f"On validation this reranker orders the miner's top {top} {word} the miner itself "
        f"(ndcg@10 {after:.3f} against {retriever:.3f}); the test split is judged by Retrieval "
        "eval."
    )


def reranker_warning(run: Any) -> str:
    """A finished reranker run's validation verdict when it orders worse than its miner, else
    '' (what the pickers and the Fine-tune page's list warn with)."""
    summary = run.manifest.summary
    retriever, after = summary.get("ndcg@10_retriever"), summary.get("ndcg@10_after")
    if not validation_worse(retriever, after):
        return ""
    top = run.manifest.config.get("rerank_top", DEFAULT_RERANK_TOP)
    return validation_verdict(retriever, after, top)


def finished_rerankers(qa_run_id: str) -> list[Any]:
    """Reranker runs trained on this question set that can rank (done, or stopped with a saved
    model), newest first. Only this set's: a reranker trained on another set of the same
    corpus may have trained on this set's test passages."""
    from core.runs.folders import list_runs

    out = []
    for run in list_runs(RERANKER_KIND):
        if run.manifest.parents.get("qa") != qa_run_id:
            continue
        try:
            resolve_reranker(RerankerSpec("run", run.id), for_ranking=True)
        except ConfigError:
            continue
        out.append(run)
    return out


def reranker_label(spec: RerankerSpec) -> str:
    """A reranker run's name, else the spec's label."""
    from core.errors import RunError
    from core.runs.folders import load_run

    if spec.source == "run":
        try:
            return load_run(spec.ref).manifest.name or spec.ref
        except RunError:
            return spec.ref
    return spec.label
