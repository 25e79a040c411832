"""Text keys shared by every stage: whitespace normalisation, the duplicate key of a question, and
word n-grams for comparing passages."""

from __future__ import annotations

import re
import unicodedata

# A word with the symbols that change its meaning kept on it ("c++", "c#", ".net", "10%"), or a
# lone comparison or currency symbol. Other punctuation is dropped.
_KEY_TOKEN = re.compile(r"[.#]?[^\W_]+(?:[+#]+|%)?|[<>=≤≥≠$€£¥]")
_WORD = re.compile(r"[^\W_]+")


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace to one space."""
    return re.sub(r"\s+", " ", text).strip()


def normalize_question(text: str) -> str:
    """The key for duplicate checks: lower-case words and digits, single-spaced, keeping the
    symbols that change meaning ('C++' and 'C#' are not 'C', '10%' is not '10')."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_KEY_TOKEN.findall(text))


def cut_at_word(text: str, limit: int) -> str:
    """`text` when it has at most `limit` characters, else its start cut at the last whole word
    within `limit`, with ' …' (mid-word only for a first word longer than `limit`)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    mid_word = not text[limit].isspace() and not head[-1:].isspace()
    if mid_word and len(head.split()) > 1:
        head = head.rsplit(None, 1)[0]
    return head.rstrip() + " …"


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits), for n-gram comparison."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def match_key(text: str) -> str:
    """The one key for finding a quote in a chunk and for the leak check: NFKC, lower case,
    words and digits only, single-spaced ('The  Archives, are' -> 'the archives are')."""
    return " ".join(words(text))


def contains_key(text_key: str, quote_key: str) -> bool:
    """Whether `quote_key` occurs in `text_key` as whole words (both from match_key)."""
    return bool(quote_key) and f" {quote_key} " in f" {text_key} "


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Every run of `n` consecutive words; a text shorter than `n` words is one n-gram of itself
    (so a short quote still matches where it occurs whole)."""
    tokens = words(text)
    if not tokens:
        return set()
    if len(tokens) <= n:
        return {tuple(tokens)}
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def replace_marked_section(text: str, section: str, start: str, end: str) -> str:
    """`text` with `section` (which begins with `start` and ends with `end`) appended, an earlier
    copy between the same markers removed first, so re-writing never stacks copies."""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    text = pattern.sub("", text).rstrip()
    return (text + "\n\n" if text else "") + section


def demote_headings(markdown: str, top: int) -> str:
    """`markdown` with its headings moved down so the largest is level `top` (1 to 6), the
    others keeping their distance below it (at most 6); fenced code is left alone."""
    levels = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6}) ", line)):
            levels.append(len(m.group(1)))
    if not levels:
        return markdown
    shift = max(0, top - min(levels))
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6}) ", line)):
            line = "#" * min(6, len(m.group(1)) + shift) + line[len(m.group(1)) :]
        out.append(line)
    return "\n".join(out)
