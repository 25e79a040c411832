"""Team mode: who may sign in, how, and with which role; the per-user upload quota.

Off by default (one user on their own machine acts as the local owner). Two ways to turn it on,
read from `.streamlit/secrets.toml` or the environment:

- **OIDC** (an identity provider): Streamlit's `st.login`, configured by an `[auth]` section in
  secrets.toml; the identity is the provider's verified email.
- **Shared password** (no identity provider): `password` under `[ragbench.team]` or
  `RAGBENCH_TEAM_PASSWORD`; each person signs in with their email and the team's password,
  compared in constant time. The password is never written to disk or to a log.

Roles come from email lists (`owners`, `members`, `viewers`); anyone else signed in gets
`default_role` ("none", refused, with OIDC; viewer with the shared password, unless set).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.runs.actor import ROLES

MODES = ("off", "password", "oidc")
ENV = {
    "password": "RAGBENCH_TEAM_PASSWORD",
    "owners": "RAGBENCH_TEAM_OWNERS",
    "members": "RAGBENCH_TEAM_MEMBERS",
    "viewers": "RAGBENCH_TEAM_VIEWERS",
    "default_role": "RAGBENCH_TEAM_DEFAULT_ROLE",
    "upload_quota_mb": "RAGBENCH_UPLOAD_QUOTA_MB",
}


def _emails(value: Any) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return frozenset(str(v).strip().lower() for v in items if str(v).strip())


@dataclass(frozen=True)
class TeamConfig:
    """How people sign in and which role each gets."""

    mode: str = "off"
    password: str = field(default="", repr=False)  # never printed, never saved
    owners: frozenset[str] = frozenset()
    members: frozenset[str] = frozenset()
    viewers: frozenset[str] = frozenset()
    default_role: str = "viewer"
    upload_quota_mb: float = 0.0  # per user, over every corpus they built; 0 = no quota

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"Unknown sign-in mode {self.mode!r}.", fix="use off, password or oidc"
            )
        if self.default_role not in (*ROLES, "none"):
            raise ConfigError(
                f"Unknown default role {self.default_role!r}.",
                fix=f"use one of {', '.join(ROLES)} or none",
            )
        if self.mode == "password" and not self.password:
            raise ConfigError(
                "Password sign-in needs a password.", fix="set RAGBENCH_TEAM_PASSWORD"
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def role_for(self, email: str) -> str | None:
        """The role of a signed-in identity, or None when it may not sign in at all."""
        who = email.strip().lower()
        for role, listed in (("owner", self.owners), ("member", self.members)):
            if who in listed:
                return role
        if who in self.viewers:
            return "viewer"
        return None if self.default_role == "none" else self.default_role

    @property
    def upload_quota_bytes(self) -> int:
        return int(self.upload_quota_mb * 1024 * 1024)


def team_config(secrets: Mapping[str, Any] | None = None) -> TeamConfig:
    """The team configuration from secrets.toml (`[ragbench.team]`, `[auth]`) and the environment
    (which wins). OIDC when secrets.toml has an `[auth]` section, else a shared password when one
    is set, else off."""
    secrets = secrets or {}
    section = dict((secrets.get("ragbench") or {}).get("team") or {})
    for key, var in ENV.items():
        if os.environ.get(var):
            section[key] = os.environ[var]
    oidc = bool(secrets.get("auth"))
    password = str(section.get("password") or "")
    # With an identity provider anyone with an account there can sign in: refuse the unlisted
    # unless the configuration says otherwise.
    return TeamConfig(
        mode="oidc" if oidc else "password" if password else "off",
        password=password,
        owners=_emails(section.get("owners")),
        members=_emails(section.get("members")),
        viewers=_emails(section.get("viewers")),
        default_role=str(section.get("default_role") or ("none" if oidc else "viewer")),
        upload_quota_mb=float(section.get("upload_quota_mb") or 0),
    )


def held_secret(typed: str, held: str, address: str, held_address: str, team: bool) -> str:
    """The key or token to send: the one typed in this session, else the server's own (from the
    environment or secrets.toml). In team mode the server's own goes only to the server's own
    address, so nobody can send it to a host they typed in the sidebar."""
    if typed:
        return typed
    if team and address.strip().rstrip("/") != held_address.strip().rstrip("/"):
        return ""
    return held


def password_matches(given: str, expected: str) -> bool:
    """Whether `given` is the team password, in constant time (digests of equal length are
    compared, so neither the length nor a common prefix shows in the timing)."""
    if not expected:
        return False
    a = hashlib.sha256(given.encode("utf-8")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


def is_loopback(address: str) -> bool:
    """Whether a server address only listens on this machine."""
    return address.strip() in ("localhost", "127.0.0.1", "::1") or address.startswith("127.")


def exposure_warning(address: str, config: TeamConfig) -> str | None:
    """The warning for a server reachable from other machines with no sign-in; None otherwise."""
    if config.enabled or (address and is_loopback(address)):  # "": every interface
        return None
    return (
        f"ragbench listens on {address or 'every address'} with sign-in off: anyone who reaches "
        "the port can read every run, start jobs and delete runs. Set RAGBENCH_TEAM_PASSWORD (or "
        "an [auth] section in .streamlit/secrets.toml for OIDC) and the owner and member lists; "
        "see the README's team section."
    )


class SignInThrottle:
    """Slows password guessing: after `limit` wrong tries for one email within `window_s`, that
    email is refused without a check until the window has passed (per server process)."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, email: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(email, []) if now - t < self.window_s]
        self._failures[email] = times
        return times

    def blocked(self, email: str, now: float | None = None) -> bool:
        """Whether this email has used up its tries for now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return len(self._recent(email, now)) >= self.limit

    def failed(self, email: str, now: float | None = None) -> None:
        """Count one wrong try."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(email, now).append(now)

    def succeeded(self, email: str) -> None:
        """Forget the wrong tries of an email that signed in."""
        with self._lock:
            self._failures.pop(email, None)


