"""Compare evaluation runs side by side and export a self-contained report.

How it works:
1. `compare_runs(run_ids)` loads finished retrieval_eval and ragas_eval runs and lines up their
   headline figures: per model and dimension ndcg@10, hit_rate@5, mrr@10 and map@100 with 95%
   bootstrap intervals, the random ranker's expected score, the corpus size and the query count;
   per retriever the RAGAS means with intervals and failure counts.
2. `build_report(run_ids)` renders one HTML page: the verdicts in words (core.evaluation.verdict, as on
   the page and in the CLI), the lineage (corpus -> qa -> model -> evaluations) with every run's
   config, the metric tables, the deltas with CIs, Holm-adjusted p-values, verdicts and power,
   the flipped questions and the plotly
   charts. plotly.js is embedded once, inline (no CDN), so the file opens offline. The report's
   `files` hold the CSV/JSON artifacts, the comparison tables and a manifest of every run in the
   lineage; `report_zip(report)` packs them with the HTML.
3. Nothing secret leaves: configs and JSON artifacts pass through `redact` (string values under
   keys named like key/token/secret/password/credential/authorization become "[redacted]"; URL
   credentials, bearer tokens and sk-... keys are scrubbed anywhere), and a last pass removes
   every known secret value (the LLM key and Chroma token of the environment, plus any the caller
   passes) from the HTML and from every exported byte.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import InputError, RunError
from core.runs.folders import RUN_KINDS, Run, load_run

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from core.evaluation.results import RetrievalEvalResult
    from core.rag.results import RagasEvalResult

HEADLINE_METRICS = ("ndcg@10", "hit_rate@5", "mrr@10", "map@100")
EVAL_KINDS = ("retrieval_eval", "ragas_eval")
REDACTED = "[redacted]"
RANDOM_LABEL = "random ranker"
ALPHA = 0.05
MAX_FLIPS = 50  # flipped questions listed per side in the HTML (all of them are in flips.json)
REPORT_HTML = "report.html"

# Key names whose string values are secrets. Numbers and booleans under them stay
# (max_tokens, prompt_tokens, api_key_set are counts and flags, not secrets).
SECRET_KEY = re.compile(r"key|token|secret|passw|credential|authorization|cookie", re.IGNORECASE)
SECRET_ENV = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
MIN_SECRET_LEN = 8  # shorter values are too likely to occur by chance to be scrubbed verbatim
_VALUE_PATTERNS = (
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/\s:@\"']+:[^/\s@\"']+@"), r"\1" + REDACTED + "@"),
    (
        re.compile(
            r"([?&](?:api[_-]?key|key|token|access_token|secret|password)=)[^&\s\"'<]+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # Prose says "Basic configuration"; only a credential has digits and length.
    (
        re.compile(r"\b(Bearer|Authorization:\s*Basic)\s+(?=[\w.~+/=-]*\d)[\w.~+/=-]{12,}"),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), REDACTED),
)


@dataclass(frozen=True)
class Report:
    """A rendered report: the HTML page and the files that go with it (path in zip -> bytes)."""

    html: str
    files: dict[str, bytes]
    run_ids: tuple[str, ...] = ()
    title: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class Comparison:
    """Evaluation runs side by side.

    `retrieval`: long table, one row per (run, model, dim, metric) plus the random ranker per run
    and metric: run_id, run_label, model, kind, dim, metric, value, ci_low, ci_high, corpus_size,
    n_queries, random_baseline. `ragas`: `core.rag.scoring.summary_table` rows with run_id,
    run_label, n_samples, corpus_size and k."""

    run_ids: list[str]
    retrieval: pd.DataFrame
    ragas: pd.DataFrame
    retrieval_results: dict[str, RetrievalEvalResult] = field(default_factory=dict)
    ragas_results: dict[str, RagasEvalResult] = field(default_factory=dict)
    ragas_context: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ secrets


def scrub_text(text: str) -> str:
    """Remove secret-looking substrings: URL credentials, key/token query parameters, bearer
    tokens and sk-... keys."""
    for pattern, repl in _VALUE_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _redact_leaves(obj: Any) -> Any:
    if isinstance(obj, str):
        return REDACTED if obj else obj
    if isinstance(obj, Mapping):
        return {k: _redact_leaves(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact_leaves(v) for v in obj]
    return obj


def redact(obj: Any) -> Any:
    """A copy of a JSON-like value fit for export: string values under secret-named keys
    (*key*, *token*, *secret*, *password*, ...) become "[redacted]", and every other string is
    scrubbed of secret-looking substrings. Numbers and booleans are kept."""
    if isinstance(obj, Mapping):
        return {
            k: _redact_leaves(v) if SECRET_KEY.search(str(k)) else redact(v) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj


def _worth_scrubbing(value: str) -> bool:
    """Long enough not to occur by chance, and not a number or a flag (a *_TOKEN_LIMIT=100000
    must not erase every 100000 in a report)."""
    plain = value.strip()
    if len(plain) < MIN_SECRET_LEN or plain.lower() in {"true", "false", "none", "null"}:
        return False
    return not re.fullmatch(r"[\d.,_+-]+", plain)


def known_secrets(extra: Iterable[str] = ()) -> list[str]:
    """Secret values that must never be exported: `extra` plus the values of environment
    variables named like *API_KEY*, *TOKEN*, *SECRET*, *PASSWORD* (longest first)."""
    values = {s for s in extra if s and _worth_scrubbing(s)}
    for name, value in os.environ.items():
        if SECRET_ENV.search(name) and _worth_scrubbing(value):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _strip_secrets(data: bytes, secrets_: Sequence[str]) -> bytes:
    """Replace every secret, also as it reads once HTML- or JSON-escaped."""
    for secret in secrets_:
        for form in {secret, html.escape(secret), json.dumps(secret)[1:-1]}:
            data = data.replace(form.encode("utf-8"), REDACTED.encode("utf-8"))
    return data


# ------------------------------------------------------------------ lineage


def _kind_order(run: Run) -> tuple[int, str, str]:
    return (RUN_KINDS.index(run.kind), run.manifest.created_at, run.id)


def lineage_of(run_ids: Sequence[str]) -> list[Run]:
    """The runs and all their ancestors, ordered corpus, qa, model, retrieval_eval, rag,
    ragas_eval (oldest first within a kind). Missing ancestors are skipped."""
    found: dict[str, Run] = {}
    frontier = list(run_ids)
    while frontier:
        run_id = frontier.pop()
        if run_id in found:
            continue
        try:
            run = load_run(run_id)
        except RunError:
            continue
        found[run_id] = run
        frontier.extend(run.manifest.parents.values())
    return sorted(found.values(), key=_kind_order)


def lineage_chain(run_id: str) -> str:
    """'corpus:X → qa:Y → model:Z → retrieval_eval:W' (runs of one kind joined with ' + ')."""
    groups: dict[str, list[str]] = {}
    for run in lineage_of([run_id]):
        groups.setdefault(run.kind, []).append(f"{run.kind}:{run.id}")
    return " → ".join(" + ".join(ids) for ids in groups.values())


def redacted_manifest(run: Run) -> dict[str, Any]:
    """A run's manifest with its config (and everything else) redacted."""
    return redact(run.manifest.model_dump())


