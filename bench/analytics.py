"""Analytics benchmark: p95 of each analytics endpoint's queries on the rollups beside the
same question asked of the raw events, in the same run, over `--events` events (10 million by
default) spread over `--days` days up to now.

    .venv/bin/python bench/analytics.py [--events 10000000] [--days 30] [--runs 40]

Uses `DATABASE_URL` when set, else an embedded PostgreSQL; the events are made inside
Postgres (`INSERT … SELECT generate_series`): each publisher has two slots, each slot shows
five of the campaigns, one event in 50 is a click and one in 20 is invalid (the ten reasons
in turn). Then the rollup job runs once (timed), and each report is asked `--runs` times of
the rollups (plus live raw events for the current hour, as the API reads it) and
`--raw-runs` times of the raw events alone. Prints p50/p95 and the ratio raw / rollups.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from api.analytics import service  # noqa: E402
from api.analytics.jobs import floor_hour, roll_up  # noqa: E402
from api.analytics.models import REASONS  # noqa: E402
from api.analytics.service import EPOCH, Scope  # noqa: E402
from api.core.db import make_engine  # noqa: E402
from migrations import upgrade  # noqa: E402
from tests.support import postgres  # noqa: E402

CHAIN = 1337
REASON_ARRAY = "ARRAY[" + ", ".join(f"'{r}'" for r in REASONS) + "]"

EVENTS = f"""
INSERT INTO ad_events (event_id, occurred_at, kind, verified, reason, chain_id, serve_id,
                       campaign_id, slot_id, publisher, token, bid_model, bid, price)
SELECT i || '-0', :start + (i * :step) * interval '1 microsecond',
       CASE WHEN i % 50 = 0 THEN 'click' ELSE 'impression' END,
       i % 20 <> 0,
       CASE WHEN i % 20 = 0 THEN ({REASON_ARRAY})[(i / 20) % 10 + 1] END,
       {CHAIN}, md5(i::text),
       ((pub * 2 + i % 2) * 7 + (i / 3) % 5) % :campaigns + 1,
       'p' || pub || '-' || i % 2,
       '0x' || lpad(to_hex(pub + 1), 40, '0'),
       '0xusdc', 'cpm', 3000,
       CASE WHEN i % 20 = 0 THEN 0 WHEN i % 50 = 0 THEN 50000 ELSE 3 END
FROM (SELECT i, (i * 7919) % :publishers AS pub
      FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS i) AS s
"""

PAYMENTS = """
INSERT INTO x402_payments (id, chain_id, payer, nonce, payload_hash, slot_key, pay_to, asset,
    amount, authorization_expires_at, state, created_at, updated_at)
SELECT gen_random_uuid(), 1337, '0xpayer', i::text, 'h', 'p' || i % :publishers || '-0:agent',
       '0x' || lpad(to_hex(i % :publishers + 1), 40, '0'), '0xusdc', 10000,
       :start + i * :step * interval '1 microsecond', 'settled',
       :start + i * :step * interval '1 microsecond', :start + i * :step * interval '1 microsecond'