THROTTLE = SignInThrottle()  # per email
ADDRESS_THROTTLE = SignInThrottle(limit=20)  # per client address: rotating emails does not help
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]+")


def looks_like_email(text: str) -> bool:
    """Whether `text` can be an email address (what the role lists hold; also what the audit
    log may record of a refused sign-in)."""
    return len(text) <= 254 and _EMAIL.fullmatch(text) is not None


SESSION_COOKIE = "ragbench_team"
SESSION_TTL_S = 12 * 3600
SECRET_FILE = ".team_secret"  # random bytes in the data directory (never the password)


def _signing_key(config: TeamConfig) -> bytes:
    """The key that signs session cookies: this data directory's random secret and the team
    password, so changing the password signs everyone out."""
    from core.config import data_dir

    path = data_dir() / SECRET_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
    return hashlib.sha256(path.read_bytes() + config.password.encode("utf-8")).digest()


def key_fingerprint(config: TeamConfig) -> str:
    """A short digest of the signing key: a session signed in under another password (or
    another data directory's secret) no longer matches it."""
    return hashlib.sha256(_signing_key(config)).hexdigest()[:16]


def session_token(email: str, config: TeamConfig, now: float | None = None) -> str:
    """A signed cookie value that keeps `email` signed in for SESSION_TTL_S (a reload of the page
    is a new Streamlit session; the cookie carries the sign-in over)."""
    expires = int((time.time() if now is None else now) + SESSION_TTL_S)
    payload = f"{email}|{expires}".encode()
    signature = hmac.new(_signing_key(config), payload, hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(payload).decode("ascii") + "." + signature


def token_email(token: str, config: TeamConfig, now: float | None = None) -> str | None:
    """The email a session cookie signs in, or None when it is forged, damaged or expired."""
    try:
        encoded, signature = token.rsplit(".", 1)
        payload = base64.urlsafe_b64decode(encoded.encode("ascii"))
        email, expires = payload.decode("utf-8").rsplit("|", 1)
        expected = hmac.new(_signing_key(config), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
    except (ValueError, UnicodeError):
        return None
    return email
