"""A retrieval_eval run's results as tables, and their files: metrics.csv, deltas.csv, tradeoff.csv,
frontier.csv, per_query.jsonl, flips.json, similarity.csv and result.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from core.errors import RunError
from core.evaluation.cautions import copied_query_caution, crossfit_note
from core.evaluation.frontier import DEFAULT_TOLERANCE, Recommendation, recommend
from core.evaluation.lexical import bm25_line, order_headlines, ship_caution
from core.evaluation.verdict import (
    PRIMARY_METRIC,
    Headline,
    alpha_of,
    assign_families,
    headline_verdicts,
    upgrade_deltas,
)
from core.formatting import questions_text
from core.questions.sources import sources_text
from core.runs.folders import Run, load_run, write_text_atomic

METRICS_FILE = "metrics.csv"
DELTAS_FILE = "deltas.csv"
RERANK_DELTAS_FILE = "rerank_deltas.csv"
TRADEOFF_FILE = "tradeoff.csv"
FRONTIER_FILE = "frontier.csv"
PER_QUERY_FILE = "per_query.jsonl"
FLIPS_FILE = "flips.json"
SIMILARITY_FILE = "similarity.csv"
RESULT_FILE = "result.json"


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
    frontier: pd.DataFrame | None = None  # core.evaluation.frontier: every (model, dim, precision)
    n_clusters: int = 0  # clusters of questions sharing a chunk (0: not recorded)
    query_sources: dict[str, int] = field(default_factory=dict)  # human / llm / heading / cloze
    crossfit: dict[str, Any] | None = None  # core.crossfit: folds, fold models, spread per fold
    # each reranked arm against the retriever it reranks (core.evaluation.reranking), adjusted
    # in the same family as `deltas`; None when nothing was reranked
    rerank_deltas: pd.DataFrame | None = None

    @property
    def primary_metric(self) -> str:
        return str(self.config.get("primary_metric") or PRIMARY_METRIC)

    @property
    def confidence(self) -> float:
        return float(self.config.get("confidence") or 0.95)

    @property
    def deploy_size(self) -> int:
        return int(self.config.get("deploy_size") or 1_000_000)

    @property
    def frontier_tolerance(self) -> float:
        value = self.config.get("frontier_tolerance")
        return DEFAULT_TOLERANCE if value is None else float(value)

    def hybrid_notes(self) -> list[str]:
        """One line per hybrid: how it fuses, and the weighted one's weight and where it came from."""
        out = []
        for m in self.models:
            if m.get("kind") != "hybrid":
                continue
            if m.get("fusion") == "weighted":
                out.append(
                    f"{m['label']}: {m['weight']:.1f} x dense + {1 - m['weight']:.1f} x BM25 "
                    f"(normalised), {m.get('weight_note', '')}"
                )
            else:
                out.append(f"{m['label']}: reciprocal rank fusion (k = {m.get('rrf_k', 60)})")
        return out

    def training_rows(self) -> list[dict[str, Any]]:
        """What each tuned model was trained on and how much of these questions it saw: its
        question set, training pairs per source, and the evaluated questions that were training
        queries or point at a training positive ([] when no model says)."""
        rows = []
        for m in self.models:
            info = m.get("training")
            if not info:
                continue
            overlap = info.get("overlap") or {}
            rows.append(
                {
                    "model": m["label"],
                    "trained on": info.get("qa_name") or info.get("qa_run"),
                    "training pairs": sources_text(info.get("sources") or {}) or "unknown",
                    "questions it trained on": overlap.get("same_questions", "?"),
                    "questions on its training chunks": overlap.get("trained_chunks", "?"),
                    "evaluated questions": overlap.get("n_queries", self.n_queries),
                }
            )
        return rows

    def seen_rows(self) -> list[dict[str, Any]]:
        """The primary metric split by whether a tuned model trained on the questions' passages
        (core.evaluation.seen); [] when no model saw some but not all of them."""
        from core.evaluation.seen import seen_rows

        return seen_rows(self)

    def recommendation(self, n_vectors: int | None = None) -> Recommendation | None:
        """What to ship (core.evaluation.frontier.recommend) for `n_vectors` chunks in production
        (the configured deployment size by default); None without a frontier."""
        if self.frontier is None or self.frontier.empty:
            return None
        found = recommend(
            self.frontier,
            self.primary_metric,
            self.n_queries,
            tolerance=self.frontier_tolerance,
            n_vectors=n_vectors or self.deploy_size,
            confidence=self.confidence,
            corpus_size=self.corpus_size,
        )
        if found is None:
            return None
        return found.with_caution(
            ship_caution(self.metrics, self.frontier, self.deltas, self.models, self.primary_metric)
        )

    def headlines(self) -> list[Headline]:
        """The headline verdict of each tuned model on the primary metric (core.evaluation.verdict),
        then each hybrid's (a hybrid that is one of its sides named so); the first carries the
        caution on copied queries when some were."""
        ordered = order_headlines(headline_verdicts(self.deltas, self.primary_metric), self.models)
        caution = self.caution()
        if caution and ordered:  # said once, after the first headline, not on every line
            ordered[0] = replace(ordered[0], text=f"{ordered[0].text} {caution}")
        return ordered

    def rerank_lines(self) -> list[str]:
        """One sentence per reranked arm against its retriever alone, with the cost per query."""
        from core.evaluation.reranking import rerank_lines

        return rerank_lines(self.rerank_deltas, self.models, self.primary_metric)

    def levers_text(self) -> str:
        """Which of fine-tuning, fusion and reranking helps here, by how much and at what cost
        per question (core.evaluation.levers); '' with fewer than two levers evaluated."""
        from core.evaluation.levers import levers_text

        return levers_text(self.deltas, self.models, self.primary_metric, self.base_label)

    def bm25_line(self) -> str:
        """BM25 alone beside the base, in one sentence ('' when BM25 was not evaluated)."""
        return bm25_line(self.metrics, self.base_label, self.primary_metric)

    def caution(self) -> str:
        """What the headline must say besides the tests: what a cross-fit judges, and the
        caution on questions copied from the documents ('' when neither applies)."""
        parts = [
            crossfit_note(self.crossfit or {}, self.primary_metric),
            copied_query_caution(self.query_sources),
        ]
        return " ".join(p for p in parts if p)

    def fold_spread(self) -> pd.DataFrame:
        """A cross-fit's primary metric per fold and dim (empty for a split evaluation)."""
        return pd.DataFrame((self.crossfit or {}).get("spread") or [])

    def questions_text(self) -> str:
        """'23 questions in 20 clusters' (or '23 questions' when each is its own)."""
        return questions_text(self.n_queries, self.n_clusters or None)

    def gold_summary(self) -> str:
        """'22 questions in 20 clusters, 1 with 2 gold chunks' (chunks overlap, so a quote can
        sit in two)."""
        multi = {int(k): v for k, v in self.gold_counts.items() if int(k) > 1}
        text = self.questions_text()
        if multi:
            parts = [f"{v} with {k} gold chunks" for k, v in sorted(multi.items())]
            text += ", " + ", ".join(parts)
        else:
            text += ", one gold chunk each"
        return text

    def model_labels(self, kinds: Sequence[str] = ("base", "tuned", "bm25")) -> list[str]:
        return [m["label"] for m in self.models if m["kind"] in kinds]