# ------------------------------------------------------------------ comparison


def _short(run_id: str) -> str:
    return run_id.rsplit("-", 1)[-1]


def _run_label(run: Run, several: bool) -> str:
    return f"{run.manifest.name} ({_short(run.id)})" if several else run.manifest.name


def _corpus_of(run: Run) -> Run | None:
    return next((r for r in lineage_of([run.id]) if r.kind == "corpus"), None)


def corpus_size_of(run: Run) -> int | None:
    """The number of chunks in the run's corpus (from its summary, else by counting lines)."""
    corpus = _corpus_of(run)
    if corpus is None:
        return None
    n = corpus.manifest.summary.get("n_chunks")
    if isinstance(n, int):
        return n
    path = corpus.artifact("chunks.jsonl")
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def load_eval_runs(run_ids: Sequence[str]) -> list[Run]:
    """Load finished evaluation runs; a clear InputError for any other kind or status."""
    if not run_ids:
        raise InputError("No evaluation run chosen.", fix="pick one or more evaluation runs")
    runs = []
    for run_id in dict.fromkeys(run_ids):
        run = load_run(run_id)
        if run.kind not in EVAL_KINDS:
            raise InputError(
                f"Run {run.id} is a {run.kind} run; only evaluation runs can be compared.",
                fix="pick retrieval_eval or ragas_eval runs",
            )
        if run.manifest.status != "done":
            raise InputError(
                f"Run {run.id} is {run.manifest.status}, not done.",
                found=run.manifest.error or "",
                fix="pick a finished evaluation run",
            )
        runs.append(run)
    return runs


