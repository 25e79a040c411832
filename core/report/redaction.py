"""Nothing secret leaves: configs and JSON artifacts pass through `redact` (string values under
keys named like key/token/secret/password/credential/authorization become "[redacted]"; URL
credentials, bearer tokens and sk-... keys are scrubbed anywhere), and a last pass removes every
known secret value (the LLM key and Chroma token of the environment, plus any the caller passes)
from every exported byte."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.runs.folders import Run

if TYPE_CHECKING:
    pass


REDACTED = "[redacted]"


# Key names whose string values are secrets. Numbers and booleans under them stay
# (max_tokens, prompt_tokens, api_key_set are counts and flags, not secrets).
SECRET_KEY = re.compile(r"key|token|secret|passw|credential|authorization|cookie", re.IGNORECASE)


SECRET_ENV = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


MIN_SECRET_LEN = 8  # shorter values are too likely to occur by chance to be scrubbed verbatim


_VALUE_PATTERNS = (
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/\s:@\"']+:[^/\s@\"']+@"), r"\1" + REDACTED + "@"),
    (
        re.compile(
            r"([?&](?:api[_-]?key|key|token|access_token|secret|password)=)[^&\s\"'<]+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # Prose says "Basic configuration"; only a credential has digits and length.
    (
        re.compile(r"\b(Bearer|Authorization:\s*Basic)\s+(?=[\w.~+/=-]*\d)[\w.~+/=-]{12,}"),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), REDACTED),
)


def scrub_text(text: str) -> str:
    """Remove secret-looking substrings: URL credentials, key/token query parameters, bearer
    tokens and sk-... keys."""
    for pattern, repl in _VALUE_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _redact_leaves(obj: Any) -> Any:
    if isinstance(obj, str):
        return REDACTED if obj else obj
    if isinstance(obj, Mapping):
        return {k: _redact_leaves(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact_leaves(v) for v in obj]
    return obj


def redact(obj: Any) -> Any:
    """A copy of a JSON-like value fit for export: string values under secret-named keys
    (*key*, *token*, *secret*, *password*, ...) become "[redacted]", and every other string is
    scrubbed of secret-looking substrings. Numbers and booleans are kept."""
    if isinstance(obj, Mapping):
        return {
            k: _redact_leaves(v) if SECRET_KEY.search(str(k)) else redact(v) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj


def _worth_scrubbing(value: str) -> bool:
    """Long enough not to occur by chance, and not a number or a flag (a *_TOKEN_LIMIT=100000
    must not erase every 100000 in a report)."""
    plain = value.strip()
    if len(plain) < MIN_SECRET_LEN or plain.lower() in {"true", "false", "none", "null"}:
        return False
    return not re.fullmatch(r"[\d.,_+-]+", plain)


def known_secrets(extra: Iterable[str] = ()) -> list[str]:
    """Secret values that must never be exported: `extra` plus the values of environment
    variables named like *API_KEY*, *TOKEN*, *SECRET*, *PASSWORD* (longest first)."""
    values = {s for s in extra if s and _worth_scrubbing(s)}
    for name, value in os.environ.items():
        if SECRET_ENV.search(name) and _worth_scrubbing(value):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _strip_secrets(data: bytes, secrets_: Sequence[str]) -> bytes:
    """Replace every secret, also as it reads once HTML- or JSON-escaped."""
    for secret in secrets_:
        for form in {secret, html.escape(secret), json.dumps(secret)[1:-1]}:
            data = data.replace(form.encode("utf-8"), REDACTED.encode("utf-8"))
    return data


def redacted_manifest(run: Run) -> dict[str, Any]:
    """A run's manifest with its config (and everything else) redacted."""
    return redact(run.manifest.model_dump())
