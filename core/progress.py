"""Progress events for long operations: one callback, plus a stop check."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
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


class StepPlan:
    """A long job as named steps with estimated costs, reported as one progress line: the step
    running now, its own progress when it reports some, and an ETA for the whole job.

    How it works: each step has an estimated cost (any unit; core.evaluation.plan uses estimated
    seconds on a reference machine). Progress is the cost done, the running step counted by its
    share done; the ETA is the cost left times the seconds each unit of cost has taken so far,
    so a slower or faster machine corrects the estimates as the job runs. A step that reports its
    own total (encoding: the texts not in the embedding cache) can restate its cost from that
    total with `per_unit`. Events carry the cost in thousandths, as whole numbers."""

    def __init__(
        self,
        stage: str,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> None:
        self.stage = stage
        self._costs: dict[str, float] = {}
        self._done: dict[str, float] = {}  # step -> share done, 0..1
        self._on_progress = on_progress or null_progress
        self._should_stop = should_stop or never_stop
        self._start = time.monotonic()

    def add(self, name: str, cost: float) -> None:
        """Plan one more step (or restate the cost of a planned one)."""
        self._costs[name] = max(float(cost), 1e-6)
        self._done.setdefault(name, 0.0)

    def _insert_next(self, name: str) -> None:
        """Plan `name` right after the last step that has begun, so positions count up."""
        names = list(self._costs)
        begun = [n for n, step in enumerate(names) if self._done[step] > 0]
        at = begun[-1] + 1 if begun else 0
        order = [*names[:at], name, *names[at:]]
        self._costs = {n: self._costs.get(n, 1e-6) for n in order}
        self._done = {n: self._done.get(n, 0.0) for n in order}

    def names(self) -> list[str]:
        """The planned steps, in order."""
        return list(self._costs)

    @property
    def should_stop(self) -> StopCheck:
        """The stop check this plan obeys (for a step that checks on its own)."""
        return self._should_stop

    @contextlib.contextmanager
    def step(self, name: str, per_unit: float | None = None) -> Iterator[ProgressCallback]:
        """Run one planned step: reports its start and end; yields a callback for the step's own
        ProgressEvents (a sub-stage's), which become this plan's events. Checks for a stop."""
        if name not in self._costs:  # unplanned: it runs now, after the steps already begun
            self._insert_next(name)
        self._report(name, "")
        restated = [per_unit is None]

        def forward(event: ProgressEvent) -> None:
            if not restated[0] and event.total is not None:
                self._costs[name] = max(event.total * float(per_unit or 0.0), 1e-6)
                restated[0] = True
            if event.fraction is not None:
                self._done[name] = event.fraction
            self._report(name, event.message)

        yield forward
        self._done[name] = 1.0
        self._report(name, "done")
        self.check_stop()

    def finish(self, message: str = "done") -> None:
        """Report the whole job finished."""
        total = int(round(sum(self._costs.values()) * 1000))
        self._on_progress(ProgressEvent(self.stage, total, total, message, eta_s=0.0))

    def _report(self, name: str, message: str) -> None:
        total = sum(self._costs.values())
        done = sum(self._costs[n] * self._done[n] for n in self._costs)
        elapsed = time.monotonic() - self._start
        eta = elapsed / done * (total - done) if done > 0 and elapsed > 0.5 else None
        position = f"{self.names().index(name) + 1}/{len(self._costs)}"
        text = f"{name} ({position})" + (f": {message}" if message else "")
        self._on_progress(
            ProgressEvent(
                self.stage,
                int(round(done * 1000)),
                int(round(total * 1000)),
                text,
                eta_s=None if eta is None else max(0.0, eta),
                rate=None,
            )
        )

    def check_stop(self) -> None:
        """Raise StoppedError when the user asked to stop."""
        if self._should_stop():
            raise StoppedError(f"{self.stage} was stopped.")
