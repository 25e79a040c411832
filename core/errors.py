"""One project error, whose message says what was expected, what was found and the fix."""

from __future__ import annotations


class RagbenchError(Exception):
    """Base error. Pages and the CLI turn it into a message for people.

    Args:
        what: what went wrong, in one sentence.
        found: what was actually found (optional).
        fix: what the user can do about it (optional).
    """

    def __init__(self, what: str, *, found: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.found = found
        self.fix = fix
        parts = [what]
        if found:
            parts.append(f"Found: {found.rstrip(' .')}.")  # one full stop, however it ends
        if fix:
            parts.append(f"Fix: {fix.rstrip(' .')}.")
        super().__init__(" ".join(parts))


class AccessError(RagbenchError):
    """The acting user's role does not allow the action (team mode)."""


class ConfigError(RagbenchError):
    """A configuration value is invalid or missing."""


class InputError(RagbenchError):
    """A user-supplied file or dataset cannot be used."""


class BackendError(RagbenchError):
    """An external backend (LLM server, Chroma server, model) failed or is missing."""


class LLMError(BackendError):
    """The LLM backend failed, timed out, refused, or replied with something unusable."""

    def __init__(
        self,
        what: str,
        *,
        found: str | None = None,
        fix: str | None = None,
        kind: str = "error",
        raw: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(what, found=found, fix=fix)
        self.kind = kind  # "timeout", "rate_limit", "server", "parse", "refused", "connection", ...
        self.raw = raw
        self.retryable = retryable


class StoreError(BackendError):
    """The vector store (Chroma) failed or is unreachable."""


class RunError(RagbenchError):
    """A run folder is missing, unreadable, or cannot be combined with another."""


class LineageError(RunError):
    """Two runs that do not belong together were combined."""


class StoppedError(RagbenchError):
    """A long job was stopped by the user."""
