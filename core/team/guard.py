"""The server's guard: an ASGI middleware in front of Streamlit (serve.py installs it) that
closes what the app's scripts cannot reach.

- **Uploads**: Streamlit takes `PUT /_stcore/upload_file/<session>/<file>` from any session
  that has a websocket open, before any script of the app has run, and keeps the files in
  memory. The guard lets a session upload only once the app said it may (`allow_uploads`: the
  sign-in gate says so for signed-in sessions, and for every session when sign-in is off), and
  at most `session_upload_bytes` in all (the Content-Length of each file it holds; a file
  removed by the uploader is taken off). An upload with no Content-Length is refused (411):
  browsers always send one, and the limit must be known before the body is read.
- **Metrics**: `/_stcore/metrics` (session counts and memory) is not served.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UPLOAD = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)$")
_CLOSED = re.compile(r"/_stcore/metrics/?$")
ALLOWED_FOR_S = 12 * 3600  # an allowance outlives no sign-in; the gate renews it every run

_lock = threading.Lock()
_allowed: dict[str, tuple[float, int]] = {}  # session id -> (until, most bytes; 0: no limit)
_held: dict[str, dict[str, int]] = {}  # session id -> file id -> bytes
_installed: list[bool] = []


def allow_uploads(session_id: str, max_bytes: int) -> None:
    """Let this Streamlit session upload, at most `max_bytes` in all (0: no limit)."""
    with _lock:
        _allowed[session_id] = (time.monotonic() + ALLOWED_FOR_S, max_bytes)
        if len(_allowed) > 10_000:  # forget lapsed allowances of sessions long gone
            now = time.monotonic()
            for sid in [s for s, (until, _) in _allowed.items() if until < now]:
                _allowed.pop(sid, None)
                _held.pop(sid, None)


def forbid_uploads(session_id: str) -> None:
    """This session may no longer upload (signed out, or never signed in)."""
    with _lock:
        _allowed.pop(session_id, None)
        _held.pop(session_id, None)


def installed() -> bool:
    """Whether this server process runs behind the guard (started through serve.py)."""
    return bool(_installed)


def _verdict(session_id: str, file_id: str, size: int | None) -> tuple[int, str]:
    """(0, '') to let an upload through, else the HTTP status and why."""
    with _lock:
        until, most = _allowed.get(session_id, (0.0, 0))
        if until < time.monotonic():
            return 403, "Sign in before uploading."
        if size is None:
            return 411, "An upload must say its size (Content-Length)."
        held = sum(b for f, b in _held.get(session_id, {}).items() if f != file_id)
        if most and held + size > most:
            return 413, f"This session already holds {held} bytes of uploads; the limit is {most}."
        _held.setdefault(session_id, {})[file_id] = size
    return 0, ""


def _dropped(session_id: str, file_id: str) -> None:
    with _lock:
        _held.get(session_id, {}).pop(file_id, None)


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UploadGuard:
    """ASGI middleware: uploads only from sessions the app allowed, within their limit; no
    metrics endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        _installed[:] = [True]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if _CLOSED.search(path):
            await _refuse(send, 404, "Not found.")
            return
        upload = _UPLOAD.search(path)
        method = scope.get("method", "")
        if upload and method == "PUT":
            session_id, file_id = upload.groups()
            length = dict(scope.get("headers") or []).get(b"content-length")
            size = int(length) if length and length.isdigit() else None
            status, why = _verdict(session_id, file_id, size)
            if status:
                await _refuse(send, status, why)
                return
            await self.app(scope, receive, _forget_on_failure(send, session_id, file_id))
            return
        if upload and method == "DELETE":
            _dropped(*upload.groups())
        await self.app(scope, receive, send)


def _forget_on_failure(send: Send, session_id: str, file_id: str) -> Send:
    """A `send` that takes a file off the session's count when Streamlit did not keep it."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 300:
            _dropped(session_id, file_id)
        await send(message)

    return wrapped
