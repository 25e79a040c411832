"""The CLI's tables, built from the same core functions the pages use (core.evaluation.verdict,
core.report.tables, core.rag.summary), so a terminal shows what the page shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.evaluation.seen import seen_display
from core.formatting import fmt

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult
    from core.questions.from_documents import DocumentPairsPreview
    from core.questions.importing import ImportPreview
    from core.questions.splits import Dealing
    from core.rag.results import RagasEvalResult
    from core.report.comparison import Comparison


def frame_text(frame: pd.DataFrame | Sequence[dict[str, Any]], empty: str = "(none)") -> str:
    """A table as aligned text."""
    table = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    if table.empty:
        return empty
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        return table.to_string(index=False)


def metrics_wide(result: RetrievalEvalResult) -> pd.DataFrame:
    """Every metric per model and dim (one row each), and the random ranker's expected score."""
    m = result.metrics
    wide = m.pivot_table(
        index=["model", "dim"], columns="metric", values="value", aggfunc="first", dropna=False
    )
    order = list(dict.fromkeys(m["metric"]))
    wide = wide.reindex(columns=order).reset_index()
    models = list(dict.fromkeys(m["model"]))
    wide["_m"] = wide["model"].map({x: i for i, x in enumerate(models)})
    wide["_d"] = pd.to_numeric(wide["dim"], errors="coerce").fillna(-1)
    wide = wide.sort_values(["_m", "_d"], ascending=[True, False]).drop(columns=["_m", "_d"])
    wide = wide.dropna(subset=order, how="all")
    random = {"model": "random ranker", "dim": pd.NA, **result.random_baseline}
    wide = pd.concat([wide, pd.DataFrame([random])], ignore_index=True)
    for col in order:
        wide[col] = wide[col].map(fmt)
    wide["dim"] = [("—" if pd.isna(d) else str(int(d))) for d in wide["dim"]]
    return wide[["model", "dim", *order]]


def retrieval_text(result: RetrievalEvalResult) -> str:
    """The Retrieval eval page in text: context, verdicts, every metric, every delta, warnings."""
    from core.evaluation.verdict import deltas_display, method_text

    lines = [
        f"retrieval eval {result.run_id}: {result.split or 'all accepted'} split, "
        f"{result.corpus_size:,} chunks, {result.gold_summary()}",
        *(f"verdict: {h.text}" for h in result.headlines()),
        *([f"lexical: {result.bm25_line()}"] if result.bm25_line() else []),
        *(f"rerank: {line}" for line in result.rerank_lines()),
        *([f"levers: {result.levers_text()}"] if result.levers_text() else []),
        f"how to read it: {method_text(result.primary_metric, result.confidence)}",
        "",
        "every metric per model and dim (values; intervals in the JSON):",
        frame_text(metrics_wide(result)),
    ]
    if not result.deltas.empty:
        shown = deltas_display(result.deltas, confidence=result.confidence)
        lines += [
            "",
            f"tuned minus base ({result.primary_metric} is primary; the rest exploratory):",
            frame_text(shown.drop(columns=["warning"])),
        ]
    lines += frontier_lines(result)
    training = result.training_rows()
    if training:
        lines += ["", "what the tuned models trained on:", frame_text(training)]
    seen = seen_display(result.seen_rows())
    if not seen.empty:
        lines += [
            f"{result.primary_metric} on the passages each model trained on, and on the rest "
            "(exploratory, not part of the verdict):",
            frame_text(seen),
        ]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def frontier_lines(result: RetrievalEvalResult) -> list[str]:
    """What to ship: the recommendation and every (model, dim, precision) cell."""
    from core.evaluation.frontier import frontier_display, ship_caption

    recommendation = result.recommendation()
    if result.frontier is None or result.frontier.empty or recommendation is None:
        return []
    shown = frontier_display(result.frontier, result.deploy_size, result.primary_metric)
    caption = ship_caption(result.frontier, result.primary_metric, result.frontier_tolerance)
    hybrids = [f"hybrid {n}" for n in result.hybrid_notes()]
    return ["", f"what to ship: {recommendation.text}", frame_text(shown), caption, *hybrids]


