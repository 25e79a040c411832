"""The report page: one self-contained HTML file with the verdicts in words (core.evaluation.verdict,
as on the page and in the CLI), the lineage with every run's config, the metric tables, the
deltas with intervals, family-adjusted p-values and power, the flipped questions and the plotly
charts, plotly.js embedded once inline (no CDN), so it opens offline."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.charts.comparison import comparison_figure, ragas_comparison_figure
from core.evaluation.seen import seen_display
from core.evaluation.verdict import method_text
from core.questions.sources import sources_text
from core.report.comparison import HEADLINE_METRICS, _run_label, _short
from core.report.flips import CSS as FLIPS_CSS
from core.report.flips import flips_html as _flips_html
from core.report.redaction import redact, scrub_text
from core.report.tables import (
    delta_sentences,
    deltas_table,
    fmt,
    fmt_ci,
    headline_table,
    ragas_deltas_table,
    ragas_display_table,
)
from core.runs.folders import Run, load_run
from core.runs.labels import (
    HIDDEN_SUMMARY_KEYS,
    kind_name,
    parent_label,
    run_title,
    summary_label,
)
from core.runs.lineage import lineage_chain, lineage_of
from core.text import cut_at_word

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from core.evaluation.results import RetrievalEvalResult
    from core.rag.results import RagasEvalResult
    from core.report.comparison import Comparison


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sig{color:#116611;font-weight:600}.nsig{color:#666}.warn{background:#fff4e0;border-left:4px solid #f0a030;
padding:.4em .8em;margin:.4em 0}.caption{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
details{margin:.3em 0}code{font-size:.9em}.gold{background:#e6f4e6}
ol.top{margin:.2em 0;padding-left:1.6em}
details.all>summary{cursor:pointer;color:#335}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(frame: pd.DataFrame, numeric: Sequence[str] = ()) -> str:
    """A DataFrame as an escaped HTML table; verdict cells get a class."""
    if frame is None or frame.empty:
        return '<p class="caption">None.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            text = (
                "—" if value is None or (isinstance(value, float) and math.isnan(value)) else value
            )
            css = ""
            if col == "verdict":
                css = ' class="nsig"' if str(text).startswith("not") else ' class="sig"'
            elif col in numeric:
                css = ' class="num"'
            cells.append(f"<td{css}>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _json_block(obj: Any) -> str:
    return f"<pre>{_e(json.dumps(redact(obj), indent=2, ensure_ascii=False, default=str))}</pre>"


class _Figures:
    """Figures as <div>s that share the one inline plotly.js."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: go.Figure) -> str:
        self.count += 1
        return fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"ragbench-fig-{self.count}",
            config={"displaylogo": False, "responsive": True},
        )