FROM generate_series(0::bigint, CAST(:n AS bigint) - 1) AS i
"""


def seed(engine: Engine, events: int, days: int, publishers: int, campaigns: int) -> datetime:
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    step = int((now - start) / timedelta(microseconds=1) / events)
    with engine.begin() as conn:
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= now + timedelta(days=1):
            nxt = day + timedelta(days=1)
            conn.execute(
                text(
                    f"CREATE TABLE ad_events_p{day:%Y%m%d} PARTITION OF ad_events"
                    f" FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')"
                )
            )
            day = nxt
    chunk = 1_000_000
    for lo in range(0, events, chunk):
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(EVENTS),
                {
                    "start": start,
                    "step": step,
                    "lo": lo,
                    "hi": min(lo + chunk, events),
                    "campaigns": campaigns,
                    "publishers": publishers,
                },
            )
        print(f"  events {min(lo + chunk, events):>12,} ({time.perf_counter() - started:.1f} s)")
    payments = max(events // 1000, 1)
    with engine.begin() as conn:
        conn.execute(
            text(PAYMENTS),
            {
                "start": start,
                "step": int((now - start) / timedelta(microseconds=1) / payments),
                "n": payments,
                "publishers": publishers,
            },
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE ad_events")
        )
    return now


def timed(runs: int, ask: Callable[[], Any]) -> list[float]:
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        ask()
        found.append((time.perf_counter() - started) * 1000)
    return found


def p95(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--publishers", type=int, default=500)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=40, help="asks of the rollups per report")
    parser.add_argument("--raw-runs", type=int, default=3, help="asks of the raw events")
    args = parser.parse_args()
    rng = random.Random(7)

    with (
        postgres.database_url() as server,
        postgres.fresh_database(server, prefix="buzzer_bench") as database_url,
    ):
        upgrade(database_url)
        engine = make_engine(database_url)
        print(f"seeding {args.events:,} events over {args.days} days …")
        started = time.perf_counter()
        now = seed(engine, args.events, args.days, args.publishers, args.campaigns)
        print(f"seeded in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        roll_up(engine, now=now)
        rolled = time.perf_counter() - started
        with engine.connect() as conn:
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in (
                    "analytics_hourly",
                    "analytics_daily",
                    "analytics_hourly_running",
                    "analytics_daily_running",
                )
            }
        print(
            f"rollup of every hour: {rolled:.1f} s ({args.events / rolled:,.0f} events/s);"
            f" {counts['analytics_hourly']:,} hourly rows, {counts['analytics_daily']:,} daily;"
            f" running totals: {counts['analytics_hourly_running']:,} hourly,"
            f" {counts['analytics_daily_running']:,} daily"
        )
        started = time.perf_counter()
        roll_up(engine, now=now)
        again = time.perf_counter() - started
        print(f"the rollup's run every minute (the last 2 hours again): {again:.2f} s")

        month = service.span_of((now - timedelta(days=args.days - 1)).date(), now.date())
        week_hours = service.Span(
            floor_hour(now) - timedelta(days=7), floor_hour(now) + timedelta(hours=1)
        )

        def publisher() -> Scope:
            return Scope(publisher="0x" + format(rng.randrange(args.publishers) + 1, "040x"))

        def campaign() -> Scope:
            return Scope(campaign_id=rng.randrange(args.campaigns) + 1)

        questions: list[tuple[str, Callable[[Session, datetime | None], Any]]] = [
            (
                "publisher, 30 days by day",
                lambda s, r: service.report(
                    s, CHAIN, publisher(), month, "day", ("campaigns", "slots"), r
                ),
            ),
            (
                "publisher, 7 days by hour",
                lambda s, r: service.report(
                    s, CHAIN, publisher(), week_hours, "hour", ("campaigns", "slots"), r
                ),
            ),
            (
                "campaign, 30 days by day",
                lambda s, r: service.report(
                    s, CHAIN, campaign(), month, "day", ("publishers", "slots"), r
                ),
            ),
            (
                "network, 30 days by day",
                lambda s, r: service.report(
                    s, CHAIN, Scope(), month, "day", ("campaigns", "publishers", "slots"), r
                ),
            ),
            (
                "network, 7 days by hour",
                lambda s, r: service.report(
                    s, CHAIN, Scope(), week_hours, "hour", ("campaigns", "publishers", "slots"), r
                ),
            ),
            (
                "publisher IVT, 30 days",
                lambda s, r: service.ivt_report(
                    s, CHAIN, publisher(), month, ("publisher", "slot_id"), r
                ),
            ),
            (
                "campaign IVT, 30 days",
                lambda s, r: service.ivt_report(s, CHAIN, campaign(), month, ("publisher",), r),
            ),
            (
                "network IVT, 30 days",
                lambda s, r: service.ivt_report(s, CHAIN, Scope(), month, ("publisher",), r),
            ),
        ]
        print(
            f"\n{'report':<28}{'rollup p50':>12}{'rollup p95':>12}{'raw p95':>12}{'raw/rollup':>12}"
        )
        ok = True
        with Session(engine) as session:
            for name, ask in questions:
                fast = timed(args.runs, lambda ask=ask: ask(session, None))  # type: ignore[misc]
                slow = timed(args.raw_runs, lambda ask=ask: ask(session, EPOCH))  # type: ignore[misc]
                ratio = p95(slow) / p95(fast)
                ok = ok and ratio >= 100 and p95(fast) <= 50
                print(
                    f"{name:<28}{statistics.median(fast):>10.1f}ms{p95(fast):>10.1f}ms"
                    f"{p95(slow):>10.0f}ms{ratio:>11.0f}×"
                )
        print(f"\ngoal (≥ 100× raw and p95 ≤ 50 ms on every report): {'met' if ok else 'NOT met'}")
        engine.dispose()


if __name__ == "__main__":
    main()