PER_QUERY_COLUMNS = [
    "query_id",
    "cluster",
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
    if frame["cluster"].isna().any():  # saved before clusters: each question its own
        codes = {q: n for n, q in enumerate(dict.fromkeys(frame["query_id"]))}
        frame["cluster"] = frame["query_id"].map(codes)
    frame["cluster"] = frame["cluster"].astype("int64")
    return frame


def save_retrieval_eval(run: Run, result: RetrievalEvalResult) -> None:
    """Write every artifact of a retrieval_eval run (atomically, one file at a time)."""
    write_text_atomic(run.artifact(METRICS_FILE), result.metrics.to_csv(index=False))
    write_text_atomic(run.artifact(DELTAS_FILE), result.deltas.to_csv(index=False))
    if result.rerank_deltas is not None:
        write_text_atomic(
            run.artifact(RERANK_DELTAS_FILE), result.rerank_deltas.to_csv(index=False)
        )
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
    if result.frontier is not None:
        write_text_atomic(run.artifact(FRONTIER_FILE), result.frontier.to_csv(index=False))
    recommendation = result.recommendation()
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
            "n_clusters": result.n_clusters,
            "query_sources": result.query_sources,
            "crossfit": result.crossfit,
            "headlines": [h.to_dict() for h in result.headlines()],
            "recommendation": recommendation.to_dict() if recommendation else None,
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

    deltas = upgrade_deltas(read_csv(DELTAS_FILE))
    if "warning" in deltas:
        deltas["warning"] = deltas["warning"].fillna("")
    config = info.get("config", {})
    if not deltas.empty and ("family" not in deltas or "alpha_level" not in deltas):
        # Saved before verdicts were adjusted by family: decide them now, the same way.
        deltas = assign_families(
            deltas.drop(columns=["p_adj", "significant"], errors="ignore"),
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
        frontier=pd.read_csv(run.artifact(FRONTIER_FILE))
        if run.artifact(FRONTIER_FILE).exists()
        else None,
        chroma=info.get("chroma", []),
        warnings=info.get("warnings", []),
        random_baseline=info.get("random_baseline", {}),
        config=info.get("config", {}),
        gold_counts=info.get("gold_counts", {}),
        n_clusters=int(info.get("n_clusters") or 0),
        query_sources=info.get("query_sources", {}),
        crossfit=info.get("crossfit"),
        rerank_deltas=read_csv(RERANK_DELTAS_FILE)
        if run.artifact(RERANK_DELTAS_FILE).exists()
        else None,
    )
