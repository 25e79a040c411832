"""What people call a manifest's summary figures and parent links (the report's lineage) and the
runs themselves (kind and name, in a lineage or a picker): labels for the keys the stages
write, a readable fallback for any other key, and the job bookkeeping (process ids, the job
module) that means nothing to a reader."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.runs.folders import Run

# Job bookkeeping: how a page tells a live job from a dead one, not a result.
HIDDEN_SUMMARY_KEYS = frozenset({"pid", "pid_started", "job_module", "job_started_at"})

SUMMARY_LABELS: dict[str, str] = {
    "n_documents": "documents",
    "n_pages": "pages",
    "n_chunks": "chunks",
    "n_chars": "characters",
    "n_skipped": "skipped",
    "duplicates_removed": "duplicates removed",
    "n_items": "questions",
    "n_accepted": "accepted",
    "n_rejected": "rejected",
    "n_test": "test questions",
    "n_multi_gold": "questions with several gold chunks",
    "n_asked": "chunks asked",
    "n_returned": "questions returned",
    "n_failed_chunks": "chunks that failed",
    "n_short_chunks": "chunks too short",
    "total_tokens": "LLM tokens",
    "corpus_size": "corpus chunks",
    "n_queries": "questions",
    "n_questions": "questions",
    "n_clusters": "clusters",
    "split": "split",
    "steps": "training steps",
    "ndcg@10_base": "base model ndcg@10",
    "ndcg@10_final": "tuned model ndcg@10",
    "dims": "dimensions",
    "sources": "pair sources",
    "resumed_as": "resumed as",
    "crossfit_role": "cross-fit role",
    "folds_done": "folds done",
    "current_model": "model in progress",
    "n_samples": "samples",
    "n_answered": "answered",
    "n_failed": "failed",
    "n_judgements": "judge calls",
    "low_confidence_judge": "low-confidence judge",
    "gold_in_top_k": "gold chunk in the top k",
    "k": "top k",
    "n_added": "chunks added",
    "n_encoded": "chunks encoded",
    "n_from_cache": "embeddings from the cache",
    "texts_encoded": "texts encoded",
    "texts_from_cache": "embeddings from the cache",
    "seconds": "seconds",
}

KIND_NAMES: dict[str, str] = {  # one run of each kind, as a reader calls it
    "corpus": "corpus",
    "index": "Chroma index",
    "qa": "question set",
    "model": "tuned model",
    "reranker": "reranker",
    "crossfit": "cross-fit",
    "retrieval_eval": "retrieval evaluation",
    "rag": "RAG answers",
    "ragas_eval": "RAGAS scoring",
}

PARENT_LABELS: dict[str, str] = {  # a parent key in a lineage: its kind's name, or the link
    **KIND_NAMES,
    "retrieval_eval": "retrieval eval",
    "source": "edited from",
    "retry_of": "retry of",
    "resumed_from": "resumed from",
}

TITLE_NAME_CHARS = 48  # a run's name in a lineage is cut at a word past this (core.runs
# imports no other core module, so not core.text.cut_at_word)


def readable_key(key: str) -> str:
    """Any snake_case key in words: 'ndcg_at_10' -> 'ndcg@10', 'qa_run_id' -> 'qa run',
    'parent_ids' -> 'parents', 'n_pairs' -> 'pairs', 'ndcg@10_base' -> 'ndcg@10 base'."""
    text = re.sub(r"_at_(\d+)", r"@\1", key)
    text = re.sub(r"_ids$", "s", re.sub(r"_id$", "", text))
    text = text.removeprefix("n_")
    return text.replace("_", " ").strip() or key


def summary_label(key: str) -> str:
    """What the report calls a summary key."""
    return SUMMARY_LABELS.get(key) or readable_key(key)


def parent_label(key: str) -> str:
    """What the report calls a parent link ('qa' -> 'question set')."""
    return PARENT_LABELS.get(key) or readable_key(key)


def kind_name(kind: str) -> str:
    """What a reader calls one run of `kind` ('retrieval_eval' -> 'retrieval evaluation')."""
    return KIND_NAMES.get(kind) or readable_key(kind)


def own_name(run: Run) -> str:
    """The name someone gave a run, '' when it has none (an unnamed run is named by its id)."""
    name = run.manifest.name.strip()
    return "" if name == run.id else name


def run_title(run: Run) -> str:
    """A run in words: its kind and its name, its id when it has none ('corpus R manuals')."""
    name = own_name(run)
    if len(name) > TITLE_NAME_CHARS:
        name = name[:TITLE_NAME_CHARS].rsplit(" ", 1)[0].rstrip() + " …"
    return f"{kind_name(run.kind)} {name or run.id}"


def run_choice(run: Run) -> str:
    """A run in a picker: name, kind, id (the id once when it has no name), and its status when
    it is not done ('faq · corpus · corpus-X · failed')."""
    name = own_name(run)
    parts = [name, kind_name(run.kind), run.id] if name else [run.id, kind_name(run.kind)]
    if run.manifest.status != "done":
        parts.append(run.manifest.status)
    return " · ".join(parts)


def eval_run_name(base: str, n_others: int, questions: str) -> str:
    """An evaluation run's default name: 'MiniLM vs 1 tuned model on FAQ pairs', or 'MiniLM
    alone on FAQ pairs' when no other model is evaluated with the base."""
    if n_others <= 0:
        return f"{base} alone on {questions}"
    return f"{base} vs {n_others} tuned model{'' if n_others == 1 else 's'} on {questions}"
