"""What people call a manifest's summary figures and parent links (the report's lineage): labels
for the keys the stages write, a readable fallback for any other key, and the job bookkeeping
(process ids, the job module) that means nothing to a reader."""

from __future__ import annotations

import re

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

PARENT_LABELS: dict[str, str] = {
    "corpus": "corpus",
    "index": "Chroma index",
    "qa": "question set",
    "model": "tuned model",
    "reranker": "reranker",
    "crossfit": "cross-fit",
    "retrieval_eval": "retrieval eval",
    "rag": "RAG answers",
    "source": "edited from",
    "retry_of": "retry of",
    "resumed_from": "resumed from",
}


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
