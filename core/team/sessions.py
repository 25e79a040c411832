"""Server-side sign-in sessions (password mode) and device cookies.

A sign-in makes a session: a random id, and a record in the data directory (`team_sessions/`,
one small JSON file named by the id's digest) with the email, the role it was given, the
signing key it was made under and when it expires. The browser's cookie carries the id, signed.
Every script run looks the record up again, so signing out (which deletes it) ends the session
for every client that holds a copy of the cookie, and a change of role, of password or of the
data directory's secret ends it too: the person signs in again.

A device cookie says "this browser signed in as this email before"; it lets the sign-in
throttle (core.team.throttle) tell a returning colleague from a flood at the same address. It
grants nothing by itself: the password is still checked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from core.team.config import TeamConfig

SESSION_COOKIE = "ragbench_team"
DEVICE_COOKIE = "ragbench_device"
SESSION_TTL_S = 12 * 3600
DEVICE_TTL_S = 30 * 24 * 3600
SECRET_FILE = ".team_secret"  # random bytes in the data directory (never the password)
SESSIONS_DIR = "team_sessions"


@dataclass(frozen=True)
class Session:
    """A live sign-in: its id, who, with which role, until when."""

    id: str
    email: str
    role: str
    expires: float


def _signing_key(config: TeamConfig) -> bytes:
    """The key that signs cookies: this data directory's random secret and the team password,
    so changing either signs everyone out."""
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
    """A short digest of the signing key: a session made under another password (or another
    data directory's secret) no longer matches it."""
    return hashlib.sha256(_signing_key(config)).hexdigest()[:16]


def _sign(fields: list[str], config: TeamConfig) -> str:
    payload = "|".join(fields).encode("utf-8")
    signature = hmac.new(_signing_key(config), payload, hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(payload).decode("ascii") + "." + signature


def _unsign(token: str, config: TeamConfig, now: float | None) -> list[str] | None:
    """The fields of a signed token, or None when it is forged, damaged or expired (the last
    field is its expiry)."""
    try:
        encoded, signature = token.rsplit(".", 1)
        payload = base64.urlsafe_b64decode(encoded.encode("ascii"))
        expected = hmac.new(_signing_key(config), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return None
        fields = payload.decode("utf-8").split("|")
        if int(fields[-1]) < (time.time() if now is None else now):
            return None
    except (ValueError, UnicodeError, IndexError):
        return None
    return fields


def _record_path(session_id: str) -> Path:
    from core.config import data_dir

    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:40]
    return data_dir() / SESSIONS_DIR / f"{digest}.json"


def start_session(
    email: str, role: str, config: TeamConfig, now: float | None = None
) -> tuple[Session, str]:
    """A new session for a signed-in email and its cookie value (expired records are swept)."""
    from core.runs.folders import write_json_atomic

    now = time.time() if now is None else now
    session = Session(secrets.token_urlsafe(24), email, role, now + SESSION_TTL_S)
    path = _record_path(session.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent, now)
    record = {
        "email": email,
        "role": role,
        "key": key_fingerprint(config),
        "expires": session.expires,
    }
    write_json_atomic(path, record)
    return session, _sign([session.id, str(int(session.expires))], config)


def check_session(session_id: str, config: TeamConfig, now: float | None = None) -> Session | None:
    """The live session of this id, or None (and its record removed) when it was signed out,
    expired, made under another key, or the email's role changed since."""
    if not session_id:
        return None
    path = _record_path(session_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        email, role, key = str(record["email"]), str(record["role"]), str(record["key"])
        expires = float(record["expires"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    live = (
        expires > (time.time() if now is None else now)
        and key == key_fingerprint(config)
        and config.role_for(email) == role
    )
    if not live:
        end_session(session_id)
        return None
    return Session(session_id, email, role, expires)


def cookie_session(token: str, config: TeamConfig, now: float | None = None) -> Session | None:
    """The live session a sign-in cookie names, or None."""
    fields = _unsign(token, config, now)
    if not fields or len(fields) != 2:
        return None
    return check_session(fields[0], config, now)


def end_session(session_id: str) -> None:
    """Sign a session out everywhere: its record goes, so every copy of its cookie is dead."""
    with contextlib.suppress(FileNotFoundError):
        _record_path(session_id).unlink()


def _sweep(folder: Path, now: float) -> None:
    """Remove the records of sessions that expired (nobody signed them out)."""
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if float(json.loads(path.read_text(encoding="utf-8"))["expires"]) < now:
                path.unlink()


def device_token(email: str, config: TeamConfig, now: float | None = None) -> str:
    """A device cookie for a browser that just signed in as `email`."""
    expires = int((time.time() if now is None else now) + DEVICE_TTL_S)
    return _sign(["device", email, secrets.token_urlsafe(12), str(expires)], config)


def device_id(token: str, email: str, config: TeamConfig, now: float | None = None) -> str:
    """The device a valid device cookie for `email` names ('' for none, another email's, or a
    forged or expired one)."""
    fields = _unsign(token, config, now) if token else None
    if not fields or len(fields) != 4 or fields[0] != "device" or fields[1] != email:
        return ""
    return fields[2]