def _scalar_text(value: Any) -> str:
    """A number rounded to 4 significant digits, a flag as yes/no, anything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary_value(key: str, value: Any) -> str:
    """One summary value in words, '' to leave it out (empty, or nested beyond reading): a list
    or flat dict as 'heading 120, cloze 212', the pair sources as the evaluation writes them."""
    if key == "sources" and isinstance(value, Mapping):
        return sources_text(value).removesuffix(" training pairs")
    if isinstance(value, Mapping):
        items = [(f"{k} ", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [("", v) for v in value]
    else:
        return "" if value is None else _scalar_text(value).strip()
    if any(isinstance(v, Mapping | list | tuple) for _, v in items):
        return ""
    return ", ".join(f"{k}{_scalar_text(v)}" for k, v in items)


def _summary_text(summary: Mapping[str, Any], most: int = 8) -> str:
    """A run's summary as 'label: value' pairs in words (core.runs.labels; numbers rounded,
    short lists and dicts listed, long values shortened at a word, empty values and job
    bookkeeping left out), never raw JSON cut mid-string."""
    values = ((k, _summary_value(k, v)) for k, v in summary.items() if k not in HIDDEN_SUMMARY_KEYS)
    shown = [f"{summary_label(k)}: {cut_at_word(text, 60)}" for k, text in values if text]
    more = len(shown) - most
    return "; ".join(shown[:most]) + (f"; and {more} more" if more > 0 else "")


def _lineage_html(run_ids: Sequence[str], lineage: Sequence[Run]) -> str:
    parts = ["<h2>Lineage</h2><ul>"]
    for run_id in run_ids:
        parts.append(f"<li>{_e(lineage_chain(run_id))}</li>")
    parts.append("</ul>")
    table = pd.DataFrame(
        [
            {
                "kind": kind_name(r.kind),
                "id": r.id,
                "name": r.manifest.name,
                "status": r.manifest.status,
                "created": r.manifest.created_at[:19],
                "parents": ", ".join(
                    f"{parent_label(k)}: {v}" for k, v in r.manifest.parents.items()
                ),
                "summary": _summary_text(redact(r.manifest.summary)),
            }
            for r in lineage
        ]
    )
    parts.append(_table(table))
    parts.append("<h3>Configs</h3>")
    for run in lineage:
        parts.append(
            f"<details><summary>{_e(run_title(run))} · <code>{_e(run.id)}</code>"
            f"</summary>{_json_block(run.manifest.config)}</details>"
        )
    return "".join(parts)


def _training_html(result: RetrievalEvalResult) -> str:
    """What the tuned models trained on, and the primary metric on the passages they saw and on
    the rest ('' when no tuned model says)."""
    parts = []
    training = result.training_rows()
    if training:
        parts.append("<h3>What the tuned models trained on</h3>")
        parts.append(_table(pd.DataFrame(training)))
    seen = seen_display(result.seen_rows())
    if not seen.empty:
        parts.append(
            f"<p class='caption'>{_e(result.primary_metric)} on the passages each model trained "
            "on, and on the rest (exploratory: Holm-adjusted within each model, clusters "
            "resampled, not part of the verdict)</p>"
        )
        parts.append(_table(seen))
    return "".join(parts)


def _retrieval_html(
    run: Run, result: RetrievalEvalResult, headline: pd.DataFrame, figures: _Figures
) -> str:
    from core.charts.retrieval import (
        delta_bars_figure,
        metric_vs_dim_figure,
        similarity_figure,
        tradeoff_figure,
    )

    split = result.split or "all accepted"
    parts = [
        f"<h2>Retrieval evaluation: {_e(run.manifest.name)}</h2>",
        f"<p class='caption'>run <code>{_e(run.id)}</code> · qa <code>{_e(result.qa_run_id)}</code>"
        f" · corpus <code>{_e(result.corpus_run_id)}</code></p>",
        "<p><b>Corpus:</b> "
        f"{result.corpus_size:,} chunks · <b>Queries:</b> {_e(result.questions_text())} "
        f"({_e(split)} split)"
        " · <b>Random ranker:</b> "
        + ", ".join(f"{m} {fmt(result.random_baseline.get(m))}" for m in HEADLINE_METRICS)
        + "</p>",
    ]
    parts.append(f"<p><b>Gold chunks:</b> {_e(result.gold_summary())}</p>")
    for warning in result.warnings:
        parts.append(f"<div class='warn'>{_e(warning)}</div>")
    parts.append(_training_html(result))
    spread = result.fold_spread()
    if not spread.empty:
        parts.append(
            f"<h3>{_e(result.primary_metric)} per fold (each fold model on the questions it never "
            "saw)</h3>"
        )
        parts.append(_table(spread.round(4)))
    parts.append(_verdict_html(result))
    parts.append("<h3>Headline metrics (mean [95% CI])</h3>")
    parts.append(_table(headline.drop(columns=["run"]), numeric=HEADLINE_METRICS))
    parts.append(figures.div(metric_vs_dim_figure(result.metrics, "ndcg@10")))
    if not result.deltas.empty:
        parts.append(_deltas_html(result))
        parts.append(figures.div(delta_bars_figure(result.deltas, "ndcg@10")))
    parts.append(_ship_html(result, figures))
    if not result.tradeoff.empty:
        parts.append("<h3>Matryoshka trade-off</h3>")
        parts.append(figures.div(tradeoff_figure(result.metrics, result.tradeoff, "ndcg@10")))
    if result.similarity is not None and not result.similarity.empty:
        parts.append("<h3>General similarity</h3>")
        sim = result.similarity
        shown = pd.DataFrame(
            {
                "model": sim["model"],
                "metric": sim["metric"],
                "value [95% CI]": [
                    fmt_ci(v, lo, hi)
                    for v, lo, hi in zip(sim["value"], sim["ci_low"], sim["ci_high"], strict=True)
                ],
                "Δ vs base [95% CI]": [
                    fmt_ci(d, lo, hi, True)
                    for d, lo, hi in zip(
                        sim["delta"], sim["delta_ci_low"], sim["delta_ci_high"], strict=True
                    )
                ],
                "pairs": sim["n_pairs"],
            }
        )
        parts.append(_table(shown))
        parts.append(figures.div(similarity_figure(sim)))
    parts.append("<h3>Flipped questions</h3>")
    parts.append(_flips_html(result))
    return "".join(parts)


def _deltas_html(result: RetrievalEvalResult) -> str:
    """The primary metric's deltas (the verdict's rows) in the open, its warnings below, and
    every headline metric's deltas in a folded table: all kept (a report is an archive), the
    long table folded (it alone was ~4,800 px on an evaluation with BM25 and hybrids)."""
    # The warnings go below their table, once each: in a column they wrap a word a line.
    # The primary metric may be one outside the headline four (any metric@k can be chosen).
    table = deltas_table(result, tuple(dict.fromkeys((result.primary_metric, *HEADLINE_METRICS))))
    is_primary = table["metric"] == result.primary_metric
    warned = table.get("warning", pd.Series("", index=table.index)).fillna("")
    primary_warnings = list(dict.fromkeys(w for w in warned[is_primary] if w))
    other_warnings = [
        w for w in dict.fromkeys(warned[~is_primary]) if w and w not in primary_warnings
    ]
    shown = table.drop(columns=["warning"], errors="ignore")
    numeric = ("base", "tuned", "delta")
    metrics = ", ".join(dict.fromkeys(shown["metric"]))
    parts = [
        f"<h3>Tuned vs base: deltas of {_e(result.primary_metric)}, the verdict's metric</h3>",
        _table(shown[is_primary], numeric=numeric),
        *(f"<div class='warn'>{_e(w)}</div>" for w in primary_warnings),
        f"<details class='all deltas'><summary>All deltas ({len(shown)} rows: {_e(metrics)} "
        "at every dimension)</summary>",
        _table(shown, numeric=numeric),
        *(f"<div class='warn'>{_e(w)}</div>" for w in other_warnings),
        "</details>",
    ]
    return "".join(parts)


def _verdict_html(result: RetrievalEvalResult) -> str:
    """The headlines in the page's order (tuned models first, then the hybrids, then BM25
    alone), each delta in a sentence, and how to read them ('' without a comparison)."""
    sentences = delta_sentences(result)
    if not sentences:
        return ""
    parts = ["<h3>Verdict</h3>"]
    parts.extend(f"<p><b>{_e(h.text)}</b></p>" for h in result.headlines())
    if result.bm25_line():
        parts.append(f"<p>{_e(result.bm25_line())}</p>")
    parts.extend(f"<p>{_e(line)}</p>" for line in result.rerank_lines())
    if result.levers_text():
        parts.append(f"<p><b>{_e(result.levers_text())}</b></p>")
    parts.append("<ul>")
    parts.extend(f"<li>{_e(s)}</li>" for s in sentences)
    parts.append(
        f"</ul><p class='caption'>{_e(method_text(result.primary_metric, result.confidence))}</p>"
    )
    return "".join(parts)


def _ship_html(result: RetrievalEvalResult, figures: _Figures) -> str:
    """What to ship: the recommendation, the frontier chart and every cell (folded)."""
    from core.charts.frontier import frontier_figure
    from core.evaluation.frontier import frontier_display, ship_caption

    recommendation = result.recommendation()
    if result.frontier is None or result.frontier.empty or recommendation is None:
        return ""
    picked = (recommendation.model, recommendation.dim, recommendation.cell)
    shown = frontier_display(result.frontier, result.deploy_size, result.primary_metric)
    return (
        "<h3>What to ship: model, dimension and precision</h3>"
        f"<p><b>{_e(recommendation.text)}</b></p>"
        + figures.div(frontier_figure(result.frontier, result.primary_metric, picked))
        + f"<details class='all'><summary>Every cell ({len(shown)} rows: model, dimension and "
        "precision)</summary>"
        + _table(shown)
        + "</details>"
        + f"<p class='caption'>{_e(ship_caption(result.frontier, result.primary_metric, result.frontier_tolerance))}</p>"
        + "".join(f"<p class='caption'>Hybrid {_e(n)}.</p>" for n in result.hybrid_notes())
    )


def _ragas_html(
    run: Run,
    result: RagasEvalResult,
    table: pd.DataFrame,
    context: Mapping[str, Any],
    figures: _Figures,
) -> str:
    from core.charts.rag import ragas_bars_figure
    from core.rag.summary import summary_table

    parts = [
        f"<h2>RAG evaluation (RAGAS): {_e(run.manifest.name)}</h2>",
        f"<p class='caption'>run <code>{_e(run.id)}</code> · judge: {_e(context['judge'])}</p>",
        f"<p><b>Corpus:</b> {_e(context['corpus_size'] if context['corpus_size'] is not None else '—')} chunks"
        f" · <b>Questions:</b> {context['n_samples']} · <b>top-k:</b> {_e(context['k'] or '—')}",
    ]
    if context["random"]:
        parts.append(
            " · <b>Random retriever:</b> "
            + ", ".join(f"{m} {fmt(v)}" for m, v in context["random"].items())
        )
    parts.append("</p>")
    if context["low_confidence_judge"]:
        parts.append(
            "<div class='warn'>The judge is a tiny local model: its judged scores are "
            "low-confidence. Judge-free metrics (chunk ids, string match) are unaffected.</div>"
        )
    failed = int(table["failed"].fillna(0).sum()) if not table.empty else 0
    if failed:
        parts.append(
            f"<div class='warn'>{failed} sample score(s) failed and are left out of their means; "
            "the failures column gives the reasons.</div>"
        )
    parts.append("<h3>Means per retriever (mean [95% CI], scored / failed)</h3>")
    parts.append(_table(table.drop(columns=["run"])))
    order = result.summary.get("retrievers_order") or None
    parts.append(figures.div(ragas_bars_figure(summary_table(result.summary), order)))
    deltas = ragas_deltas_table(result)
    if not deltas.empty:
        parts.append("<h3>Each retriever minus base (paired over questions both scored)</h3>")
        parts.append(_table(deltas))
    return "".join(parts)


def _verdict_summary(comparison: Comparison) -> str:
    items = []
    for result in comparison.retrieval_results.values():
        items.extend(h.text for h in result.headlines())
        if result.bm25_line():
            items.append(result.bm25_line())
    for run_id, result in comparison.ragas_results.items():
        for _, row in ragas_deltas_table(result).iterrows():
            items.append(
                f"RAGAS {row['metric']}, {row['retriever']} − base ({_short(run_id)}): "
                f"Δ {row['delta']} {row['95% CI']}: {row['verdict']}."
            )
    if not items:
        return (
            "<p>No base-vs-tuned comparison in these runs: evaluate a fine-tuned model together "
            "with the base to get deltas.</p>"
        )
    return "<ul>" + "".join(f"<li>{_e(s)}</li>" for s in items) + "</ul>"


def _versions_html(runs: Sequence[Run]) -> str:
    rows = [{"run": r.id, **r.manifest.versions} for r in runs]
    return "<h2>Library versions</h2>" + _table(pd.DataFrame(rows).fillna("—"))


def render_html(comparison: Comparison, title: str, created_at: str) -> str:
    """The report page for a comparison (plotly.js inline, once)."""
    from plotly.offline import get_plotlyjs

    from core import __version__

    runs = [load_run(r) for r in comparison.run_ids]
    lineage = lineage_of(comparison.run_ids)
    figures = _Figures()
    headline = headline_table(comparison.retrieval)
    ragas_shown = ragas_display_table(comparison.ragas)
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='caption'>Generated {_e(created_at)} by ragbench {_e(__version__)}"
        f" · runs: {', '.join(f'<code>{_e(r)}</code>' for r in comparison.run_ids)}</p>",
        "<h2>Verdict</h2>",
        _verdict_summary(comparison),
    ]
    for warning in comparison.warnings:
        body.append(f"<div class='warn'>{_e(warning)}</div>")
    if len(comparison.retrieval_results) > 1:
        body.append("<h2>Retrieval runs side by side</h2>")
        body.append(_table(headline, numeric=HEADLINE_METRICS))
        body.append(figures.div(comparison_figure(comparison.retrieval)))
    if len(comparison.ragas_results) > 1:
        body.append("<h2>RAGAS runs side by side</h2>")
        body.append(_table(ragas_shown))
        body.append(figures.div(ragas_comparison_figure(comparison.ragas)))
    body.append(_lineage_html(comparison.run_ids, lineage))
    for run in runs:
        if run.kind == "retrieval_eval":
            part = headline[headline["run"] == _run_label(run, len(runs) > 1)]
            body.append(_retrieval_html(run, comparison.retrieval_results[run.id], part, figures))
        else:
            part = ragas_shown[ragas_shown["run"] == _run_label(run, len(runs) > 1)]
            body.append(
                _ragas_html(
                    run,
                    comparison.ragas_results[run.id],
                    part,
                    comparison.ragas_context[run.id],
                    figures,
                )
            )
    body.append(_versions_html(runs))
    body.append(
        "<p class='caption'>The CSV/JSON artifacts and a redacted manifest of every run listed "
        "above come with this page in the report zip. API keys and tokens are never exported.</p>"
    )
    # The body is scrubbed before the plotly bundle goes in: the bundle is code, not data.
    page_body = scrub_text("\n".join(body))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}{FLIPS_CSS}</style>"
        "<script type='text/javascript'>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        f"</head><body>\n{page_body}\n</body></html>\n"
    )
