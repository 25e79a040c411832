"""The evaluation's section of a model run's card: the test-split verdict and the primary
metric per dim (core.evaluation.verdict, the same text as the page, the CLI and the report), so
a card pushed to the Hub says what ragbench found. The card itself is written by the fine-tune
(core.finetune.model_card); this section replaces its earlier copy on every test evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from core.embeddings import model_card_path
from core.evaluation.verdict import deltas_display, method_text
from core.runs.folders import Run, write_text_atomic
from core.text import replace_marked_section

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from core.evaluation.results import RetrievalEvalResult

TEST_START = "<!-- ragbench:test:start -->"
TEST_END = "<!-- ragbench:test:end -->"


def _where(result: RetrievalEvalResult) -> str:
    if result.crossfit:
        return (
            f"every accepted question, each scored by the one of {result.crossfit['folds']} fold "
            "models that never saw it"
        )
    return f"the {result.split or 'accepted'} split"


def eval_section(result: RetrievalEvalResult, label: str) -> str:
    """Markdown for the test-split result of the model labelled `label` in a retrieval eval:
    the headline verdict and the primary metric per dim, from core.evaluation.verdict (as on the page)."""
    headline = next((h for h in result.headlines() if h.model == label), None)
    rows = result.deltas[
        (result.deltas["model"] == label) & (result.deltas["metric"] == result.primary_metric)
    ]
    table = deltas_display(rows, confidence=result.confidence).drop(
        columns=["model", "metric", "family", "test", "warning"]
    )
    header = "| " + " | ".join(table.columns) + " |"
    lines = [
        TEST_START,
        "",
        "## Test-split result (ragbench retrieval eval)"
        if not result.crossfit
        else "## Cross-fitted result of its recipe (ragbench retrieval eval)",
        "",
        f"Evaluation run `{result.run_id}` on {_where(result)} ({result.gold_summary()}) "
        f"against all {result.corpus_size} chunks; base model {result.base_label}.",
        "",
        f"**Verdict:** {headline.text if headline else 'no comparison with the base'}",
        "",
        *(
            [f"**What to ship:** {rec.text}", ""]
            if (rec := result.recommendation()) is not None
            else []
        ),
        header,
        "|" + "---:|" * len(table.columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)),
        "",
        method_text(result.primary_metric, result.confidence),
        "",
    ]
    lines += [f"- {w}" for w in result.warnings] + ["", TEST_END]
    return "\n".join(lines) + "\n"


def write_eval_result(run: Run, result: RetrievalEvalResult, label: str) -> Path | None:
    """Add (or replace) the test-split section of a model run's card; None without a model."""
    path = model_card_path(run)
    if not path.parent.is_dir():
        return None
    card = path.read_text(encoding="utf-8") if path.exists() else f"# {run.manifest.name}\n"
    section = eval_section(result, label)
    write_text_atomic(path, replace_marked_section(card, section, TEST_START, TEST_END))
    return path


def update_model_cards(
    result: RetrievalEvalResult, labels: list[str], model_runs: list[Run | None]
) -> None:
    """Each tuned model run's card gets this evaluation's test-split verdict, so a card pushed
    to the Hub says what the page says. Only test-split evaluations qualify; a card that cannot
    be written is logged, never fails the evaluation (it is a courtesy copy)."""
    if result.split != "test":
        return
    for label, model_run in list(zip(labels, model_runs, strict=True))[1:]:
        if model_run is not None:
            try:
                write_eval_result(model_run, result, label)
            except OSError as exc:
                logger.warning("could not update the model card of %s: %s", model_run.id, exc)
