"""What a headline verdict must say besides its tests: that queries copied from the documents
favour lexical retrieval, and what a cross-fitted verdict judges. Appended by
core.evaluation.results.RetrievalEvalResult.headlines, so the page, the CLI, the report and the
model card say it alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.formatting import signed

COPIED_SOURCES = ("heading", "cloze")


def copied_query_caution(sources: Mapping[str, int]) -> str:
    """A caution when some evaluated questions were copied from the documents ('' when none):
    headings and cloze sentences share words with their passages by construction, so BM25 and
    hybrids look better on them than on questions people ask."""
    copied = sum(int(sources.get(s, 0)) for s in COPIED_SOURCES)
    total = sum(int(v) for v in sources.values())
    if not copied or not total:
        return ""
    return (
        f"Caution: {copied:,} of the {total:,} questions are headings or sentences copied from "
        "the documents; such queries share their passage's words by construction and favour "
        "lexical retrieval (BM25, hybrids). Evaluate on human-written or LLM questions (an aligned "
        "question set keeps them out of training) before trusting this verdict."
    )


def crossfit_note(crossfit: Mapping[str, Any], metric: str) -> str:
    """What a cross-fitted verdict judges, and how much the gain varies from fold to fold ('' for
    an evaluation that is not cross-fitted)."""
    if not crossfit:
        return ""
    folds = int(crossfit.get("folds", 0))
    text = (
        f"What this judges: the recipe, that is the expected gain of fine-tuning this way on this "
        f"data, estimated from {folds} fold models, each scoring only the questions it never "
        "trained on (every question is a held-out test question once). Its intervals also "
        "allow for how much the fold models differ (a fold-level random-effects interval, "
        f"{max(1, folds - 1)} degrees of freedom), so a verdict speaks for the recipe, not only "
        "for these models."
    )
    spread = pd.DataFrame(crossfit.get("spread") or [])
    if not spread.empty:
        top = spread[spread["dim"] == spread["dim"].max()]
        text += (
            f" Across the {len(top)} folds, Δ {metric} at {int(top['dim'].iloc[0])}d runs from "
            f"{signed(float(top['delta'].min()))} to {signed(float(top['delta'].max()))}."
        )
    return text
