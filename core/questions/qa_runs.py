"""A qa run on disk: its items (core.questions.dataset), the gate report and the LLM usage, saved
only when the dataset does not leak between splits, with nothing left behind on failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.documents.corpus import load_chunks
from core.errors import RunError
from core.questions.dataset import QAItem, load_qa, save_qa
from core.questions.gate import REASONS, gate_counts
from core.questions.splits import (
    Dealing,
    SplitConfig,
    check_no_leak,
    dealing_of,
    split_counts,
)
from core.runs.folders import Run, create_run, load_run
from core.runs.guard import discard_on_failure

if TYPE_CHECKING:
    pass


GATE_REPORT_FILE = "gate_report.json"


USAGE_FILE = "usage.json"


def write_qa_artifacts(
    run: Run,
    items: Sequence[QAItem],
    gate_report: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    split_config: SplitConfig | None = None,
) -> None:
    """Write qa.jsonl, gate_report.json and usage.json of a qa run. With the `split_config` the
    splits were dealt by, the report records asked against achieved shares (`dealing`)."""
    save_qa(run, list(items))
    report = {**(gate_report or {}), **gate_counts(items)}
    report.setdefault("reasons", {k: v for k, v in REASONS.items() if k in report["by_reason"]})
    report["splits"] = split_counts(items)
    if split_config is not None:
        report["dealing"] = dealing_of(items, split_config).to_dict()
    run.write_json(GATE_REPORT_FILE, report)
    run.write_json(
        USAGE_FILE,
        usage
        or {
            "calls": 0,
            "cached": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "failures": {},
        },
    )


def _summary(items: Sequence[QAItem]) -> dict[str, Any]:
    counts = gate_counts(items)
    accepted = [i for i in items if i.status == "accepted"]
    return {
        "n_items": counts["total"],
        "n_accepted": counts["accepted"],
        "n_rejected": counts["rejected"],
        "n_chunks": len({i.chunk_id for i in accepted}),
        "n_test": sum(i.split == "test" for i in accepted),
        "n_multi_gold": sum(len(i.gold_ids) > 1 for i in accepted),
    }


def save_qa_run(
    items: Sequence[QAItem],
    corpus_run_id: str,
    *,
    name: str = "",
    config: dict[str, Any] | None = None,
    gate_report: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    source_run_id: str | None = None,
    extra_parents: dict[str, str] | None = None,
) -> Run:
    """A finished qa run on a corpus (and, for review edits, the qa run it came from). A leaking
    dataset is refused before anything is written; a failed write leaves no run behind."""
    accepted = [i for i in items if i.status == "accepted"]
    texts = None
    if any(i.evidence for i in accepted):
        texts = {c.id: c.text for c in load_chunks(corpus_run_id)}
    check_no_leak(accepted, texts)
    parents = {"corpus": corpus_run_id, **(extra_parents or {})}
    if source_run_id:
        parents["source"] = source_run_id
    with discard_on_failure() as created:
        run = create_run("qa", name=name, config=config or {}, parents=parents)
        created.append(run)
        split = (config or {}).get("split")
        split_config = SplitConfig.from_dict(split) if isinstance(split, dict) else None
        write_qa_artifacts(run, items, gate_report, usage, split_config)
        run.set_status("done", **_summary(items))
    return run


def corpus_of(qa_run: Run | str) -> str:
    """The corpus run id a qa run was made on."""
    run = load_run(qa_run) if isinstance(qa_run, str) else qa_run
    corpus = run.manifest.parents.get("corpus")
    if not corpus:
        raise RunError(f"QA run {run.id} names no corpus run.", fix="re-create it from a corpus")
    return corpus


def read_gate_report(run: Run | str) -> dict[str, Any]:
    """The gate report of a qa run (counts computed from qa.jsonl when the file is missing)."""
    run = load_run(run) if isinstance(run, str) else run
    if run.artifact(GATE_REPORT_FILE).exists():
        return run.read_json(GATE_REPORT_FILE)
    return gate_counts(load_qa(run, accepted_only=False))


def read_dealing(run: Run | str) -> Dealing | None:
    """How a qa run's chunks were dealt, asked against achieved (None for runs made before it
    was recorded, or without a split config)."""
    data = read_gate_report(run).get("dealing")
    return Dealing.from_dict(data) if isinstance(data, dict) else None


def read_usage(run: Run | str) -> dict[str, Any]:
    """The LLM usage of a qa run ({} when it made no calls)."""
    run = load_run(run) if isinstance(run, str) else run
    return run.read_json(USAGE_FILE) if run.artifact(USAGE_FILE).exists() else {}


def shortfall_text(summary: dict[str, Any]) -> str:
    """'asked for 8 questions (2 a chunk), the LLM returned 4: 4 chunk(s) gave fewer than
    asked' from a qa run's summary ('' when nothing fell short, or for other runs)."""
    asked, returned = summary.get("n_asked"), summary.get("n_returned")
    short = int(summary.get("n_short_chunks") or 0)
    if asked is None or returned is None or (not short and returned >= asked):
        return ""
    text = f"asked for {asked} question(s), the LLM returned {returned}"
    return text + (f": {short} chunk(s) gave fewer than asked" if short else "")
