"""A client that speaks Streamlit's websocket protocol, as a script (not a browser) would: it
opens `/_stcore/stream` with any headers and cookies, reruns the app with chosen widget values,
reads back what the page drew, and PUTs files to the upload endpoint. What a browser cannot
do (forge X-Forwarded-For, replay a copied cookie, upload without the page) it can."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(
    data: Path, env: dict[str, str] | None = None, script: str = "serve.py"
) -> Iterator[str]:
    """`streamlit run SCRIPT` on a free loopback port with `data` as its data directory and
    `env` added; yields its http URL (the one launcher of real servers for the tests)."""
    port = free_port()
    full_env = {**os.environ, "RAGBENCH_DATA_DIR": str(data), **(env or {})}
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / script)]
        + ["--server.port", str(port), "--server.address", "127.0.0.1"]
        + ["--server.headless", "true"],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    break
        except OSError:
            time.sleep(0.3)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        log.close()
        raise RuntimeError(f"{script} did not start: {(data / 'streamlit.log').read_text()}")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@dataclass
class Page:
    """What one script run drew: widgets by label (their ids), texts, and raw html."""

    widgets: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (kind, id)
    texts: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    downloads: dict[str, str] = field(default_factory=dict)  # label -> deferred file id
    disabled: set[str] = field(default_factory=set)  # labels of disabled widgets

    def has(self, pattern: str) -> bool:
        return any(re.search(pattern, t) for t in self.texts)

    def cookie(self, name: str) -> str | None:
        """The value a `document.cookie = 'NAME=VALUE; …'` script on the page sets."""
        for html in self.html:
            found = re.search(rf"{name}=([^;']*)", html)
            if found:
                return found.group(1)
        return None


class StreamlitClient:
    """One websocket session of the app."""

    def __init__(
        self,
        url: str,
        *,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        from websockets.sync.client import connect

        self.url = url
        self.cookies = dict(cookies or {})
        self.cookies.update(self._xsrf_cookie())
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        self.ws = connect(
            url.replace("http://", "ws://") + "/_stcore/stream",
            additional_headers=sent,
            subprotocols=["streamlit", self.cookies["_streamlit_xsrf"]],  # type: ignore[list-item]
            origin=url,  # type: ignore[arg-type]
            max_size=None,
            open_timeout=30,
        )
        self.session_id = ""
        self.page_hash = ""
        self.pages: dict[str, str] = {}  # url path -> page script hash

    def _xsrf_cookie(self) -> dict[str, str]:
        with urllib.request.urlopen(self.url + "/_stcore/health", timeout=10) as r:
            found = re.search(r"_streamlit_xsrf=([^;]+)", r.headers.get("Set-Cookie", ""))
        return {"_streamlit_xsrf": found.group(1)} if found else {}

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> StreamlitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, values: dict[str, Any] | None = None, timeout_s: float = 60) -> Page:
        """Rerun the script with `values` (widget id -> value; True for a pressed button) and
        collect what it drew until the run finishes."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        back = BackMsg()
        state = back.rerun_script
        state.page_script_hash = self.page_hash
        for widget_id, value in (values or {}).items():
            ws = state.widget_states.widgets.add()
            ws.id = widget_id
            if value is True:
                ws.trigger_value = True
            elif isinstance(value, str):
                ws.string_value = value
            elif isinstance(value, bool):
                ws.bool_value = value
            elif isinstance(value, int | float):
                ws.double_value = float(value)
        self.ws.send(back.SerializeToString())
        page = Page()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id
                self.page_hash = msg.new_session.page_script_hash
            elif kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
                self.page_hash = msg.navigation.page_script_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                _collect(msg.delta.new_element, page)
            elif kind == "script_finished" and msg.script_finished != 2:  # 2: early, for a rerun
                return page
        raise TimeoutError("the script run did not finish")

    def go(self, url_path: str) -> Page:
        """Switch to the page at `url_path` ('documents', 'questions' …) and run it."""
        self.page_hash = self.pages[url_path]
        return self.run()

    def download(self, file_id: str, timeout_s: float = 60) -> bytes:
        """Fetch a download button's deferred data, as a click does: the server runs the
        button's callable and answers with a media URL."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        back = BackMsg()
        back.backend_operation_request.request_id = "dl-" + file_id
        back.backend_operation_request.session_id = self.session_id
        back.backend_operation_request.deferred_file.file_id = file_id
        self.ws.send(back.SerializeToString())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = ForwardMsg()
            msg.ParseFromString(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.WhichOneof("type") == "backend_operation_response":
                reply = msg.backend_operation_response
                assert not reply.error_msg, reply.error_msg
                with urllib.request.urlopen(self.url + reply.deferred_file.url, timeout=30) as r:
                    return r.read()
        raise TimeoutError("no answer to the download")

    def upload(self, data: bytes, name: str = "a.txt") -> int:
        """PUT a file for this session, as the file uploader does; the HTTP status."""
        import uuid

        import httpx

        url = f"{self.url}/_stcore/upload_file/{self.session_id}/{uuid.uuid4()}"
        response = httpx.put(
            url,
            files={"file": (name, data, "text/plain")},
            headers={"X-Xsrftoken": self.cookies["_streamlit_xsrf"]},
            cookies=self.cookies,
            timeout=60,
        )
        return response.status_code


def _collect(element: Any, page: Page) -> None:
    kind = element.WhichOneof("type")
    inner = getattr(element, kind)
    label = getattr(inner, "label", None)
    widget_id = getattr(inner, "id", None)
    if label is not None and widget_id:
        page.widgets[label] = (kind, widget_id)
        if getattr(inner, "disabled", False):
            page.disabled.add(label)
    if kind == "download_button" and inner.deferred_file_id:
        page.downloads[inner.label] = inner.deferred_file_id
    for attr in ("body", "text"):
        text = getattr(inner, attr, None)
        if isinstance(text, str) and text:
            page.texts.append(text)
    if kind == "iframe":
        page.html.append(inner.srcdoc)
    elif kind == "html":
        page.html.append(inner.body)


def sign_in(url: str, email: str, password: str, **kwargs: Any) -> tuple[StreamlitClient, Page]:
    """A new session that submits the sign-in form; the client (still open) and the page."""
    client = StreamlitClient(url, **kwargs)
    form = client.run()
    values = {
        form.widgets["Email"][1]: email,
        form.widgets["Team password"][1]: password,
        form.widgets["Sign in"][1]: True,
    }
    return client, client.run(values)  # a successful sign-in reruns within this run
