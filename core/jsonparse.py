"""Lenient JSON extraction from LLM replies: code fences, prose around it, trailing commas,
truncated lists. Returns plain Python values; validation against a schema happens elsewhere."""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import LLMError

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _candidates(text: str) -> list[str]:
    """Strings worth trying to parse, best first: the whole reply, fenced blocks, then the
    span from the earliest '{' or '[' (so a list is not mistaken for its first object)."""
    stripped = text.strip()
    out = [stripped]
    out += [m.group(1).strip() for m in _FENCE.finditer(text)]
    # An unclosed fence (a truncated reply): take everything after it.
    if "```" in text and not _FENCE.search(text):
        out.append(text.split("```", 1)[1].removeprefix("json").strip())
    openers = sorted(
        (index, opener, closer)
        for opener, closer in (("{", "}"), ("[", "]"))
        if (index := stripped.find(opener)) != -1
    )
    for start, _, closer in openers:
        end = stripped.rfind(closer)
        out.append(stripped[start : end + 1] if end > start else stripped[start:])
    return out


def _drop_trailing_commas(text: str) -> str:
    """Remove commas right before a closing bracket, outside strings only."""
    out: list[str] = []
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "]}":
            j = len(out) - 1
            while j >= 0 and out[j].isspace():
                j -= 1
            if j >= 0 and out[j] == ",":
                del out[j]
        out.append(ch)
    return "".join(out)


def _scan(text: str) -> tuple[list[str], bool, int]:
    """Walk JSON text outside strings: the closers still open, whether it ends inside a string,
    and the index after the last complete element (a closing bracket or before a comma)."""
    stack: list[str] = []
    in_string = False
    escaped = False
    last_complete = 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if stack:
                stack.pop()
            last_complete = i + 1
        elif ch == ",":
            last_complete = i
    return stack, in_string, last_complete


def _close_truncated(text: str) -> str:
    """Close strings, objects and arrays left open by a reply cut off mid-way."""
    stack, in_string, last_complete = _scan(text)
    if not stack and not in_string:
        return text
    # Drop a half-written trailing element, then close what is open.
    body = text[:last_complete] if last_complete else text
    if in_string and not last_complete:
        body = text + '"'
    stack, _, _ = _scan(body)
    return body.rstrip().rstrip(",") + "".join(reversed(stack))


def extract_json(text: str) -> Any:
    """Parse the JSON value inside an LLM reply, repairing the common breakages.

    Raises LLMError(kind="parse") with the raw reply attached when nothing parses.
    """
    if not text or not text.strip():
        raise LLMError("The LLM returned an empty reply.", kind="parse", raw=text, retryable=True)
    for candidate in _candidates(text):
        for attempt in (candidate, _drop_trailing_commas(candidate)):
            try:
                return json.loads(attempt)
            except json.JSONDecodeError:
                pass
        repaired = _drop_trailing_commas(_close_truncated(candidate))
        try:
            return json.loads(repaired)
        except json.JSONDecodeError:
            continue
    raise LLMError(
        "The LLM reply is not valid JSON.",
        found=text[:200],
        fix="use a stronger model or a server with JSON-schema (structured output) support",
        kind="parse",
        raw=text,
        retryable=True,
    )