def retrieval_json(result: RetrievalEvalResult) -> dict[str, Any]:
    """The full result: every metric with its interval, every delta with its verdict."""
    return {
        "retrieval_eval_run": result.run_id,
        "qa_run": result.qa_run_id,
        "corpus_run": result.corpus_run_id,
        "split": result.split,
        "corpus_size": result.corpus_size,
        "n_queries": result.n_queries,
        "n_clusters": result.n_clusters,
        "query_sources": result.query_sources,
        "gold_counts": result.gold_counts,
        "primary_metric": result.primary_metric,
        "verdicts": [h.to_dict() for h in result.headlines()],
        "metrics": result.metrics.to_dict("records"),
        "deltas": result.deltas.to_dict("records"),
        "rerank_deltas": []
        if result.rerank_deltas is None
        else result.rerank_deltas.to_dict("records"),
        "random_baseline": result.random_baseline,
        "frontier": [] if result.frontier is None else result.frontier.to_dict("records"),
        "recommendation": (rec := result.recommendation()) and rec.to_dict(),
        "training": result.training_rows(),
        "seen": result.seen_rows(),
        "warnings": result.warnings,
    }


def ragas_text(result: RagasEvalResult) -> str:
    """The RAG eval page in text: means with intervals and failures, and the paired deltas."""
    from core.rag.summary import summary_display, summary_table
    from core.report.tables import ragas_deltas_table

    summary = result.summary
    judge = (summary.get("judge") or {}).get("label", "none (judge-free metrics only)")
    lines = [
        f"ragas eval {result.run_id}: judge {judge}",
        frame_text(summary_display(summary_table(summary))),
    ]
    deltas = ragas_deltas_table(result)
    if not deltas.empty:
        lines += ["", "each retriever minus base:", frame_text(deltas)]
    return "\n".join(lines)


def preview_text(preview: ImportPreview) -> str:
    """What an import saves (or would save): counts, rejections by reason, splits."""
    lines = [
        f"{len(preview.items)} question(s): {preview.n_accepted} accepted, "
        f"{preview.n_rejected} rejected"
        + (f", {len(preview.skipped_rows)} blank row(s) skipped" if preview.skipped_rows else ""),
    ]
    if preview.n_rejected:
        lines += ["rejected, by reason:", frame_text(preview.rejection_rows())]
    lines += dealing_lines(preview.dealing())
    lines += [f"note: {n}" for n in preview.evidence_notes()]
    lines += near_duplicate_lines(preview.near_duplicates)
    return "\n".join(lines)


def dealing_lines(dealing: Dealing) -> list[str]:
    """Splits by chunk, asked against achieved shares, and what keeps them apart."""
    lines = ["splits (shares of chunks, asked against achieved):", frame_text(dealing.rows())]
    return lines + [f"warning: {p}" for p in dealing.problems()]


def near_duplicate_lines(tied: int | None) -> list[str]:
    """Whether near-duplicate questions were looked for and tied into one split."""
    if tied is None:
        return ["note: near-duplicate questions were not looked for (no embedding model)"]
    return [f"near-duplicate pairs tied into one split: {tied}"] if tied else []


def pairs_text(preview: DocumentPairsPreview) -> str:
    """What a set from the documents saves (or would save): per source, rejections, splits."""
    lines = [
        f"{len(preview.items)} pair(s) from the documents: {preview.n_accepted} accepted",
        frame_text(preview.sources()),
    ]
    rejected = preview.rejection_rows()
    if rejected:
        lines += ["rejected, by reason:", frame_text(rejected)]
    lines += dealing_lines(preview.dealing())
    lines += near_duplicate_lines(preview.gate_report.get("near_duplicates_tied"))
    lines += [f"note: {n}" for n in preview.notes]
    return "\n".join(lines)


def comparison_text(comparison: Comparison) -> str:
    """Evaluation runs side by side: headline metrics, deltas with verdicts, RAGAS means."""
    from core.report.tables import deltas_table, headline_table, ragas_display_table

    parts = []
    if not comparison.retrieval.empty:
        parts += ["retrieval (mean [95% CI]):", frame_text(headline_table(comparison.retrieval))]
        for run_id, result in comparison.retrieval_results.items():
            deltas = deltas_table(result)
            if not deltas.empty:
                parts += ["", f"deltas in {run_id}:", frame_text(deltas.drop(columns=["warning"]))]
    if not comparison.ragas.empty:
        parts += ["", "RAGAS:", frame_text(ragas_display_table(comparison.ragas))]
    parts += [f"warning: {w}" for w in comparison.warnings]
    return "\n".join(parts)
