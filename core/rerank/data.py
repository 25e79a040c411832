"""A reranker's training and validation data, from a question set: labelled (question, passage)
pairs from the train split (the fine-tune's pairs, sources and weights, core.finetune.data) with
hard negatives mined by an embedding model from the corpus, never from a validation or test
chunk; and the validation task, each validation question with its miner's top N over the whole
corpus, for sentence-transformers' CrossEncoderRerankingEvaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError
from core.evaluation.scoring import encode_corpus, encode_queries
from core.evaluation.search import id_tie_ranks, search_exact
from core.finetune.data import FinetuneData, mine_negatives
from core.progress import ProgressCallback

QUERY, PASSAGE, LABEL = "query", "passage", "label"  # the cross-encoder's training columns


@dataclass
class TrainingPairs:
    """The labelled pairs a reranker trains on."""

    pairs: dict[str, list[Any]]  # QUERY, PASSAGE, LABEL (1.0 positive, 0.0 mined negative)
    n_questions: int  # training questions that kept their negatives
    notes: list[str] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs[LABEL])

    @property
    def n_negatives(self) -> int:
        return int(sum(1 for label in self.pairs[LABEL] if label == 0.0))


def labelled_pairs(mined: Any) -> dict[str, list[Any]]:
    """(anchor, positive, negative_1..k) rows -> one (question, passage, label) row per passage:
    the positive labelled 1, each negative 0, question by question."""
    columns = list(mined.column_names)
    negatives = [c for c in columns if c not in ("anchor", "positive")]
    rows = mined.to_dict()
    out: dict[str, list[Any]] = {QUERY: [], PASSAGE: [], LABEL: []}
    for i, anchor in enumerate(rows["anchor"]):
        for column, label in (("positive", 1.0), *((c, 0.0) for c in negatives)):
            out[QUERY].append(anchor)
            out[PASSAGE].append(rows[column][i])
            out[LABEL].append(label)
    return out


def training_pairs(miner: Any, data: FinetuneData, cfg: Any, emit: Any = None) -> TrainingPairs:
    """The labelled training pairs: each training question's positive and its hard negatives
    mined by `miner` (core.finetune.data.mine_negatives: no validation or test chunk, no other
    gold chunk of the same question). `cfg` carries the mining range (RerankerConfig.as_finetune)."""
    from datasets import Dataset

    from core.embeddings import document_prompt, query_prompt

    train = Dataset.from_dict({"anchor": data.anchors, "positive": data.positives})
    mined, note = mine_negatives(
        miner, train, data, cfg, query_prompt(miner), document_prompt(miner), emit
    )
    if len(mined.column_names) < 3 or len(mined) == 0:
        raise InputError(
            "No hard negatives could be mined, and a reranker cannot learn without passages to "
            "rank its positives above.",
            found=note or f"{len(data.corpus)} chunks, {len(data.held_out_chunk_ids)} held out",
            fix="use a larger corpus, or lower the number of negatives and the range start",
        )
    return TrainingPairs(
        pairs=labelled_pairs(mined),
        n_questions=len(mined),
        notes=[note] if note else [],
    )


def validation_samples(
    miner: Any,
    data: FinetuneData,
    depth: int,
    *,
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Each validation question with its gold passages and the miner's top `depth` passages
    over the whole corpus (through the embedding cache), in the miner's order: reranking them is
    what the reranker will do after this retriever. A gold chunk the miner missed stays missed,
    as it would in use (the evaluator's always_rerank_positives=False)."""
    ids = list(data.corpus)
    texts = [data.corpus[c] for c in ids]
    query_ids = list(data.val_queries)
    questions = [data.val_queries[q] for q in query_ids]
    options = {"label": "miner", "batch_size": batch_size, "on_progress": on_progress}
    corpus = encode_corpus(miner, texts, **options)  # (N, native)
    queries = encode_queries(miner, questions, **options)  # (n_val, native)
    top, _ = search_exact(queries, corpus, depth, id_tie_ranks(ids))  # (n_val, depth)
    return [
        {
            "query": question,
            "positive": [data.corpus[c] for c in sorted(data.val_relevant.get(qid, ()))],
            "documents": [texts[int(i)] for i in row],
        }
        for qid, question, row in zip(query_ids, questions, top, strict=True)
    ]
