"""The question quality gate: every generated question is accepted or rejected with a reason.

How it works:
1. Leaked chat-message reprs (`AIMessage(`, `content=`, `additional_kwargs`, `response_metadata`)
   are rejected on the raw text, before anything is stripped.
2. The text is repaired: leading numbering and labels ("1.", "Q:", "Question 2:"), bullets,
   markdown emphasis and surrounding quotes are stripped. Whatever is left is judged.
3. Text rules, first match wins: template echoes (`QUESTION #1`, the few-shot example),
   placeholders (`[question]`, `<question>`, `...`), preambles ("Here are two questions…",
   "Sure!"), empty, too short, too long, not a question, a copy of a sentence of its chunk.
4. Set rules over the survivors, in order: exact duplicates (normalised text), then
   near-duplicates (embedding cosine above a threshold, with the embedding model passed in).
5. Optionally, an LLM answers "can this be answered from this chunk alone?"; a "no" rejects.
   A failed check keeps the question and is counted, never silently dropped.

Rejected items stay in the qa run with `status="rejected"`, `reason=<code>` and the detail in
`meta["reason_text"]`, so the gate's decisions can be reviewed and overruled.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, LLMError
from core.progress import ProgressCallback, StopCheck
from core.questions.dataset import QAItem
from core.questions.prompts import (
    ANSWERABILITY_PROMPT,
    AnswerabilityInput,
    AnswerabilityVerdict,
    coerce_answerability,
    example_questions,
)
from core.text import normalize_question

if TYPE_CHECKING:
    from core.llm.client import LLM

REASONS: dict[str, str] = {
    "message_repr": "a leaked chat-message repr (AIMessage(, content=, additional_kwargs, …)",
    "template_echo": "a template echo: a label such as 'QUESTION #1' or the prompt's example",
    "placeholder": "a placeholder or fragment such as '[question]', '<question>' or '...'",
    "preamble": "a preamble, not a question ('Here are two questions…', 'Sure!')",
    "empty": "empty",
    "too_short": "too short",
    "too_long": "too long",
    "not_a_question": "not a question: no '?' and no question word at the start",
    "copy_of_chunk": "a copy of a sentence of its chunk",
    "duplicate": "the same text as an earlier question",
    "near_duplicate": "nearly the same as an earlier question (embedding cosine)",
    "not_answerable": "the LLM judged it not answerable from its chunk alone",
    "over_quota": "more accepted questions than asked for from its chunk",
    "reviewer": "rejected by a person in review",
    "evidence_not_found": "its evidence quote is in no chunk of the corpus",
    "numbers_only": "a heading of numbers or a section label only",
    "generic_heading": "a heading that names no topic ('Introduction', 'Contents', …)",
    "running_header": "a running header: the same line in the margin of several pages",
    "empty_section": "a heading whose section has no text before the next heading",
    "heading_not_found": "a heading from the outline that is not in the document's text",
    "spans_splits": "its chunks sit in two splits of the question set it is aligned with",
    "not_specific": "not specific: its evidence (or a heading's text) is in many chunks beyond its "
    "own and their overlapping neighbours",
}

QUESTION_WORDS = frozenset(
    "what who whom whose when where why which how is are was were do does did can could "
    "should would will shall may might must has have had am isn't aren't doesn't don't didn't "
    "can't won't name list describe explain define compare".split()
)

_MESSAGE_REPR = re.compile(
    r"(?:AIMessage|HumanMessage|SystemMessage|ChatMessage|ToolMessage)\s*\(|\bcontent\s*=|"
    r"additional_kwargs|response_metadata|usage_metadata",
    re.IGNORECASE,
)
_LEADING_LABEL = re.compile(
    r"^\s*(?:[-*•+]\s+|#{1,6}\s+|\(?\d{1,3}[.):][*_]*(?=\s|$)\s*|"
    r"(?:q|question|query)\s*#?\s*\d{0,3}\s*[:.)][*_]*(?=\s|$)\s*)",
    re.IGNORECASE,
)
_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("`", "`"), ("«", "»"))
_TEMPLATE_LABEL = re.compile(
    r"^(?:q|question|query)\s*#?\s*\d{0,3}\s*[:.)]?$|question\s*#\s*\d", re.IGNORECASE
)
_PLACEHOLDER_TOKEN = re.compile(
    r"[\[<{]\s*(?:your\s+|the\s+)?(?:question|answer|query|text)(?:\s*\d+)?(?:\s+(?:here|text))?"
    r"\s*[\]>}]",
    re.IGNORECASE,
)
_PLACEHOLDER_WORDS = frozenset(
    {
        "question",
        "questions",
        "your question",
        "your question here",
        "question here",
        "answer",
        "query",
        "text",
        "n/a",
        "na",
        "none",
        "null",
        "tbd",
        "todo",
        "string",
    }
)
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|absolutely|great|alright|here you go)\b|"
    r"^(?:here|below)\s+(?:are|is)\b|^the following\s+(?:are|is)\b|"
    r"^(?:let me|as an ai|as a language model)\b",
    re.IGNORECASE,
)
# Only a preamble when the text has no question mark ("I have a laptop; how do I…?" is fine).
_WEAK_PREAMBLE = re.compile(
    r"^(?:i\s*(?:'ll|'ve|will|have|can|would)|ok)\b|"
    r"^(?:\w+\s+){0,3}(?:potential\s+|possible\s+|generated\s+)?questions?\s+"
    r"(?:based|about|from|for|on|that|you)\b",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate. Words are counted on the repaired text."""

    min_words: int = 4
    max_words: int = 60
    copy_ratio: float = 0.9  # similarity of a question to a chunk sentence that counts as a copy
    copy_min_words: int = 8  # a contiguous span of the chunk this long counts as a copy
    near_duplicate_threshold: float = 0.95
    check_near_duplicates: bool = True
    check_answerability: bool = False
    check_length: bool = True  # off for human-written imports: "What is Python?" is a question
    check_question_form: bool = True  # off for headings: "Installing Debian" is a fine query
    check_copy: bool = True  # off for cloze: the query is a sentence of its chunk by design
    # off for pairs from the documents: a sentence the document wrote ("Of course, it would be
    # useful if …") is no LLM's preamble
    check_preamble: bool = True

    def __post_init__(self) -> None:
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ConfigError(
                f"Word limits {self.min_words}..{self.max_words} are not a range.",
                fix="use a minimum of at least 1 and a maximum at least as large",
            )
        for name in ("copy_ratio", "near_duplicate_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1].", found=str(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Verdict:
    """The text rules' decision on one question: the repaired text, and why when rejected."""

    question: str
    accepted: bool
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class GateReport:
    """The gated items and the counts by reason."""

    items: list[QAItem]
    counts: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    answerability_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.counts,
            "notes": list(self.notes),
            "answerability_errors": self.answerability_errors,
        }


def repair_question(text: str) -> str:
    """Strip numbering, labels, bullets, emphasis and surrounding quotes; collapse whitespace."""
    current = " ".join(text.split())
    while True:
        before = current
        current = current.strip().strip("*_").strip()
        current = _LEADING_LABEL.sub("", current, count=1).strip()
        for left, right in _QUOTE_PAIRS:
            if len(current) >= 2 and current.startswith(left) and current.endswith(right):
                current = current[len(left) : len(current) - len(right)].strip()
        if current == before:
            return current


def _is_placeholder(text: str) -> bool:
    lowered = text.lower().strip(" .:!?")
    if not re.search(r"[^\W_]", text):  # only punctuation: '...', '…', '---'
        return True
    if text.startswith(("...", "…")):
        return True
    return lowered in _PLACEHOLDER_WORDS or bool(_PLACEHOLDER_TOKEN.search(text))


def _copy_detail(question: str, chunk_text: str, config: GateConfig) -> str:
    """Why the question is a copy of its chunk, or '' when it is not."""
    q = normalize_question(question)
    if not q:
        return ""
    chunk_norm = normalize_question(chunk_text)
    if len(q.split()) >= config.copy_min_words and f" {q} " in f" {chunk_norm} ":
        return f"its {len(q.split())} words appear verbatim in the chunk"
    for sentence in _SENTENCE_SPLIT.split(chunk_text):
        s = normalize_question(sentence)
        if not s or not 0.5 <= len(s) / len(q) <= 2.0:
            continue
        ratio = difflib.SequenceMatcher(None, q, s, autojunk=False).ratio()
        if ratio >= config.copy_ratio:
            return f"{ratio:.0%} the same as the chunk sentence '{sentence.strip()[:120]}'"
    return ""


def check_question(
    text: str,
    chunk_text: str = "",
    config: GateConfig | None = None,
    *,
    forbidden: Iterable[str] = (),
) -> Verdict:
    """Apply the text rules to one question. `forbidden` lists texts that count as template
    echoes (the prompt's few-shot example questions by default)."""
    config = config or GateConfig()
    raw = text or ""
    match = _MESSAGE_REPR.search(raw)
    if match:
        return Verdict(raw, False, "message_repr", f"contains {match.group(0)!r}")
    stripped = " ".join(raw.split())
    if _TEMPLATE_LABEL.search(stripped):
        return Verdict(stripped, False, "template_echo", f"{stripped[:60]!r} is a label")
    question = repair_question(raw)
    if not question:
        if stripped:
            return Verdict(question, False, "template_echo", f"only a label: {stripped[:60]!r}")
        return Verdict(question, False, "empty", "no text")
    key = normalize_question(question)
    echoes = {normalize_question(f) for f in (forbidden or example_questions())}
    if key in echoes:
        return Verdict(question, False, "template_echo", "repeats the prompt's example question")
    if _TEMPLATE_LABEL.search(question):
        return Verdict(question, False, "template_echo", f"{question[:60]!r} is a label")
    if _is_placeholder(question):
        return Verdict(question, False, "placeholder", f"{question[:60]!r}")
    weak = "?" not in question and _WEAK_PREAMBLE.search(question)
    if config.check_preamble and (_PREAMBLE.search(question) or weak or question.endswith(":")):
        return Verdict(question, False, "preamble", f"{question[:80]!r}")
    n_words = len(question.split())
    if config.check_length and n_words < config.min_words:
        return Verdict(question, False, "too_short", f"{n_words} word(s) < {config.min_words}")
    if config.check_length and n_words > config.max_words:
        return Verdict(question, False, "too_long", f"{n_words} words > {config.max_words}")
    first = re.sub(r"[^\w']", "", question.split()[0].lower())
    if config.check_question_form and "?" not in question and first not in QUESTION_WORDS:
        return Verdict(question, False, "not_a_question", f"starts with {first!r}, no '?'")
    if chunk_text and config.check_copy:
        detail = _copy_detail(question, chunk_text, config)
        if detail:
            return Verdict(question, False, "copy_of_chunk", detail)
    return Verdict(question, True)


def _rejected(item: QAItem, reason: str, detail: str, question: str | None = None) -> QAItem:
    meta = dict(item.meta)
    meta["reason_text"] = detail or REASONS.get(reason, reason)
    update: dict[str, Any] = {"status": "rejected", "reason": reason, "meta": meta}
    if question is not None and question != item.question:
        meta.setdefault("raw", item.question)
        update["question"] = question
    return item.model_copy(update=update)


def _accepted(item: QAItem, question: str) -> QAItem:
    if question == item.question:
        return item
    meta = {**item.meta, "raw": item.question}
    return item.model_copy(update={"question": question, "meta": meta})


def gate_counts(items: Sequence[QAItem]) -> dict[str, Any]:
    """Accepted and rejected counts, and rejections by reason (most frequent first)."""
    reasons = Counter(i.reason or "unspecified" for i in items if i.status == "rejected")
    return {
        "total": len(items),
        "accepted": sum(i.status == "accepted" for i in items),
        "rejected": sum(i.status == "rejected" for i in items),
        "by_reason": dict(reasons.most_common()),
    }


def rejection_rows(items: Sequence[QAItem]) -> list[dict[str, object]]:
    """Rejected questions by reason (most frequent first) with what each reason means."""
    return [
        {"reason": r, "questions": n, "meaning": REASONS.get(r, r)}
        for r, n in gate_counts(items)["by_reason"].items()
    ]


def _near_duplicates(
    items: list[QAItem], indices: list[int], model: Any, threshold: float, on_progress: Any
) -> dict[int, tuple[int, float]]:
    """index -> (index of the earlier question it repeats, cosine), greedy in order."""
    import numpy as np

    from core.embeddings import encode_texts

    if len(indices) < 2:
        return {}
    texts = [items[i].question for i in indices]
    emb = encode_texts(model, texts, on_progress=on_progress, stage="near-duplicates")  # (n, d)
    sims = emb @ emb.T  # (n, n) cosine: rows are L2-normalised
    kept: list[int] = []
    found: dict[int, tuple[int, float]] = {}
    for row in range(len(indices)):
        if kept:
            scores = sims[row, kept]
            best = int(np.argmax(scores))
            if float(scores[best]) > threshold:
                found[indices[row]] = (indices[kept[best]], float(scores[best]))
                continue
        kept.append(row)
    return found


def near_duplicate_pairs(
    texts: Sequence[str], model: Any, threshold: float, on_progress: Any = None
) -> list[tuple[int, int, float]]:
    """Every pair (i, j, cosine), i < j, of texts whose embeddings' cosine exceeds `threshold`,
    scored in blocks of rows so memory stays at (block, n)."""
    import numpy as np

    from core.embeddings import encode_texts

    if len(texts) < 2:
        return []
    emb = encode_texts(model, list(texts), on_progress=on_progress, stage="near-duplicates")
    pairs: list[tuple[int, int, float]] = []
    block = 1024
    for start in range(0, len(texts), block):
        sims = emb[start : start + block] @ emb.T  # (block, n) cosines: rows are L2-normalised
        rows, cols = np.nonzero(sims > threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + r < c:
                pairs.append((start + r, c, float(sims[r, c])))
    return pairs


def tie_near_duplicates(
    items: Sequence[QAItem], model: Any, threshold: float, on_progress: Any = None
) -> tuple[list[QAItem], int]:
    """Record, in each accepted item's meta, the accepted questions it nearly repeats (cosine
    above `threshold`, the gate's near-duplicate threshold): the split deals them into one split
    (core.questions.splits.chunk_groups) and the leak check refuses them in two. Returns the items
    and the number of pairs found."""
    from core.questions.leakage import NEAR_DUPLICATES_KEY

    out = list(items)
    accepted = [n for n, item in enumerate(out) if item.status == "accepted"]
    found = near_duplicate_pairs([out[n].question for n in accepted], model, threshold, on_progress)
    ties: dict[int, list[str]] = {}
    for a, b, _ in found:
        ia, ib = accepted[a], accepted[b]
        ties.setdefault(ia, []).append(out[ib].id)
        ties.setdefault(ib, []).append(out[ia].id)
    for n, ids in ties.items():
        out[n] = out[n].model_copy(update={"meta": {**out[n].meta, NEAR_DUPLICATES_KEY: ids}})
    return out, len(found)


def _ask_answerability(llm: LLM, item: QAItem, chunk_text: str) -> AnswerabilityVerdict:
    data = AnswerabilityInput(question=item.question, passage=chunk_text)
    verdict, _ = llm.complete_json(
        ANSWERABILITY_PROMPT.messages(data),
        AnswerabilityVerdict,
        coerce=coerce_answerability,
        max_tokens=80,
    )
    return verdict


def apply_gate(
    items: Sequence[QAItem],
    chunk_texts: dict[str, str],
    config: GateConfig | None = None,
    *,
    model: Any = None,
    llm: LLM | None = None,
    forbidden: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> GateReport:
    """Gate every accepted item (items already rejected pass through unchanged).

    `model` is a loaded embedding model for the near-duplicate check (skipped, with a note,
    when None); `llm` is needed only for the answerability check.
    """
    config = config or GateConfig()
    forbidden = list(forbidden) or example_questions()
    out: list[QAItem] = []
    notes: list[str] = []
    for item in items:
        if item.status != "accepted":
            out.append(item)
            continue
        verdict = check_question(
            item.question, chunk_texts.get(item.chunk_id, ""), config, forbidden=forbidden
        )
        if verdict.accepted:
            out.append(_accepted(item, verdict.question))
        else:
            out.append(_rejected(item, verdict.reason, verdict.detail, verdict.question))

    seen: dict[str, int] = {}
    for index, item in enumerate(out):
        if item.status != "accepted":
            continue
        key = normalize_question(item.question)
        if key in seen:
            first = out[seen[key]]
            out[index] = _rejected(item, "duplicate", f"same text as {first.id}")
        else:
            seen[key] = index

    if config.check_near_duplicates:
        if model is None:
            notes.append("near-duplicate check skipped: no embedding model was given")
        else:
            survivors = [i for i, item in enumerate(out) if item.status == "accepted"]
            found = _near_duplicates(
                out, survivors, model, config.near_duplicate_threshold, on_progress
            )
            for index, (earlier, score) in found.items():
                detail = (
                    f"cosine {score:.3f} with {out[earlier].id}: {out[earlier].question[:80]!r}"
                )
                out[index] = _rejected(out[index], "near_duplicate", detail)

    errors = 0
    if config.check_answerability:
        if llm is None:
            notes.append("answerability check skipped: no LLM was given")
        else:
            survivors = [i for i, item in enumerate(out) if item.status == "accepted"]
            results = llm.map(
                lambda i: _ask_answerability(llm, out[i], chunk_texts.get(out[i].chunk_id, "")),
                survivors,
                stage="answerability",
                on_progress=on_progress,
                should_stop=should_stop,
            )
            for index, result in zip(survivors, results, strict=True):
                item = out[index]
                if isinstance(result, AnswerabilityVerdict):
                    meta = {**item.meta, "answerable": result.answerable}
                    if result.answerable:
                        out[index] = item.model_copy(update={"meta": meta})
                    else:
                        detail = result.reason or REASONS["not_answerable"]
                        out[index] = _rejected(
                            item.model_copy(update={"meta": meta}), "not_answerable", detail
                        )
                else:
                    errors += 1
                    kind = result.kind if isinstance(result, LLMError) else type(result).__name__
                    meta = {**item.meta, "answerability_error": kind}
                    out[index] = item.model_copy(update={"meta": meta})
            if errors:
                notes.append(f"answerability check failed for {errors} question(s); they were kept")
    return GateReport(items=out, counts=gate_counts(out), notes=notes, answerability_errors=errors)
