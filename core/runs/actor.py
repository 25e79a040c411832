"""Who is acting, and what their role allows: the identity every run records and every audit
line names, checked where runs are made, stopped and deleted (not only on the pages' buttons).

Roles rank viewer < member < owner: viewers read runs and reports, members also run stages
(make runs, start and stop jobs), owners also delete. One user on their own machine, the CLI and
the tests act as the local owner; the app in team mode acts for each session's signed-in user,
and a background job acts for the user who started it (`RAGBENCH_ACTOR` in its environment).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from core.errors import AccessError

ROLES: tuple[str, ...] = ("viewer", "member", "owner")
NEEDS: dict[str, str] = {  # action -> the least role allowed to do it
    "read": "viewer",
    "export": "viewer",
    "run": "member",
    "stop": "member",
    "delete": "owner",
}
ACTOR_ENV = "RAGBENCH_ACTOR"


@dataclass(frozen=True)
class Actor:
    """A user as the app knows them: a name (an email when signed in) and a role."""

    name: str
    role: str = "owner"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; roles: {', '.join(ROLES)}")

    def can(self, action: str) -> bool:
        """Whether this actor's role allows `action` (read, export, run, stop, delete)."""
        return ROLES.index(self.role) >= ROLES.index(NEEDS[action])


def _local() -> Actor:
    """The default actor: the job's starter (from the environment), else the local owner."""
    raw = os.environ.get(ACTOR_ENV)
    if raw:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            data = json.loads(raw)
            return Actor(str(data["name"]), str(data["role"]))
    try:
        return Actor(f"{getpass.getuser()} (local)", "owner")
    except (KeyError, OSError):  # no user name on this system
        return Actor("local", "owner")


NOBODY = Actor("nobody (not signed in)", "viewer")  # team mode, outside a signed-in session
_fallback: list[Actor] = []  # set by the app in team mode: who acts outside a signed-in session
_actor: ContextVar[Actor | None] = ContextVar("ragbench_actor", default=None)


def acting() -> Actor:
    """The actor of this thread's work (a page session, a job, the CLI)."""
    current = _actor.get()
    if current is not None:
        return current
    return _fallback[0] if _fallback else _local()


def act_as(actor: Actor) -> None:
    """Make `actor` the acting user of this thread (a Streamlit script run, each time)."""
    _actor.set(actor)


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Act as `actor` inside the block."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def set_fallback(actor: Actor | None) -> None:
    """Who acts where no session set an actor (team mode: a viewer named 'nobody', so a code
    path that forgot to say who acts can read but never change anything)."""
    _fallback.clear()
    if actor is not None:
        _fallback.append(actor)


def require(action: str, what: str = "") -> Actor:
    """The acting user, when their role allows `action`; AccessError with the fix otherwise."""
    actor = acting()
    if not actor.can(action):
        raise AccessError(
            f"{actor.name} is a {actor.role} and cannot {action}"
            + (f" ({what})" if what else "")
            + ".",
            fix=f"ask an owner to list you as a {NEEDS[action]} or above",
        )
    return actor


def actor_env() -> dict[str, str]:
    """The environment that makes a child process (a background job) act as this actor."""
    actor = acting()
    return {ACTOR_ENV: json.dumps({"name": actor.name, "role": actor.role})}
