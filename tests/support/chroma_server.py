"""Start and stop a real Chroma server (`chroma run` from the venv) on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHROMA_BIN = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_chroma(path: Path, port: int, log: Path, timeout_s: float = 60.0) -> subprocess.Popen:
    """`chroma run --path <path>` on 127.0.0.1:<port>; returns once its heartbeat answers."""
    handle = log.open("ab")
    proc = subprocess.Popen(
        [str(CHROMA_BIN), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()  # the child holds its own copy
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_chroma(proc)
            raise RuntimeError(f"chroma run did not answer its heartbeat within {timeout_s:.0f} s")
        time.sleep(0.2)


def stop_chroma(proc: subprocess.Popen, kill: bool = False) -> None:
    """Stop the server (SIGKILL when `kill`, as a crash would) and reap it."""
    if proc.poll() is None:
        proc.kill() if kill else proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
