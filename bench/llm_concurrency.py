"""LLM stage speed-up from concurrency, against a fixed-latency OpenAI-compatible loopback server.

    .venv/bin/python -m bench.llm_concurrency                        # 32 requests, 100 ms, 1/4/8
    .venv/bin/python -m bench.llm_concurrency --requests 128 --latency-ms 250 --levels 1,4,8,16,32

Every request goes through the real client (core.llm: OpenAICompatibleBackend over httpx, LLM.map
with its thread pool, no cache, no retries) to a local server that sleeps a fixed time before each
answer, like a remote model whose latency dominates. The ideal speed-up at concurrency c is
min(c, requests); what is lost on the way is client and server overhead on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FixedLatencyServer:
    """`with FixedLatencyServer(0.1) as server:` an OpenAI-compatible chat endpoint on loopback
    that answers every request after 0.1 s and records the most requests it held at once."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.requests = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bench = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                bench._enter()
                time.sleep(bench.latency_s)
                bench._leave()
                body = json.dumps(
                    {
                        "id": "bench",
                        "object": "chat.completion",
                        "model": "bench-model",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "ok"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FixedLatencyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def measure(
    levels: tuple[int, ...] = (1, 4, 8), n_requests: int = 32, latency_s: float = 0.1
) -> list[dict[str, Any]]:
    """Wall time of `n_requests` distinct requests through LLM.map at each concurrency level."""
    from core.llm.backends import OpenAICompatibleBackend
    from core.llm.client import LLM

    rows: list[dict[str, Any]] = []
    with FixedLatencyServer(latency_s) as server:
        for level in levels:
            llm = LLM(
                OpenAICompatibleBackend(server.base_url, "bench-model", timeout_s=30),
                use_cache=False,
                max_retries=0,
                max_concurrency=level,
            )
            llm.complete([{"role": "user", "content": "warm-up"}])  # client set-up, not timed
            server.max_in_flight = 0
            start = time.perf_counter()
            results = llm.map(
                lambda i, llm=llm: llm.complete([{"role": "user", "content": f"request {i}"}]),
                range(n_requests),
                stage="bench",
            )
            seconds = time.perf_counter() - start
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise RuntimeError(f"{len(failed)} requests failed, first: {failed[0]}")
            rows.append(
                {
                    "concurrency": level,
                    "requests": n_requests,
                    "latency ms": round(latency_s * 1000),
                    "seconds": seconds,
                    "req/s": n_requests / seconds,
                    "max in flight": server.max_in_flight,
                }
            )
    base = next((r["seconds"] for r in rows if r["concurrency"] == 1), rows[0]["seconds"])
    for row in rows:
        row["speed-up"] = base / row["seconds"]
        row["ideal"] = float(min(row["concurrency"], n_requests))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--levels", default="1,4,8", help="comma-separated concurrency levels")
    args = parser.parse_args()
    levels = tuple(int(x) for x in args.levels.split(","))
    rows = measure(levels, args.requests, args.latency_ms / 1000)
    print(
        f"{args.requests} requests, {args.latency_ms:.0f} ms server latency, real client (core.llm)"
    )
    print(
        f"{'concurrency':>11} {'seconds':>8} {'req/s':>7} {'speed-up':>9} {'ideal':>6} {'in flight':>9}"
    )
    for r in rows:
        print(
            f"{r['concurrency']:>11} {r['seconds']:>8.2f} {r['req/s']:>7.1f} "
            f"{r['speed-up']:>8.2f}x {r['ideal']:>5.0f}x {r['max in flight']:>9}"
        )


if __name__ == "__main__":
    main()
