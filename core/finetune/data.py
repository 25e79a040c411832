"""Training data from a qa run: (anchor=question, positive=chunk text) pairs from the train split,
the validation retrieval task over the whole corpus, and hard-negative mining that never picks a
validation or test chunk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.documents.corpus import load_chunks
from core.errors import ConfigError, InputError, RunError
from core.questions.dataset import load_qa
from core.questions.sources import training_items
from core.runs.folders import load_run

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class FinetuneData:
    """Training pairs and the validation retrieval task, from a qa run and its corpus."""

    qa_run_id: str
    corpus_run_id: str
    anchors: list[str]  # questions
    positives: list[str]  # their gold chunk texts, same order
    train_chunk_ids: list[str]
    val_queries: dict[str, str]  # query id -> question
    val_relevant: dict[str, set[str]]  # query id -> gold chunk ids
    corpus: dict[str, str]  # chunk id -> text: ALL chunks, the validation distractors
    n_test: int
    warnings: list[str] = field(default_factory=list)
    held_out_chunk_ids: set[str] = field(default_factory=set)  # validation + test gold/linked
    train_gold: list[set[str]] = field(default_factory=list)  # each pair's relevant chunks
    sources: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> available, used

    @property
    def n_train(self) -> int:
        return len(self.anchors)

    def stats(self) -> dict[str, Any]:
        """Counts for the manifest and the model card."""
        return {
            "corpus_size": len(self.corpus),
            "n_train": self.n_train,
            "n_validation": len(self.val_queries),
            "n_test": self.n_test,
            "train_chunks": len(set(self.train_chunk_ids)),
            "split_method": "by chunk",
            "sources": self.sources,
        }


def prepare_data(
    qa_run_id: str, source_weights: Mapping[str, float] | None = None, seed: int = 42
) -> FinetuneData:
    """Train pairs (anchor=question, positive=its chunk's text, or the item's own positive for a
    heading or cloze pair), weighted by source, and the validation task over all chunks."""
    qa_run = load_run(qa_run_id)
    if qa_run.kind != "qa":
        raise ConfigError(
            f"Run {qa_run_id} is a {qa_run.kind} run, not a qa run.", fix="pick a question set"
        )
    corpus_id = qa_run.manifest.parents.get("corpus")
    if not corpus_id:
        raise RunError(
            f"QA run {qa_run_id} names no corpus run.",
            fix="re-create it from a corpus on the Questions page",
        )
    chunks = {c.id: c.text for c in load_chunks(corpus_id)}
    items = load_qa(qa_run)
    train = [i for i in items if i.split == "train"]
    val = [i for i in items if i.split == "validation"]
    warnings: list[str] = []
    missing = [i for i in train + val if i.chunk_id not in chunks]
    if missing:
        warnings.append(
            f"{len(missing)} questions point at chunks missing from corpus {corpus_id}; they are skipped."
        )
    unique, used, sources = training_items(train, chunks, source_weights or {}, seed)
    anchors = [i.question for i in used]
    positives = [i.positive or chunks[i.chunk_id] for i in used]
    chunk_ids = [i.chunk_id for i in used]
    train_gold = [set(i.gold_ids) for i in used]
    if unique and not anchors:
        raise InputError(
            f"The source weights leave none of QA run {qa_run_id}'s training questions.",
            found=", ".join(f"{s}: {n['available']}" for s, n in sources.items()),
            fix="give a positive weight to a source the question set has",
        )
    if not anchors:
        raise InputError(
            f"QA run {qa_run_id} has no accepted training questions.",
            found=f"{len(items)} accepted questions, {len(train)} in the train split",
            fix="split the question set into train/validation/test on the Questions page, "
            "or add questions",
        )
    val_queries = {i.id: i.question for i in val if i.chunk_id in chunks}
    val_relevant: dict[str, set[str]] = {}
    for item in val:
        if item.chunk_id in chunks:
            val_relevant.setdefault(item.id, set()).update(c for c in item.gold_ids if c in chunks)
    if not val_queries:
        raise InputError(
            f"QA run {qa_run_id} has no validation questions, so training cannot be checked.",
            found=f"{len(train)} train and 0 validation questions",
            fix="re-split the question set with a validation share (e.g. 10-20%)",
        )
    leaked = {c for rel in val_relevant.values() for c in rel} & set(chunk_ids)
    if leaked:
        warnings.append(
            f"{len(leaked)} validation chunks are also training positives: the split is not by "
            "chunk, so validation scores are optimistic. Re-split by chunk."
        )
    return FinetuneData(
        qa_run_id=qa_run.id,
        corpus_run_id=corpus_id,
        anchors=anchors,
        positives=positives,
        train_chunk_ids=chunk_ids,
        val_queries=val_queries,
        val_relevant=val_relevant,
        corpus=chunks,
        n_test=sum(1 for i in items if i.split == "test"),
        warnings=warnings,
        held_out_chunk_ids={
            c for i in items if i.split in ("validation", "test") for c in i.split_chunk_ids
        },
        train_gold=train_gold,
        sources=sources,
    )


def mine_negatives(model, train_ds, data: FinetuneData, cfg, qp, dp, emit=None):  # noqa: ANN001, ANN201
    """Add hard negatives mined from the corpus. Candidates leave out every validation and test
    chunk (gold and linked: using them as negatives would teach the model about the held-out
    splits); a mined negative that is another gold chunk of its own question (chunks overlap)
    drops that pair. Returns (dataset, note or None)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from core.embeddings import CachedEncoder

    emit = emit or (lambda event: None)
    held_out = data.held_out_chunk_ids
    candidates = [text for cid, text in data.corpus.items() if cid not in held_out]
    range_max = min(cfg.negatives_range_max, len(candidates) - 1)
    if range_max < cfg.negatives_range_min + cfg.num_negatives:
        emit({"event": "warning", "message": "Corpus too small to mine hard negatives; skipped."})
        return train_ds, "Corpus too small to mine hard negatives; trained without them."
    mined = mine_hard_negatives(
        train_ds,
        CachedEncoder(model),  # the corpus vectors indexing and evaluation already made
        anchor_column_name="anchor",
        positive_column_name="positive",
        corpus=candidates,
        range_min=cfg.negatives_range_min,
        range_max=range_max,
        num_negatives=cfg.num_negatives,
        sampling_strategy="top",
        query_prompt=qp,
        corpus_prompt=dp,
        output_format="n-tuple",
        batch_size=64,
        verbose=False,
    )
    notes = []
    if len(mined) < len(train_ds):
        notes.append(
            f"Hard-negative mining found too few negatives for {len(train_ds) - len(mined)} of "
            f"{len(train_ds)} pairs; they were left out."
        )
    gold_texts = {
        anchor: {data.corpus[c] for c in gold if c in data.corpus}
        for anchor, gold in zip(data.anchors, data.train_gold, strict=False)
    }
    negative_columns = [c for c in mined.column_names if c not in ("anchor", "positive")]
    rows = mined.to_dict()
    keep = [
        i
        for i, anchor in enumerate(rows["anchor"])
        if not any(rows[c][i] in gold_texts.get(anchor, set()) for c in negative_columns)
    ]
    if len(keep) < len(mined):
        notes.append(
            f"{len(mined) - len(keep)} mined pair(s) had another gold chunk of their own question "
            "as a negative (chunks overlap); they were left out."
        )
        mined = Dataset.from_dict({c: [rows[c][i] for i in keep] for c in mined.column_names})
    return mined, " ".join(notes) or None
