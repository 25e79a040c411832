"""Team mode's configuration: who may sign in, how, and with which role; the upload limits; the
proxies whose forwarded addresses are trusted.

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

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, InputError
from core.runs.actor import ROLES
from core.team.identity import normalise_email

MODES = ("off", "password", "oidc")
ENV = {
    "password": "RAGBENCH_TEAM_PASSWORD",
    "owners": "RAGBENCH_TEAM_OWNERS",
    "members": "RAGBENCH_TEAM_MEMBERS",
    "viewers": "RAGBENCH_TEAM_VIEWERS",
    "default_role": "RAGBENCH_TEAM_DEFAULT_ROLE",
    "upload_quota_mb": "RAGBENCH_UPLOAD_QUOTA_MB",
    "session_upload_mb": "RAGBENCH_SESSION_UPLOAD_MB",
    "trusted_proxies": "RAGBENCH_TRUSTED_PROXIES",
}


def _items(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(v).strip() for v in items if str(v).strip()]


def _emails(value: Any) -> frozenset[str]:
    found = set()
    for item in _items(value):
        try:
            found.add(normalise_email(item))
        except InputError as exc:
            raise ConfigError(
                f"The team's email lists hold {item.strip()!r}, which cannot be an identity: "
                f"{exc.what}",
                found=exc.found,
                fix="correct it in RAGBENCH_TEAM_* or [ragbench.team] in secrets.toml",
            ) from exc
    return frozenset(found)


def _networks(value: Any) -> frozenset[str]:
    for item in _items(value):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"Trusted proxy {item!r} is not an IP address or network.",
                fix="list the proxies' addresses, e.g. RAGBENCH_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8",
            ) from exc
    return frozenset(_items(value))


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
    session_upload_mb: float = 200.0  # uploads one signed-in session holds in server memory
    trusted_proxies: frozenset[str] = frozenset()  # addresses whose X-Forwarded-For is believed

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
        """The role of a signed-in identity, or None when it may not sign in at all (or the
        email is not one: invisible or look-alike characters, core.team.identity)."""
        try:
            who = normalise_email(email)
        except InputError:
            return None
        for role, listed in (("owner", self.owners), ("member", self.members)):
            if who in listed:
                return role
        if who in self.viewers:
            return "viewer"
        return None if self.default_role == "none" else self.default_role

    @property
    def upload_quota_bytes(self) -> int:
        return int(self.upload_quota_mb * 1024 * 1024)

    @property
    def session_upload_bytes(self) -> int:
        return int(self.session_upload_mb * 1024 * 1024)


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
        session_upload_mb=float(section.get("session_upload_mb") or 200),
        trusted_proxies=_networks(section.get("trusted_proxies")),
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
