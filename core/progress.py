"""Progress events for long operations: one callback, plus a stop check."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import StoppedError


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: `done` of `total` units of `stage`, with an ETA when known."""

    stage: str
    done: int
    total: int | None = None
    message: str = ""
    eta_s: float | None = None
    rate: float | None = None  # units per second

    @property
    def fraction(self) -> float | None:
        """Share done in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


ProgressCallback = Callable[[ProgressEvent], None]
StopCheck = Callable[[], bool]


def labelled(on_progress: ProgressCallback | None, label: str) -> ProgressCallback | None:
    """A callback that passes events on with `label` before their stage ("tuned · answering"),
    so a stage that runs once per model says which one is running."""
    if on_progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        on_progress(dataclasses.replace(event, stage=f"{label} · {event.stage}"))

    return forward


def null_progress(event: ProgressEvent) -> None:
    """A progress callback that ignores everything."""


def never_stop() -> bool:
    """A stop check that never asks to stop."""
    return False


class ProgressTracker:
    """Turns counts into ProgressEvents with rate and ETA, and checks the stop flag."""

    def __init__(
        self,
        stage: str,
        total: int | None,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> None:
        self.stage = stage
        self.total = total
        self.done = 0
        self._on_progress = on_progress or null_progress
        self._should_stop = should_stop or never_stop
        self._start = time.monotonic()

    @property
    def on_progress(self) -> ProgressCallback:
        """The callback this tracker reports to (for a sub-stage that reports on its own)."""
        return self._on_progress

    @property
    def should_stop(self) -> StopCheck:
        """The stop check this tracker obeys (for a sub-stage that checks on its own)."""
        return self._should_stop

    def advance(self, n: int = 1, message: str = "") -> None:
        """Count `n` more units done and report; raise StoppedError if a stop was asked."""
        self.done += n
        self.report(message)
        self.check_stop()

    def report(self, message: str = "") -> None:
        """Report the current count."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed if self.done else None
        eta = None
        if rate and self.total is not None:
            eta = max(0.0, (self.total - self.done) / rate)
        self._on_progress(
            ProgressEvent(self.stage, self.done, self.total, message, eta_s=eta, rate=rate)
        )

    def check_stop(self) -> None:
        """Raise StoppedError when the user asked to stop."""
        if self._should_stop():
            raise StoppedError(f"{self.stage} was stopped after {self.done} of {self.total} items.")
