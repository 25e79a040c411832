"""Measuring a stage for bench.scale: wall time, CPU time, peak memory and items per second.

Peak memory is the process's resident set size, sampled every 20 ms by a thread while the stage
runs (its highest value), beside what was resident when the stage began: the growth is what the
stage needed. CPU time is this process's (all threads). A stage that reports progress through
`core.progress` can be split into its steps: `StepClock` closes a row each time the step named in
the events changes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil


def rss_mb() -> float:
    """This process's resident memory, MB."""
    return psutil.Process().memory_info().rss / 1e6


class PeakSampler:
    """The highest resident memory seen since `reset`, sampled every 20 ms by a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = rss_mb()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, process.memory_info().rss / 1e6)

    def reset(self) -> float:
        """Start a new window; returns the peak of the one that ends."""
        peak, self.peak = self.peak, rss_mb()
        return max(peak, self.peak)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    """One measured stage at one size."""

    size: str
    stage: str
    wall_s: float
    cpu_s: float
    peak_mb: float
    start_mb: float
    items: int | None = None
    unit: str = ""
    note: str = ""

    @property
    def rate(self) -> str:
        if not self.items or self.wall_s <= 0:
            return ""
        return f"{self.items / self.wall_s:,.0f} {self.unit}/s"

    def cells(self) -> list[str]:
        items = f"{self.items:,} {self.unit}" if self.items is not None else ""
        return [
            self.size,
            self.stage,
            f"{self.wall_s:.1f}",
            f"{self.cpu_s:.1f}",
            f"{self.peak_mb:,.0f} (+{max(0.0, self.peak_mb - self.start_mb):,.0f})",
            items,
            self.rate,
            self.note,
        ]


HEADER = ["size", "stage", "wall s", "CPU s", "peak MB (+ growth)", "items", "items/s", "note"]


@dataclass
class Meter:
    """Collects rows; `measure` times one stage, `steps` splits one by its progress events."""

    sampler: PeakSampler = field(default_factory=PeakSampler)
    rows: list[Row] = field(default_factory=list)

    @contextlib.contextmanager
    def measure(
        self, size: str, stage: str, items: int | None = None, unit: str = "", note: str = ""
    ) -> Iterator[Row]:
        start_mb = rss_mb()
        first = len(self.rows)
        self.sampler.reset()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        row = Row(size, stage, 0.0, 0.0, 0.0, start_mb, items, unit, note)
        yield row  # the caller may set row.items / row.note once it knows them
        row.wall_s = time.perf_counter() - wall0
        row.cpu_s = time.process_time() - cpu0
        # a StepClock inside restarts the sampler per step: its rows hold those peaks
        row.peak_mb = max([self.sampler.reset(), *(r.peak_mb for r in self.rows[first:])])
        self.rows.append(row)
        print(" | ".join(row.cells()), flush=True)

    def steps(self, size: str, prefix: str) -> StepClock:
        return StepClock(self, size, prefix)

    def table(self) -> str:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r.cells()) + " |" for r in self.rows]
        return "\n".join(lines)


class StepClock:
    """A progress callback that makes one row per step named in the events' messages (the text
    before ' (' in 'step (3/14): …'), for stages run through core.progress.StepPlan, or per
    event stage for the others."""

    def __init__(self, meter: Meter, size: str, prefix: str) -> None:
        self.meter, self.size, self.prefix = meter, size, prefix
        self.current: str | None = None
        self.events: list[Any] = []
        self._start = (0.0, 0.0, 0.0)

    def _name(self, event: Any) -> str:
        message = str(event.message or "")
        if " (" in message and "/" in message.split(" (", 1)[1][:8]:
            return message.split(" (", 1)[0]
        return str(event.stage)

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        name = self._name(event)
        if name != self.current:
            self.close()
            self.current = name
            self.meter.sampler.reset()
            self._start = (time.perf_counter(), time.process_time(), rss_mb())

    def close(self) -> None:
        if self.current is None:
            return
        wall0, cpu0, mb0 = self._start
        row = Row(
            self.size,
            f"{self.prefix}{self.current}",
            time.perf_counter() - wall0,
            time.process_time() - cpu0,
            self.meter.sampler.reset(),
            mb0,
        )
        self.meter.rows.append(row)
        print(" | ".join(row.cells()), flush=True)
        self.current = None