def retrieval_headline(
    result: RetrievalEvalResult, label: str = "", metrics: Sequence[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """One evaluation's headline metrics per model and dim (long), plus the random ranker."""
    frame = result.metrics[result.metrics["metric"].isin(metrics)].copy()
    frame.insert(0, "run_id", result.run_id)
    frame.insert(1, "run_label", label or result.run_id)
    rows = [
        {
            "run_id": result.run_id,
            "run_label": label or result.run_id,
            "model": RANDOM_LABEL,
            "kind": "random",
            "dim": pd.NA,
            "metric": m,
            "value": result.random_baseline.get(m, math.nan),
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n_queries": result.n_queries,
            "corpus_size": result.corpus_size,
            "random_baseline": result.random_baseline.get(m, math.nan),
        }
        for m in metrics
    ]
    columns = [
        "run_id",
        "run_label",
        "model",
        "kind",
        "dim",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_queries",
        "corpus_size",
        "random_baseline",
    ]
    out = pd.concat([frame[columns], pd.DataFrame(rows, columns=columns)], ignore_index=True)
    out["metric"] = pd.Categorical(out["metric"], categories=list(metrics), ordered=True)
    out["dim"] = out["dim"].astype("Int64")
    return out


def compare_runs(run_ids: Sequence[str]) -> Comparison:
    """Load finished retrieval_eval and ragas_eval runs and line up their headline figures."""
    from core.evaluation.results import load_retrieval_eval
    from core.rag.results import load_ragas_eval
    from core.rag.summary import summary_table

    runs = load_eval_runs(run_ids)
    several = len(runs) > 1
    retrieval_parts, ragas_parts, warnings = [], [], []
    retrieval_results, ragas_results, contexts = {}, {}, {}
    for run in runs:
        label = _run_label(run, several)
        if run.kind == "retrieval_eval":
            result = load_retrieval_eval(run)
            retrieval_results[run.id] = result
            retrieval_parts.append(retrieval_headline(result, label))
            warnings.extend(f"{label}: {w}" for w in result.warnings)
            continue
        ragas = load_ragas_eval(run, with_samples=False)
        ragas_results[run.id] = ragas
        context = contexts[run.id] = ragas_context(run, ragas)
        table = summary_table(ragas.summary)
        table.insert(0, "run_id", run.id)
        table.insert(1, "run_label", label)
        table["n_samples"] = context["n_samples"]
        table["corpus_size"] = context["corpus_size"]
        table["k"] = context["k"]
        ragas_parts.append(table)
        if context["low_confidence_judge"]:
            warnings.append(
                f"{label}: the judge is a tiny local model; its judged scores are low-confidence."
            )
    return Comparison(
        run_ids=[r.id for r in runs],
        retrieval=pd.concat(retrieval_parts, ignore_index=True)
        if retrieval_parts
        else pd.DataFrame(),
        ragas=pd.concat(ragas_parts, ignore_index=True) if ragas_parts else pd.DataFrame(),
        retrieval_results=retrieval_results,
        ragas_results=ragas_results,
        ragas_context=contexts,
        warnings=warnings,
    )


def ragas_context(run: Run, result: RagasEvalResult) -> dict[str, Any]:
    """Corpus size, samples, top-k and the random retriever's id-based scores of a ragas_eval
    run (one gold chunk per question: recall k/N, precision 1/N)."""
    scores = result.scores
    k = None
    for rag_id in result.summary.get("rag_runs", {}).values():
        try:
            k = load_run(rag_id).manifest.config.get("k", k)
        except RunError:
            continue
    n = corpus_size_of(run)
    random = {}
    if n and k:
        random = {
            "id_based_context_recall": min(1.0, k / n),
            "id_based_context_precision": 1.0 / n,
        }
    return {
        "corpus_size": n,
        "n_samples": int(scores["sample_id"].nunique()) if not scores.empty else 0,
        "k": k,
        "random": random,
        "judge": (result.summary.get("judge") or {}).get("label", "none (judge-free metrics)"),
        "low_confidence_judge": bool(result.summary.get("low_confidence_judge")),
    }


def fmt(value: Any, signed: bool = False) -> str:
    """A figure as shown everywhere: 3 decimals ('—' when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"


def fmt_ci(value: Any, low: Any, high: Any, signed: bool = False) -> str:
    """'0.812 [0.750, 0.870]' (just the value when there is no interval)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return fmt(value, signed)
    return f"{fmt(value, signed)} [{fmt(low, signed)}, {fmt(high, signed)}]"


def _dim_text(dim: Any) -> str:
    return "—" if dim is None or pd.isna(dim) else str(int(dim))


def headline_table(retrieval: pd.DataFrame) -> pd.DataFrame:
    """The long retrieval comparison as one row per (run, model, dim) with 'value [low, high]'
    per headline metric, and the corpus size and query count."""
    if retrieval.empty:
        return pd.DataFrame()
    frame = retrieval.copy()
    frame["cell"] = [
        fmt_ci(v, lo, hi)
        for v, lo, hi in zip(frame["value"], frame["ci_low"], frame["ci_high"], strict=True)
    ]
    frame["dim_key"] = [_dim_text(d) for d in frame["dim"]]
    order = {
        (r, m): i
        for i, (r, m) in enumerate(dict.fromkeys(zip(frame["run_id"], frame["model"], strict=True)))
    }
    wide = frame.pivot_table(
        index=["run_id", "run_label", "model", "kind", "dim_key", "corpus_size", "n_queries"],
        columns="metric",
        values="cell",
        aggfunc="first",
        observed=True,
    ).reset_index()
    wide["_order"] = [order[(r, m)] for r, m in zip(wide["run_id"], wide["model"], strict=True)]
    wide["_dim"] = pd.to_numeric(wide["dim_key"], errors="coerce").fillna(-1)
    wide = wide.sort_values(["_order", "_dim"], ascending=[True, False])
    metrics = [m for m in HEADLINE_METRICS if m in wide.columns]
    wide = wide.rename(columns={"dim_key": "dim", "run_label": "run", "corpus_size": "corpus"})
    wide = wide.rename(columns={"n_queries": "queries"})
    columns = ["run", "model", "kind", "dim", *metrics, "corpus", "queries"]
    return wide[columns].reset_index(drop=True)


def deltas_table(
    result: RetrievalEvalResult, metrics: Sequence[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """Tuned-minus-base deltas of the headline metrics, formatted (core.evaluation.verdict.deltas_display):
    the primary family first, Holm p, verdict and power."""
    from core.evaluation.verdict import deltas_display

    return deltas_display(result.deltas, metrics, confidence=result.confidence)


def delta_sentences(result: RetrievalEvalResult, metric: str | None = None) -> list[str]:
    """One plain sentence per tuned model and dim for `metric` (the primary metric by default),
    from core.evaluation.verdict.row_sentence."""
    from core.evaluation.verdict import row_sentence

    if result.deltas.empty:
        return []
    metric = metric or result.primary_metric
    rows = result.deltas[result.deltas["metric"] == metric].sort_values(
        ["model", "dim"], ascending=[True, False]
    )
    return [row_sentence(r, result.confidence) for _, r in rows.iterrows()]


def ragas_display_table(ragas: pd.DataFrame) -> pd.DataFrame:
    """RAGAS comparison rows formatted: mean [CI], scored, failed, failures by reason."""
    columns = [
        "run",
        "retriever",
        "metric",
        "mean [95% CI]",
        "scored",
        "failed",
        "failures",
        "samples",
    ]
    if ragas.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "run": ragas["run_label"],
            "retriever": ragas["retriever"],
            "metric": ragas["metric"],
            "mean [95% CI]": [
                fmt_ci(m, lo, hi)
                for m, lo, hi in zip(ragas["mean"], ragas["ci_low"], ragas["ci_high"], strict=True)
            ],
            "scored": ragas["n_ok"],
            "failed": ragas["n_failed"],
            "failures": ragas["failures"].replace("", "—"),
            "samples": ragas["n_samples"],
        },
        columns=columns,
    ).reset_index(drop=True)


def ragas_deltas_table(result: RagasEvalResult) -> pd.DataFrame:
    """Each retriever minus base per RAGAS metric: Δ, CI, sign-flip p, Holm p and the verdict
    (core.evaluation.verdict; the metrics of one retriever are one exploratory family)."""
    from core.evaluation.statistics import format_p, holm_adjust
    from core.evaluation.verdict import is_significant, verdict_text

    rows = []
    for other, metrics in result.summary.get("comparisons", {}).items():
        tested = [m for m, e in metrics.items() if e.get("p_value") is not None]
        adjusted = dict(
            zip(tested, holm_adjust([metrics[m]["p_value"] for m in tested]), strict=True)
        )
        for metric, e in metrics.items():
            delta, low, high, p = (e.get(x) for x in ("delta", "ci_low", "ci_high", "p_value"))
            p_holm = adjusted.get(metric)
            significant = p_holm is not None and is_significant(p_holm, low, high, ALPHA)
            rows.append(
                {
                    "retriever": other,
                    "metric": metric,
                    "pairs": e.get("n_pairs", 0),
                    "delta": fmt(delta, True),
                    "95% CI": "—" if low is None else f"[{fmt(low, True)}, {fmt(high, True)}]",
                    "p": "—" if p is None else format_p(float(p)),
                    "Holm p": "—" if p_holm is None else format_p(float(p_holm)),
                    "better / worse": f"{e.get('n_better', 0)} / {e.get('n_worse', 0)}",
                    "verdict": "too few pairs" if p is None else verdict_text(significant, p_holm),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "retriever",
            "metric",
            "pairs",
            "delta",
            "95% CI",
            "p",
            "Holm p",
            "better / worse",
            "verdict",
        ],
    )


# ------------------------------------------------------------------ figures


def comparison_figure(retrieval: pd.DataFrame, metric: str = "ndcg@10") -> go.Figure:
    """`metric` per dimension for every (run, model), with 95% CI error bars; BM25 at its own
    x position and each run's random ranker as a dotted line."""
    import plotly.graph_objects as go

    from core.charts import PALETTE, RANDOM_COLOR

    fig = go.Figure()
    rows = retrieval[retrieval["metric"] == metric] if not retrieval.empty else retrieval
    if rows.empty:
        fig.update_layout(title=f"No retrieval values for {metric}")
        return fig
    several = rows["run_id"].nunique() > 1
    scored = rows[rows["kind"] != "random"]
    series = list(
        dict.fromkeys(zip(scored["run_id"], scored["run_label"], scored["model"], strict=True))
    )
    for i, (run_id, run_label, model) in enumerate(series):
        part = scored[(scored["run_id"] == run_id) & (scored["model"] == model)].sort_values(
            "dim", ascending=False
        )
        x = ["lexical" if pd.isna(d) else f"{int(d)}d" for d in part["dim"]]
        name = f"{model} · {run_label}" if several else model
        fig.add_trace(
            go.Bar(
                x=x,
                y=part["value"],
                name=name,
                marker={"color": PALETTE[i % len(PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["value"]).tolist(),
                    "arrayminus": (part["value"] - part["ci_low"]).tolist(),
                },
                customdata=part[["ci_low", "ci_high"]].to_numpy(),
                hovertemplate="%{x}: %{y:.3f} (95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                "<extra>" + html.escape(name) + "</extra>",
            )
        )
    captions = []
    lines: dict[str, list[str]] = {}  # one dotted line per distinct random score
    for run_id, group in rows.groupby("run_id", sort=False):
        baseline = float(group["random_baseline"].iloc[0])
        lines.setdefault(f"{baseline:.3f}", []).append(_short(run_id))
        captions.append(
            (f"{group['run_label'].iloc[0]}: " if several else "")
            + f"corpus {int(group['corpus_size'].iloc[0]):,} chunks · "
            f"{int(group['n_queries'].iloc[0]):,} queries · random {baseline:.3f}"
        )
    for value, owners in lines.items():
        which = f" ({', '.join(owners)})" if len(lines) > 1 else ""
        fig.add_hline(
            y=float(value),
            line={"color": RANDOM_COLOR, "dash": "dot"},
            annotation_text=f"random ranker {value}{which}",
            annotation_position="top right",
        )
    fig.update_layout(
        barmode="group",
        title={"text": f"{metric} side by side<br><sup>{' | '.join(captions)}</sup>"},
        xaxis={"title": "dimension", "type": "category"},
        yaxis={"title": metric, "range": [0, 1.05]},
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 80},
    )
    return fig


def ragas_comparison_figure(ragas: pd.DataFrame) -> go.Figure:
    """RAGAS means per metric with CIs for every (run, retriever); failure counts in the ticks."""
    from core.charts import ragas_bars_figure

    table = ragas.copy()
    if not table.empty and table["run_id"].nunique() > 1:
        table["retriever"] = table["retriever"] + " · " + table["run_id"].map(_short)
    return ragas_bars_figure(
        table, title="RAGAS metrics side by side (mean over scored samples, 95% CI)"
    )


# ------------------------------------------------------------------ HTML

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


def _lineage_html(run_ids: Sequence[str], lineage: Sequence[Run]) -> str:
    parts = ["<h2>Lineage</h2><ul>"]
    for run_id in run_ids:
        parts.append(f"<li><code>{_e(lineage_chain(run_id))}</code></li>")
    parts.append("</ul>")
    table = pd.DataFrame(
        [
            {
                "kind": r.kind,
                "id": r.id,
                "name": r.manifest.name,
                "status": r.manifest.status,
                "created": r.manifest.created_at[:19],
                "parents": ", ".join(f"{k}: {v}" for k, v in r.manifest.parents.items()),
                "summary": json.dumps(redact(r.manifest.summary), default=str)[:200],
            }
            for r in lineage
        ]
    )
    parts.append(_table(table))
    parts.append("<h3>Configs</h3>")
    for run in lineage:
        parts.append(
            f"<details><summary>{_e(run.kind)} <code>{_e(run.id)}</code> · {_e(run.manifest.name)}"
            f"</summary>{_json_block(run.manifest.config)}</details>"
        )
    return "".join(parts)


def _flips_html(result: RetrievalEvalResult) -> str:
    comparisons = result.flips.get("comparisons", [])
    if not comparisons:
        return '<p class="caption">No flips: flips need a tuned model evaluated with the base.</p>'
    texts = result.flips.get("texts", {})
    base = result.flips.get("base", result.base_label)
    parts = []

    def ranked(ids: Sequence[str], gold: set[str]) -> str:
        items = []
        for cid in ids:
            mark = "★ " if cid in gold else ""
            css = ' class="gold"' if cid in gold else ""
            items.append(
                f"<li{css}>{mark}<code>{_e(cid)}</code> {_e(texts.get(cid, '')[:160])}</li>"
            )
        return f'<ol class="top">{"".join(items)}</ol>'

    for comp in comparisons:
        dim = "—" if comp.get("dim") is None else f"{comp['dim']}d"
        k = comp.get("k", result.flips.get("k", 5))
        parts.append(
            f"<h4>{_e(comp['model'])} vs {_e(base)} at {_e(dim)}, hit@{k}: "
            f"{len(comp['gained'])} gained, {len(comp['lost'])} lost</h4>"
        )
        for side, title in (
            ("gained", f"Base miss → {comp['model']} hit"),
            ("lost", f"Base hit → {comp['model']} miss"),
        ):
            rows = comp[side]
            parts.append(f"<h5>{_e(title)} ({len(rows)})</h5>")
            if not rows:
                parts.append('<p class="caption">None.</p>')
                continue
            body = []
            for row in rows[:MAX_FLIPS]:
                gold = set(row["gold_ids"])
                body.append(
                    "<tr>"
                    f"<td>{_e(row['question'])}<br><span class='caption'>{_e(row['query_id'])}</span></td>"
                    f"<td class='num'>{_e(row['base_rank'] or '>100')} → {_e(row['model_rank'] or '>100')}</td>"
                    f"<td>{ranked(row['base_top'], gold)}</td>"
                    f"<td>{ranked(row['model_top'], gold)}</td>"
                    "</tr>"
                )
            parts.append(
                "<table><thead><tr><th>question</th><th>gold rank base → tuned</th>"
                f"<th>{_e(base)} top {k}</th><th>{_e(comp['model'])} top {k}</th></tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>"
            )
            if len(rows) > MAX_FLIPS:
                parts.append(f'<p class="caption">{len(rows) - MAX_FLIPS} more in flips.json.</p>')
    return "".join(parts)


def _retrieval_html(
    run: Run, result: RetrievalEvalResult, headline: pd.DataFrame, figures: _Figures
) -> str:
    from core.charts import (
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
        f"{result.corpus_size:,} chunks · <b>Queries:</b> {result.n_queries:,} ({_e(split)} split)"
        " · <b>Random ranker:</b> "
        + ", ".join(f"{m} {fmt(result.random_baseline.get(m))}" for m in HEADLINE_METRICS)
        + "</p>",
    ]
    parts.append(f"<p><b>Gold chunks:</b> {_e(result.gold_summary())}</p>")
    for warning in result.warnings:
        parts.append(f"<div class='warn'>{_e(warning)}</div>")
    sentences = delta_sentences(result)
    if sentences:
        parts.append("<h3>Verdict</h3>")
        parts.extend(f"<p><b>{_e(h.text)}</b></p>" for h in result.headlines())
        parts.append("<ul>")
        parts.extend(f"<li>{_e(s)}</li>" for s in sentences)
        parts.append(
            f"</ul><p class='caption'>{_e(result.primary_metric)} is the primary metric: its "
            "tests across the dims of one model are one Holm family and decide the verdict; the "
            "other metrics are exploratory, each adjusted within its own family. Significant "
            "means the Holm-adjusted p of the paired test (McNemar for hit rate, sign-flip "
            f"permutation otherwise) is below {1 - result.confidence:.2f} and the "
            f"{result.confidence:.0%} bootstrap interval of the difference excludes zero.</p>"
        )
    parts.append("<h3>Headline metrics (mean [95% CI])</h3>")
    parts.append(_table(headline.drop(columns=["run"]), numeric=HEADLINE_METRICS))
    parts.append(figures.div(metric_vs_dim_figure(result.metrics, "ndcg@10")))
    if not result.deltas.empty:
        parts.append("<h3>Tuned vs base: deltas</h3>")
        parts.append(_table(deltas_table(result), numeric=("base", "tuned", "delta")))
        parts.append(figures.div(delta_bars_figure(result.deltas, "ndcg@10")))
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


def _ragas_html(
    run: Run,
    result: RagasEvalResult,
    table: pd.DataFrame,
    context: Mapping[str, Any],
    figures: _Figures,
) -> str:
    from core.charts import ragas_bars_figure
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
        f"<title>{_e(title)}</title><style>{_CSS}</style>"
        "<script type='text/javascript'>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        f"</head><body>\n{page_body}\n</body></html>\n"
    )


# ------------------------------------------------------------------ files


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(redact(obj), indent=2, ensure_ascii=False, default=str) + "\n").encode()


