"""A JSON-RPC proxy that misbehaves like a public RPC provider, for indexer resilience tests.

    with FlakyRpc(anvil.url, seed=1, drop=0.05, delay=0.05, error=0.1, http502=0.05) as proxy:
        run_indexer(rpc_url=proxy.url)
        assert proxy.counts["error"] > 0

Each HTTP request draws once from a seeded RNG and then, by the configured rates:

- `drop`: the connection is closed without a response;
- `http502`: an HTTP 502 Bad Gateway with an HTML body;
- `error`: a JSON-RPC error: for `eth_getLogs` code -32005 "query returned more than 10000
  results", otherwise -32000 "header not found" (one per call of a batch);
- `delay`: forwarded after sleeping `delay_range` seconds (0.5-2 s by default);
- `empty_logs`: forwarded, but the answer to an `eth_getLogs` over a block range is replaced
  by `[]` (a lagging provider); a query by `blockHash` is answered truthfully, as by a node
  that knows the block; requests of other methods are just forwarded;
- otherwise forwarded untouched.

`counts` says what was done per kind (plus `requests` and `forwarded`); `by_method` counts
requests per JSON-RPC method. Rates can be changed while running (`configure`), and
`healthy()` switches faults off for a block. `methods` limits faults to those methods.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

FAULTS = ("drop", "http502", "error", "delay", "empty_logs")
LOGS_TOO_MANY = {"code": -32005, "message": "query returned more than 10000 results"}
HEADER_NOT_FOUND = {"code": -32000, "message": "header not found"}


class FlakyRpc:
    """A threaded HTTP proxy in front of `upstream` that injects faults (see module docs)."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        drop: float = 0.0,
        http502: float = 0.0,
        error: float = 0.0,
        delay: float = 0.0,
        empty_logs: float = 0.0,
        delay_range: tuple[float, float] = (0.5, 2.0),
        methods: Iterable[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.upstream = upstream
        self.delay_range = delay_range
        self.methods = frozenset(methods) if methods is not None else None
        self.timeout = timeout
        self.rates: dict[str, float] = {}
        self.configure(drop=drop, http502=http502, error=error, delay=delay, empty_logs=empty_logs)
        self.counts: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------

    def configure(self, **rates: float) -> None:
        """Change some fault rates (each 0..1; together at most 1)."""
        unknown = set(rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULTS}")
        merged = {**self.rates, **rates}
        if any(r < 0 for r in merged.values()) or sum(merged.values()) > 1 + 1e-9:
            raise ValueError(f"rates must be >= 0 and sum to at most 1: {merged}")
        self.rates = {kind: float(merged.get(kind, 0.0)) for kind in FAULTS}

    @contextmanager
    def healthy(self) -> Iterator[None]:
        """No faults inside the block (e.g. while the test reads the truth)."""
        saved = dict(self.rates)
        self.configure(**dict.fromkeys(FAULTS, 0.0))
        try:
            yield
        finally:
            self.rates = saved

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FlakyRpc:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FlakyRpc:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the proxy --------------------------------------------------------------------------

    def _count(self, *kinds: str) -> None:
        with self._lock:
            self.counts.update(kinds)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        methods = [c.get("method", "?") for c in calls if isinstance(c, dict)]
        with self._lock:
            self.by_method.update(methods)
            self.counts["requests"] += 1
            draw = self._rng.random()
            delay = self._rng.uniform(*self.delay_range)
        fault = self._fault_for(draw, methods)
        if fault == "drop":
            self._count("drop")
            handler.close_connection = True
            with suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "http502":
            self._count("http502")
            self._reply(
                handler, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"
            )
            return
        if fault == "error":
            self._count("error")
            errors = [
                {
                    "jsonrpc": "2.0",
                    "id": c.get("id") if isinstance(c, dict) else None,
                    "error": LOGS_TOO_MANY
                    if isinstance(c, dict) and c.get("method") == "eth_getLogs"
                    else HEADER_NOT_FOUND,
                }
                for c in calls
            ]
            reply: Any = errors if isinstance(payload, list) else errors[0]
            self._reply(handler, 200, json.dumps(reply).encode())
            return
        if fault == "delay":
            self._count("delay")
            time.sleep(delay)
        try:
            status, data = self._forward(body)
        except (OSError, urllib.error.URLError) as exc:
            self._count("upstream_error")
            self._reply(handler, 502, f"upstream failed: {exc}".encode(), "text/plain")
            return
        if fault == "empty_logs":
            data, emptied = self._empty_logs(calls, payload, data)
            if emptied:
                self._count("empty_logs")
        self._count("forwarded")
        self._reply(handler, status, data)

    def _fault_for(self, draw: float, methods: list[str]) -> str | None:
        if self.methods is not None and not self.methods.intersection(methods):
            return None
        edge = 0.0
        for kind in FAULTS:
            edge += self.rates[kind]
            if draw < edge:
                if kind == "empty_logs" and "eth_getLogs" not in methods:
                    return None
                return kind
        return None

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    @staticmethod
    def _empty_logs(calls: list[Any], payload: Any, data: bytes) -> tuple[bytes, bool]:
        try:
            reply = json.loads(data)
        except json.JSONDecodeError:
            return data, False
        replies = reply if isinstance(reply, list) else [reply]
        log_ids = {
            c.get("id")
            for c in calls
            if isinstance(c, dict)
            and c.get("method") == "eth_getLogs"
            and "blockHash" not in (c.get("params") or [{}])[0]
        }
        emptied = False
        for item in replies:
            if isinstance(item, dict) and item.get("id") in log_ids and item.get("result"):
                item["result"] = []
                emptied = True
        return json.dumps(reply if isinstance(payload, list) else replies[0]).encode(), emptied

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str = "application/json",
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client went away
