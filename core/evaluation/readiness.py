"""Whether a split holds enough questions for the statistics, said before an evaluation starts.

How it works:
1. The split's accepted questions are counted, and their clusters (questions that share a gold
   or linked chunk, core.questions.splits.question_clusters): the statistics resample and flip
   clusters, so clusters are the evidence.
2. Below MIN_CLUSTERS clusters no interval, test or bound exists: the evaluation is refused
   with the fix. Below MIN_QUERIES questions (core.evaluation.statistics) it may run, but only
   once the user has been told how little it can tell apart and agreed.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.evaluation.statistics import MIN_QUERIES
from core.formatting import questions_text

MIN_CLUSTERS = 2


@dataclass(frozen=True)
class SplitSize:
    """How many questions (and clusters) one split of a question set holds."""

    qa_run_id: str
    split: str | None
    n_questions: int
    n_clusters: int

    @property
    def where(self) -> str:
        """'The test split of question set qa-…' (a sentence's start)."""
        return f"The {self.split or 'accepted'} split of question set {self.qa_run_id}"

    def refusal(self) -> ConfigError | None:
        """The error that refuses an evaluation on too few clusters, or None."""
        if self.n_clusters >= MIN_CLUSTERS:
            return None
        return ConfigError(
            f"{self.where} holds "
            f"{questions_text(self.n_questions, self.n_clusters)}: no interval, test or bound "
            f"can be computed from fewer than {MIN_CLUSTERS} clusters of questions.",
            found=f"{self.n_questions} question(s) in {self.n_clusters} cluster(s)",
            fix="pick the question set you mean to evaluate on (the sample set, or pairs from "
            "the documents), or generate questions from more chunks",
        )

    def caution(self) -> str:
        """What an evaluation on fewer than MIN_QUERIES questions cannot do ('' from there)."""
        if self.n_questions >= MIN_QUERIES or self.refusal() is not None:
            return ""
        return (
            f"{self.where} holds only "
            f"{questions_text(self.n_questions, self.n_clusters)} (fewer than {MIN_QUERIES}): "
            "the intervals will be wide and only large differences can be told apart."
        )


def split_size(qa_run_id: str, split: str | None) -> SplitSize:
    """The questions and clusters of one split of a qa run (None: every accepted question)."""
    from core.questions.dataset import load_qa
    from core.questions.splits import question_clusters

    items = load_qa(qa_run_id, split=split)
    clusters = question_clusters(items)
    return SplitSize(qa_run_id, split, len(items), len(set(clusters)))


def check_split_size(qa_run_id: str, split: str | None) -> SplitSize:
    """split_size, refused (ConfigError) below MIN_CLUSTERS clusters."""
    size = split_size(qa_run_id, split)
    refusal = size.refusal()
    if refusal is not None:
        raise refusal
    return size