def _artifact_bytes(path: Any) -> bytes:
    """An artifact for export: JSON redacted; text scrubbed of secret-looking strings."""
    if path.suffix == ".json":
        return _json_bytes(json.loads(path.read_text(encoding="utf-8")))
    return scrub_text(path.read_text(encoding="utf-8")).encode("utf-8")


EXPORTED_ARTIFACTS = {
    "retrieval_eval": (
        "metrics.csv",
        "deltas.csv",
        "tradeoff.csv",
        "per_query.jsonl",
        "flips.json",
        "similarity.csv",
        "result.json",
    ),
    "ragas_eval": ("scores.csv", "summary.json", "usage.json"),
    "model": ("metrics.json",),
    "rag": ("samples.jsonl", "usage.json"),
}


def report_files(comparison: Comparison, lineage: Sequence[Run]) -> dict[str, bytes]:
    """The report's files: comparison tables, artifacts and redacted manifests."""
    files: dict[str, bytes] = {}
    if not comparison.retrieval.empty:
        long = comparison.retrieval.copy()
        long["metric"] = long["metric"].astype(str)
        files["comparison/retrieval_headline.csv"] = long.to_csv(index=False).encode()
    if not comparison.ragas.empty:
        files["comparison/ragas_summary.csv"] = comparison.ragas.to_csv(index=False).encode()
    for run in lineage:
        files[f"manifests/{run.kind}/{run.id}.json"] = _json_bytes(redacted_manifest(run))
        for name in EXPORTED_ARTIFACTS.get(run.kind, ()):
            path = run.artifact(name)
            if path.is_file():
                files[f"runs/{run.id}/{name}"] = _artifact_bytes(path)
    return files


