"""What the CLI prints: progress lines on stderr, results as one JSON object per line on stdout,
and a readable table beside them (stderr, or stdout with `--format table`)."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

from core.progress import ProgressEvent


class Printer:
    """on_progress for terminals: one line per stage, updated at most every half second."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._last = 0.0
        self._stage = ""

    def __call__(self, event: ProgressEvent) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if event.stage == self._stage and now - self._last < 0.5 and not finished:
            return
        self._stage, self._last = event.stage, now
        total = f"/{event.total}" if event.total else ""
        eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None and not finished else ""
        print(
            f"[{event.stage}] {event.done}{total}{eta} {event.message}", file=sys.stderr, flush=True
        )

    def note(self, stage: str, message: str) -> None:
        """A one-off progress line."""
        if not self.quiet:
            print(f"[{stage}] {message}", file=sys.stderr, flush=True)


def plain(value: Any) -> Any:
    """JSON-ready: numpy and pandas scalars to Python, NaN and NA to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy scalars
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if str(value) in ("<NA>", "NaT"):
        return None
    return str(value)


@dataclass
class Output:
    """Where results go: `json` (default) prints the JSON on stdout and the table on stderr;
    `table` prints the table on stdout and no JSON. `quiet` drops the stderr table."""

    format: str = "json"
    quiet: bool = False

    def emit(self, data: dict[str, Any], text: str = "") -> None:
        """One result: its JSON object and its table."""
        self.text(text)
        if self.format != "table":
            print(json.dumps(plain(data), allow_nan=False), flush=True)

    def text(self, text: str) -> None:
        """A table alone: on stdout with `--format table`, else on stderr (unless quiet)."""
        if not text:
            return
        if self.format == "table":
            print(text.rstrip() + "\n", flush=True)
        elif not self.quiet:
            print(text.rstrip() + "\n", file=sys.stderr, flush=True)
