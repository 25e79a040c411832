"""A reranker's model card: sentence-transformers' own README.md for the cross-encoder, extended
with our protocol between the fine-tune card's markers (core.finetune.model_card), so a re-save
replaces it: the question set and its sources, how pairs and negatives were made (no validation
or test chunk mined), the start (said plainly when it had no trained head), the loss and the
settings, validation nDCG@10 of the miner alone, the reranker before and after training, the
cautions and our versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.embeddings import model_card_path
from core.finetune.model_card import END, START, _corpus_id, extend_card
from core.questions.sources import sources_text, structure_only_caution
from core.rerankers import validation_verdict
from core.runs.folders import Run, write_text_atomic


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def reranker_protocol(run: Run, metrics: dict[str, Any], warnings: list[str]) -> str:
    """Markdown for our protocol section of a reranker's card (between the markers)."""
    cfg, data = run.manifest.config, metrics.get("data", {})
    start, top = cfg.get("start", {}), metrics.get("rerank_top")
    miner = cfg.get("miner", {})
    retriever, before, after = (metrics.get(k, {}) for k in ("retriever", "before", "after"))
    verdict = validation_verdict(retriever.get("ndcg@10"), after.get("ndcg@10"), top)
    lines = [
        START,
        "",
        "## Training protocol (ragbench reranker)",
        "",
        "| Setting | Value |",
        "|---|---|",
        f"| Corpus | {data.get('corpus_size', '–')} chunks (corpus run `{_corpus_id(run)}`) |",
        f"| Question set | qa run `{run.manifest.parents.get('qa', '')}`"
        f"{'; ' + sources_text(data['sources']) if data.get('sources') else ''} |",
        f"| Questions | train {data.get('n_train', '–')} · validation "
        f"{data.get('n_validation', '–')} · test {data.get('n_test', '–')}, split by chunk |",
        f"| Pairs | {data.get('n_pairs', '–')}: {data.get('positives', '–')} positives (label 1) and "
        f"{data.get('n_negatives', '–')} hard negatives (label 0) for "
        f"{data.get('n_questions_with_negatives', '–')} questions |",
        f"| Hard negatives | mined by {miner.get('source', 'default')} "
        f"`{miner.get('ref') or 'all-MiniLM-L6-v2'}`, ranks {cfg.get('negatives_range_min')} to "
        f"{cfg.get('negatives_range_max')}, {cfg.get('num_negatives')} per question; never a "
        "validation or test chunk, never another gold chunk of the same question |",
        f"| Start | {start.get('source', '')}: `{start.get('ref') or 'all-MiniLM-L6-v2'}` |",
        f"| Loss | binary cross-entropy on (question, passage) pairs, positive weight "
        f"{cfg.get('num_negatives')} |",
        f"| Hyper-parameters | epochs {cfg.get('epochs')}, batch {cfg.get('batch_size')}, lr "
        f"{cfg.get('learning_rate')}, warmup {cfg.get('warmup_ratio')}, {cfg.get('scheduler')}, "
        f"max length {cfg.get('max_length')}, seed {cfg.get('seed')} |",
        f"| Steps | {metrics.get('steps', '–')}"
        f"{' (stopped early by the user)' if metrics.get('stopped_early') else ''} |",
        "",
        f"### Validation: the miner's top {top}, reranked",
        "",
        "| ranking | ndcg@10 | mrr@10 |",
        "|---|---:|---:|",
        f"| the miner alone | {_fmt(retriever.get('ndcg@10'))} | {_fmt(retriever.get('mrr@10'))} |",
        f"| reranker before training | {_fmt(before.get('ndcg@10'))} | "
        f"{_fmt(before.get('mrr@10'))} |",
        f"| reranker after training | {_fmt(after.get('ndcg@10'))} | {_fmt(after.get('mrr@10'))} |",
        "",
        f"{data.get('n_validation', '–')} validation questions, each reranking its miner's top "
        f"{top} of all chunks (a gold chunk the miner missed stays missed). They guided nothing "
        "but this table; report the test split from ragbench's Retrieval eval (retrieve, then "
        "rerank, with intervals and paired tests) as the result.",
        "",
        *([verdict, ""] if verdict else []),
        "### Cautions and guard-rail warnings",
        "",
    ]
    cautions = [c for c in (structure_only_caution(data.get("sources") or {}), *warnings) if c]
    lines += [f"- {c}" for c in cautions] or [
        "No guard-rail fired: the reranker started from a trained cross-encoder, with enough "
        "negatives per question and enough training questions."
    ]
    versions = run.manifest.versions
    lines += ["", "### Library versions", "", ", ".join(f"{k} {v}" for k, v in versions.items())]
    return "\n".join([*lines, "", END]) + "\n"


def write_reranker_card(run: Run, *, metrics: dict[str, Any], warnings: list[str]) -> Path:
    """Append our protocol to the README.md in the reranker run's model folder."""
    path = model_card_path(run)
    card = path.read_text(encoding="utf-8") if path.exists() else f"# {run.manifest.name}\n"
    write_text_atomic(path, extend_card(card, reranker_protocol(run, metrics, warnings)))
    return path