def build_report(run_ids: Sequence[str], *, title: str = "", secrets: Iterable[str] = ()) -> Report:
    """A self-contained report of finished evaluation runs (typically one base-vs-tuned
    retrieval_eval run, optionally with its ragas_eval run): HTML with inline plotly.js plus
    CSV/JSON artifacts and redacted manifests. `secrets` are extra values (an API key typed into
    the UI) that must not appear anywhere in it."""
    comparison = compare_runs(run_ids)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    title = title or "ragbench report: " + " vs ".join(
        load_run(r).manifest.name for r in comparison.run_ids
    )
    lineage = lineage_of(comparison.run_ids)
    hidden = known_secrets(secrets)
    page = render_html(comparison, title, created_at)
    page = _strip_secrets(page.encode("utf-8"), hidden).decode("utf-8")
    files = {
        name: _strip_secrets(data, hidden)
        for name, data in report_files(comparison, lineage).items()
    }
    return Report(
        html=page,
        files=files,
        run_ids=tuple(comparison.run_ids),
        title=title,
        created_at=created_at,
    )


def report_zip(report: Report) -> bytes:
    """The report as a zip: report.html at the top, then the artifacts and manifests."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(REPORT_HTML, report.html)
        for name, data in sorted(report.files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def report_file_name(report: Report, suffix: str) -> str:
    """'ragbench-report-<run>-<date>.html' style names for downloads."""
    stamp = (report.created_at or datetime.now(UTC).isoformat())[:10]
    first = _short(report.run_ids[0]) if report.run_ids else "runs"
    return f"ragbench-report-{first}-{stamp}{suffix}"
