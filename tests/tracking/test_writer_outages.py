"""The writer through outages, on the tests' own instances (a redis-server child process with
append-only persistence, Postgres behind a TCP proxy the test cuts): Postgres gone mid-ingest,
the writer SIGKILLed mid-batch, Redis restarted cleanly. Afterwards every accepted event is
stored exactly once and the daily traffic equals the events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.tracking.stream import GROUP, stream_keys
from api.tracking.writer import Writer
from tests.tracking import writer_fixtures
from tests.tracking.writer_fixtures import (
    SHARDS,
    OwnRedis,
    TcpProxy,
    append,
    event_id,
    make_writer,
    postgres_upstream,
    rows,
    through_proxy,
    tracked,
)

# the fixtures these tests use, by name
tracking_database = writer_fixtures.tracking_database
db = writer_fixtures.db
own_redis = writer_fixtures.own_redis

ROOT = Path(__file__).resolve().parents[2]


def fill(redis_server: OwnRedis, n: int, **fields: object) -> set[str]:
    """Append n events (spread over the shards) as the intake accepts them; their ids."""
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    events = [tracked(campaign_id=i % 13 + 1, **fields) for i in range(n)]
    for e in events:
        append(pipe, e)  # type: ignore[arg-type]
    return {event_id(e, entry) for e, entry in zip(events, pipe.execute(), strict=True)}


def count(database_url: str) -> int:
    return int(rows(database_url, "SELECT count(*) FROM ad_events")[0][0])


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def assert_exactly_once(database_url: str, redis_server: OwnRedis, accepted: set[str]) -> None:
    stored = [r[0] for r in rows(database_url, "SELECT event_id FROM ad_events")]
    assert len(stored) == len(set(stored)) == len(accepted)
    assert set(stored) == accepted
    (traffic,) = rows(
        database_url,
        "SELECT coalesce(sum(events), 0), coalesce(sum(verified), 0) FROM publisher_traffic_daily",
    )
    (truth,) = rows(
        database_url, "SELECT count(*), count(*) FILTER (WHERE verified) FROM ad_events"
    )
    assert traffic == truth
    client = redis_server.client()
    for key in stream_keys(SHARDS):
        assert client.xpending(key, GROUP)["pending"] == 0


class Running:
    """A writer running in a thread of the test."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.thread = threading.Thread(target=writer.run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.writer.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def proxy(db: str) -> Iterator[TcpProxy]:
    p = TcpProxy(postgres_upstream(db))
    yield p
    p.close()


def test_postgres_gone_mid_ingest_events_wait_and_land_exactly_once(
    db: str, own_redis: OwnRedis, proxy: TcpProxy
) -> None:
    accepted = fill(own_redis, 1500)
    writer = make_writer(through_proxy(db, proxy), own_redis.url, batch=100)
    with Running(writer):
        wait_for(lambda: count(db) > 0, what="the first batches")
        for outage in range(3):  # cut at different moments of the work, mid-batch included
            time.sleep(0.05 * outage)
            proxy.cut()
            time.sleep(0.3)
            landed = count(db)
            accepted |= fill(own_redis, 200)  # the API keeps accepting
            time.sleep(1.0)
            assert count(db) == landed  # nothing lands while Postgres is away...
            assert sum(own_redis.client().xlen(k) for k in stream_keys(SHARDS)) > 0
            proxy.restore()  # ...and it resumes once it is back
            wait_for(lambda n=landed: count(db) > n, what="writing to resume")
        wait_for(lambda: count(db) >= len(accepted), what="every event")
        time.sleep(0.3)
    assert_exactly_once(db, own_redis, accepted)


def test_writer_sigkilled_mid_batch_its_batch_is_reread_without_duplicates(
    db: str, own_redis: OwnRedis
) -> None:
    accepted = fill(own_redis, 8_000)
    env = {**os.environ, "DATABASE_URL": db, "REDIS_URL": own_redis.url, "PYTHONPATH": str(ROOT)}
    client = own_redis.client()

    def pending_of(consumer: str) -> int:
        total = 0
        for key in stream_keys(SHARDS):
            for c in client.xinfo_consumers(key, GROUP):
                if c["name"] == consumer:
                    total += int(c["pending"])
        return total

    for _attempt in range(3):  # until a kill lands while a batch is held
        before = count(db)
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.tracking.writer", "--consumer", "doomed",
             "--batch", "200", "--block-ms", "100"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda b=before: count(db) > b + 800, what="the writer to write")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if pending_of("doomed") > 0:
            break
    held = pending_of("doomed")
    assert held > 0, "the writer was never killed while holding a batch"
    assert count(db) < len(accepted)

    # another writer takes the dead one's batch over once it has been idle long enough
    rescuer = make_writer(db, own_redis.url, consumer="rescuer", claim_idle_ms=500, batch=2000)
    time.sleep(0.6)
    rescuer.drain(idle_reads=2)
    assert pending_of("doomed") == 0
    assert_exactly_once(db, own_redis, accepted)


def test_a_restarted_writer_rereads_its_own_unacknowledged_batch(
    db: str, own_redis: OwnRedis
) -> None:
    accepted = fill(own_redis, 500)
    first = make_writer(db, own_redis.url, consumer="w1", batch=200)
    batch = first._read(None)  # delivered, then the process died before writing it
    first.write(batch[:50])  # or after writing part of it, before acknowledging the rest
    first.close()
    again = make_writer(db, own_redis.url, consumer="w1", batch=200, claim_idle_ms=3_600_000)
    again.drain()
    assert_exactly_once(db, own_redis, accepted)


def test_redis_restarted_cleanly_keeps_every_accepted_event(db: str, own_redis: OwnRedis) -> None:
    # accepted, then Redis stops cleanly before any writer ran
    accepted = fill(own_redis, 1000)
    own_redis.shutdown()
    own_redis.start()
    assert sum(own_redis.client().xlen(k) for k in stream_keys(SHARDS)) == 1000

    # and a restart while a writer is running, with entries delivered but not acknowledged
    accepted |= fill(own_redis, 2000)
    writer = make_writer(db, own_redis.url, batch=100)
    with Running(writer):
        wait_for(lambda: count(db) > 200, what="the first batches")
        own_redis.shutdown()
        time.sleep(0.5)
        own_redis.start()
        accepted |= fill(own_redis, 500)
        wait_for(lambda: count(db) >= len(accepted), what="every event")
        time.sleep(0.3)
    assert_exactly_once(db, own_redis, accepted)


def test_sigterm_stops_the_writer_promptly_without_acknowledging(
    own_redis: OwnRedis, tmp_path: Path
) -> None:
    """Even while Postgres is unreachable and the writer backs off, SIGTERM ends it within
    seconds, leaving its batch for the next writer."""
    fill(own_redis, 50)
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nothing",  # nobody listens
        "REDIS_URL": own_redis.url,
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "writer.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.tracking.writer", "--consumer", "w", "--block-ms", "100"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: "retrying" in log.read_text(), timeout=30, what="a failed write")
        time.sleep(1.5)  # well into its back-off
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert time.monotonic() - started < 3
    client = own_redis.client()
    assert sum(client.xpending(k, GROUP)["pending"] for k in stream_keys(SHARDS)) == 50
