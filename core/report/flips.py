"""The report's flipped questions: per comparison (tuned vs base first, as the verdict), the
questions a model gained or lost at hit@k, each folded to one line (the question and its gold
chunk's two ranks) that opens on both top-k lists. Folded, not dropped: a report is an archive,
and on a few hundred questions the open lists made the page tens of thousands of pixels tall."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.evaluation.lexical import tuned_first_order
from core.text import cut_at_word

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult


MAX_FLIPS = 50  # flipped questions listed per side in the HTML (all of them are in flips.json)

CSS = """
details.flip{margin:.15em 0}details.flip>summary{cursor:pointer}
.tops{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:.2em 0 .5em 1.2em}
details.comparison>summary h4{display:inline;margin:0}details.comparison{margin:.8em 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _ranked(ids: Sequence[str], gold: set[str], texts: Mapping[str, str]) -> str:
    """A top-k list, the gold chunks starred."""
    items = []
    for cid in ids:
        mark = "★ " if cid in gold else ""
        css = ' class="gold"' if cid in gold else ""
        text = _e(cut_at_word(texts.get(cid, ""), 160))
        items.append(f"<li{css}>{mark}<code>{_e(cid)}</code> {text}</li>")
    return f'<ol class="top">{"".join(items)}</ol>'


def _flip(row: Mapping[str, Any], titles: tuple[str, str], texts: Mapping[str, str]) -> str:
    """One flipped question: its line (question, id, gold rank base → model), both lists inside."""
    gold = set(row["gold_ids"])
    ranks = f"{_e(row['base_rank'] or '>100')} → {_e(row['model_rank'] or '>100')}"
    return (
        f"<details class='flip'><summary>{_e(row['question'])} "
        f"<span class='caption'>{_e(row['query_id'])} · gold rank {ranks}</span></summary>"
        f"<div class='tops'><div><b>{_e(titles[0])}</b>{_ranked(row['base_top'], gold, texts)}"
        f"</div><div><b>{_e(titles[1])}</b>{_ranked(row['model_top'], gold, texts)}</div></div>"
        "</details>"
    )


def _comparison(comp: Mapping[str, Any], base: str, k: int, texts: Mapping[str, str]) -> str:
    """The gained and lost questions of one model against the base."""
    titles = (f"{base} top {k}", f"{comp['model']} top {k}")
    parts = []
    for side, title in (
        ("gained", f"Base miss → {comp['model']} hit"),
        ("lost", f"Base hit → {comp['model']} miss"),
    ):
        rows = comp[side]
        parts.append(f"<h5>{_e(title)} ({len(rows)})</h5>")
        if not rows:
            parts.append('<p class="caption">None.</p>')
            continue
        parts.extend(_flip(row, titles, texts) for row in rows[:MAX_FLIPS])
        if len(rows) > MAX_FLIPS:
            parts.append(f'<p class="caption">{len(rows) - MAX_FLIPS} more in flips.json.</p>')
    return "".join(parts)


def flips_html(result: RetrievalEvalResult) -> str:
    """Every comparison folded under its headline, the first (tuned vs base) open; each
    question folded to one line."""
    comparisons = result.flips.get("comparisons", [])
    if not comparisons:
        return '<p class="caption">No flips: flips need a tuned model evaluated with the base.</p>'
    texts = result.flips.get("texts", {})
    base = result.flips.get("base", result.base_label)
    parts = [
        "<p class='caption'>Each question shows its gold chunk's rank with the base → with "
        "the other model, and opens on both top-k lists (gold chunks starred).</p>"
    ]
    order = tuned_first_order([c.get("model", "") for c in comparisons], result.models)
    for n, comp in enumerate(comparisons[i] for i in order):  # tuned vs base first
        dim = "—" if comp.get("dim") is None else f"{comp['dim']}d"
        k = comp.get("k", result.flips.get("k", 5))
        headline = (
            f"{_e(comp['model'])} vs {_e(base)} at {_e(dim)}, hit@{k}: "
            f"{len(comp['gained'])} gained, {len(comp['lost'])} lost"
        )
        parts.append(
            f"<details class='comparison'{' open' if n == 0 else ''}><summary><h4>{headline}"
            f"</h4></summary>{_comparison(comp, base, k, texts)}</details>"
        )
    return "".join(parts)
