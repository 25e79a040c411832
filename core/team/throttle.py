"""Slowing password guessing without locking anyone out.

Every try is counted against two keys: the address it comes from, and that address together
with the email typed. A few tries are free; after them each wrong try doubles the wait before the
next one is checked, up to a cap, and the count is forgotten after a quiet spell. A browser that
signed in before carries a device cookie for its email (OWASP's "device cookies"): its tries
count only against that device, so a flood from the same address (everyone behind one proxy or
on this machine) slows the attacker, not the colleague who signs in every day. No key holds an
email alone, so nobody can make a named user wait from another address.

A try is counted when it is let through, before the password is compared, so parallel tries
cannot all slip in before the first failure lands. Tries refused while waiting are counted, not
logged one by one: `worth_a_line` says when one is (the first, then every power of ten).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

WAIT_ENV = "RAGBENCH_SIGNIN_WAIT_S"  # the first wait after the free tries (default 2 s)


def first_wait_s() -> float:
    """The first wait after the free tries, from RAGBENCH_SIGNIN_WAIT_S (2 s by default)."""
    try:
        return max(0.1, float(os.environ.get(WAIT_ENV) or 2.0))
    except ValueError:
        return 2.0


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0  # when the last counted try was let through
    refused: int = 0  # tries refused since then


@dataclass
class Backoff:
    """Growing waits for one kind of key: `free` tries, then base_s, 2*base_s, 4*base_s … up
    to cap_s between checked tries; forgotten `forget_s` after the last one."""

    free: int
    base_s: float
    cap_s: float
    forget_s: float = 3600.0
    counts: dict[str, _Count] = field(default_factory=dict, compare=False, repr=False)

    def wait_s(self, key: str, now: float) -> float:
        """Seconds before a try for `key` is checked again (0: now)."""
        count = self.counts.get(key)
        if count is None:
            return 0.0
        if now - count.last >= self.forget_s:
            del self.counts[key]
            return 0.0
        over = count.failures - self.free
        if over < 0:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2**over)
        return max(0.0, count.last + delay - now)


@dataclass(frozen=True)
class Attempt:
    """A try's fate: checked now (wait_s 0) or refused, with the tries refused in a row."""

    wait_s: float
    refused: int = 0


def _digest(text: str) -> str:
    """What the throttle keeps of a typed email: a digest (it may be a mistyped password)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class SignInThrottle:
    """The sign-in policy: per address and per (email, address), or per device for a browser
    whose device cookie names the email typed. One per server process."""

    def __init__(
        self,
        address: Backoff | None = None,
        pair: Backoff | None = None,
        device: Backoff | None = None,
    ) -> None:
        wait = first_wait_s()
        self.address = address or Backoff(free=10, base_s=wait, cap_s=max(wait, 120.0))
        self.pair = pair or Backoff(free=3, base_s=wait, cap_s=max(wait, 300.0))
        self.device = device or Backoff(free=5, base_s=wait, cap_s=max(wait, 300.0))
        self._lock = threading.Lock()

    def _keys(self, email: str, address: str, device: str) -> list[tuple[Backoff, str]]:
        if device:
            return [(self.device, device)]
        return [(self.address, address), (self.pair, _digest(f"{email}\n{address}"))]

    def attempt(
        self, email: str, address: str, device: str = "", now: float | None = None
    ) -> Attempt:
        """Let a try through (wait_s 0; it counts as a failure until `succeeded`), or refuse it
        with the seconds left to wait and how many tries were refused since the last checked."""
        now = time.monotonic() if now is None else now
        keys = self._keys(email, address, device)
        with self._lock:
            wait = max(backoff.wait_s(key, now) for backoff, key in keys)
            refused = 0
            for backoff, key in keys:
                count = backoff.counts.setdefault(key, _Count(last=now))
                if wait:
                    count.refused += 1
                    refused = max(refused, count.refused)
                else:
                    count.failures += 1
                    count.last = now
                    count.refused = 0
        return Attempt(wait, refused)

    def succeeded(self, email: str, address: str, device: str = "") -> None:
        """The try let through was right: forget the email's and the device's wrong tries, and
        take this try back from the address (others' wrong tries there still count)."""
        with self._lock:
            for backoff, key in self._keys(email, address, device):
                if backoff is self.address:
                    count = backoff.counts.get(key)
                    if count is not None:
                        count.failures = max(0, count.failures - 1)
                else:
                    backoff.counts.pop(key, None)

    def clear(self) -> None:
        """Forget every count (a test's fresh start)."""
        with self._lock:
            for backoff in (self.address, self.pair, self.device):
                backoff.counts.clear()


def worth_a_line(refused: int) -> bool:
    """Whether the n-th try refused while waiting gets its own audit line: the first, the
    tenth, the hundredth … (the rest are counted in those lines)."""
    while refused >= 10 and refused % 10 == 0:
        refused //= 10
    return refused == 1


THROTTLE = SignInThrottle()
