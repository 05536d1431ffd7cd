"""The rollup job: folds `ad_events` and settled `x402_payments` into `analytics_hourly` and
`analytics_daily`.

    rollup(settings)                      # the scheduler's job, every minute
    roll_up(engine, now=...)              # the same on an engine (tests, bench)

Each run recomputes whole hours, from its watermark minus `LATENESS` (events land late when
the writer was down) up to the current minute: the current hour's row holds its events so far,
and the watermark moves to that minute; queries read the events after it straight from
`ad_events`, so a report is never behind the raw events and reads at most a minute or two of
them. Every hour it touches is deleted and inserted again in one transaction with the
watermark, so a re-run, or two runs racing, give the same tables. The days those hours fall
in are folded again from the hourly rows.

Events that land more than `LATENESS` after their hour are not seen until someone rolls the
hours up again: `roll_up(engine, since=...)` recomputes from any hour. (A payment is counted
in the hour it was made, once settled.)"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text

from api.analytics.models import COUNT_COLUMNS, MONEY_COLUMNS, REASONS, RUNNING_GRAINS
from api.core.db import make_engine
from api.core.settings import Settings

log = logging.getLogger("api.analytics")

LATENESS = timedelta(hours=2)
ANALYZE_AFTER = timedelta(days=1)
WATERMARK = "events"
LOCK_KEY = 0x616E616C79  # pg_advisory_xact_lock: one rollup at a time
METRICS = (*COUNT_COLUMNS, *MONEY_COLUMNS)
DIMENSIONS = ("chain_id", "campaign_id", "publisher", "slot_id")


def floor_minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _event_metrics() -> str:
    """Per-event values of every metric (an `ad_events` row), to be summed."""
    ivt = ",\n".join(
        f"(NOT verified AND reason = '{reason}')::int AS ivt_{reason}" for reason in REASONS
    )
    known = ", ".join(f"'{reason}'" for reason in REASONS)
    return f"""
        (kind = 'impression')::int AS impressions,
        (kind = 'impression' AND verified)::int AS verified_impressions,
        (kind = 'click')::int AS clicks,
        (kind = 'click' AND verified)::int AS verified_clicks,
        {ivt},
        (NOT verified AND (reason IS NULL OR reason <> ALL (ARRAY[{known}])))::int AS ivt_other,
        0 AS x402_payments,
        CASE WHEN verified THEN price ELSE 0 END AS spend,
        0 AS x402_revenue"""


def _payment_metrics() -> str:
    zeros = ", ".join(f"0 AS {column}" for column in COUNT_COLUMNS if column != "x402_payments")
    return f"{zeros}, 1 AS x402_payments, 0 AS spend, p.amount AS x402_revenue"


# every event and every settled x402 payment in [:lo, :hi), one row each with the same columns
# as a rollup row (`at` is its time); a payment is counted on its slot's publisher
RAW_ROWS = f"""
    SELECT occurred_at AS at, chain_id, COALESCE(campaign_id, 0) AS campaign_id,
           COALESCE(publisher, '') AS publisher, COALESCE(slot_id, '') AS slot_id,
           {_event_metrics()}
    FROM ad_events WHERE occurred_at >= :lo AND occurred_at < :hi
    UNION ALL
    SELECT p.created_at AS at, p.chain_id::int, 0::bigint AS campaign_id,
           COALESCE(o.wallet, p.pay_to) AS publisher, split_part(p.slot_key, ':', 1) AS slot_id,
           {_payment_metrics()}
    FROM x402_payments p
    LEFT JOIN ad_slots s ON s.slot_id = split_part(p.slot_key, ':', 1)
    LEFT JOIN publisher_profiles o ON o.id = s.publisher_id
    WHERE p.state = 'settled' AND p.created_at >= :lo AND p.created_at < :hi
"""

_SUMS = ", ".join(f"sum({column}) AS {column}" for column in METRICS)
_COLUMNS = ", ".join(("grain", "hour", *DIMENSIONS[1:], "chain_id", *METRICS))
_GRAIN = """CASE GROUPING(campaign_id, publisher, slot_id)
        WHEN 0 THEN 'cps' WHEN 3 THEN 'c' WHEN 5 THEN 'p' WHEN 4 THEN 's' ELSE 'n' END"""

ROLL_HOURS = f"""
    WITH fine AS (
        SELECT date_trunc('hour', at, 'UTC') AS hour, chain_id, campaign_id, publisher, slot_id,
               {_SUMS}
        FROM ({RAW_ROWS}) raw
        GROUP BY 1, 2, 3, 4, 5
    )
    INSERT INTO analytics_hourly ({_COLUMNS})
    SELECT {_GRAIN}, hour, COALESCE(campaign_id, 0), COALESCE(publisher, ''),
           COALESCE(slot_id, ''), chain_id, {_SUMS}
    FROM fine
    GROUP BY hour, chain_id, GROUPING SETS (
        (campaign_id, publisher, slot_id), (campaign_id), (publisher), (publisher, slot_id), ()
    )
"""

ROLL_DAYS = f"""
    INSERT INTO analytics_daily ({_COLUMNS.replace("hour", "day")})
    SELECT grain, (hour AT TIME ZONE 'UTC')::date, campaign_id, publisher, slot_id, chain_id,
           {_SUMS}
    FROM analytics_hourly
    WHERE hour >= :lo AND hour < :hi
    GROUP BY grain, 2, campaign_id, publisher, slot_id, chain_id
"""

_ENTITY = ("grain", "chain_id", "campaign_id", "publisher", "slot_id")
_ENTITIES = ", ".join(_ENTITY)
_E_ENTITIES = ", ".join(f"e.{column}" for column in _ENTITY)
_SAME = " AND ".join(f"{{t}}.{column} = e.{column}" for column in _ENTITY)
_RUNNING_GRAINS = ", ".join(f"'{grain}'" for grain in RUNNING_GRAINS)

# running totals within each day of [:lo, :hi) (midnights): every entity with an hourly row
# that day gets a row each hour from its first active one to 23:00
ROLL_HOURLY_RUNNING = f"""
    WITH entity_days AS (
        SELECT DISTINCT {_ENTITIES}, date_trunc('day', hour, 'UTC') AS day
        FROM analytics_hourly
        WHERE hour >= :lo AND hour < :hi AND grain IN ({_RUNNING_GRAINS})
    ), grid AS MATERIALIZED (  -- the hour a column of its own: the join is on plain keys
        SELECT {_ENTITIES}, day, day + make_interval(hours => h) AS hour
        FROM entity_days CROSS JOIN generate_series(0, 23) AS h
    )
    INSERT INTO analytics_hourly_running ({_ENTITIES}, hour, active_hours, {", ".join(METRICS)})
    SELECT * FROM (
        SELECT {_E_ENTITIES}, e.hour, count(x.hour) OVER w AS active_hours,
               {", ".join(f"COALESCE(sum(x.{m}) OVER w, 0) AS {m}" for m in METRICS)}
        FROM grid e
        LEFT JOIN analytics_hourly x ON {_SAME.format(t="x")} AND x.hour = e.hour
            AND x.hour >= :lo AND x.hour < :hi
        WINDOW w AS (PARTITION BY {_E_ENTITIES}, e.day ORDER BY e.hour)
    ) running
    WHERE active_hours > 0  -- from the entity's first active hour of the day on
"""

_CARRIED = ", ".join(f"COALESCE(b.{m}, 0) + COALESCE(sum(x.{m}) OVER w, 0) AS {m}" for m in METRICS)

# running totals for the days [:lo, :hi) (dates): every entity with a running row the day
# before (:before) or a daily row in the range gets a row each day, carrying its totals
# forward; a day adds its hourly running row of 23:00 (the day's total)
ROLL_DAILY_RUNNING = f"""
    WITH entities AS (
        SELECT {_ENTITIES} FROM analytics_daily_running WHERE day = :before
        UNION
        SELECT {_ENTITIES} FROM analytics_daily
        WHERE day >= :lo AND day < :hi AND grain IN ({_RUNNING_GRAINS})
    ), days AS (
        SELECT CAST(d AS date) AS day, (d + interval '23 hours') AT TIME ZONE 'UTC' AS last_hour
        FROM generate_series(
            CAST(:lo AS timestamp), CAST(:hi AS timestamp) - interval '1 day', interval '1 day'
        ) AS d
    )
    INSERT INTO analytics_daily_running ({_ENTITIES}, day, active_hours, {", ".join(METRICS)})
    SELECT * FROM (
        SELECT {_E_ENTITIES}, days.day,
               COALESCE(b.active_hours, 0) + COALESCE(sum(x.active_hours) OVER w, 0)
                   AS active_hours,
               {_CARRIED}
        FROM entities e CROSS JOIN days
        LEFT JOIN analytics_daily_running b ON {_SAME.format(t="b")} AND b.day = :before
        LEFT JOIN analytics_hourly_running x ON {_SAME.format(t="x")}
            AND x.hour = days.last_hour
            AND x.hour >= CAST(:lo AS timestamp) AT TIME ZONE 'UTC'
            AND x.hour < CAST(:hi AS timestamp) AT TIME ZONE 'UTC'
        WINDOW w AS (PARTITION BY {_E_ENTITIES} ORDER BY days.day)
    ) running
    WHERE active_hours > 0  -- from the entity's first active day on
"""


@dataclass(frozen=True)
class Rolled:
    """What one run recomputed: [since, until), whole hours from `since`."""

    since: datetime
    until: datetime


def rollup(settings: Settings) -> None:
    """The scheduler's job: roll up the hours closed since the last run."""
    engine = make_engine(settings.database_url)
    try:
        done = roll_up(engine)
        log.info("analytics rolled up %s to %s", done.since.isoformat(), done.until.isoformat())
    finally:
        engine.dispose()


def roll_up(
    engine: Engine,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
    lateness: timedelta = LATENESS,
) -> Rolled:
    """Recompute the hours from the watermark minus `lateness` (or from `since`) up to the
    minute of `now`, and move the watermark there."""
    until = floor_minute(now or datetime.now(UTC))
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        start = floor_hour(since) if since is not None else _start(conn, until, lateness)
        if start < until:
            _recompute(conn, start, until)
        if until - start > ANALYZE_AFTER:  # a first run or a backfill: fresh statistics
            conn.execute(
                text(
                    "ANALYZE analytics_hourly, analytics_daily, analytics_daily_running,"
                    " analytics_hourly_running"
                )
            )
        conn.execute(
            text(
                "INSERT INTO analytics_watermark (name, rolled_until, updated_at)"
                " VALUES (:name, :until, now()) ON CONFLICT (name) DO UPDATE"
                " SET rolled_until = GREATEST(analytics_watermark.rolled_until, :until),"
                " updated_at = now()"
            ),
            {"name": WATERMARK, "until": until},
        )
    return Rolled(since=min(start, until), until=until)


def _start(conn: Connection, until: datetime, lateness: timedelta) -> datetime:
    rolled = conn.execute(
        text("SELECT rolled_until FROM analytics_watermark WHERE name = :name"),
        {"name": WATERMARK},
    ).scalar()
    if rolled is not None:
        return floor_hour(min(rolled, until) - lateness)
    first = conn.execute(
        text(
            "SELECT least((SELECT min(occurred_at) FROM ad_events),"
            " (SELECT min(created_at) FROM x402_payments WHERE state = 'settled'))"
        )
    ).scalar()
    return floor_hour(first) if first is not None else until


def _recompute(conn: Connection, start: datetime, until: datetime) -> None:
    hours = {"lo": start, "hi": until}
    conn.execute(text("DELETE FROM analytics_hourly WHERE hour >= :lo AND hour < :hi"), hours)
    conn.execute(text(ROLL_HOURS), hours)
    first_day = start.replace(hour=0)
    last_day = floor_hour(until - timedelta(microseconds=1)).replace(hour=0) + timedelta(days=1)
    conn.execute(
        text("DELETE FROM analytics_daily WHERE day >= :lo AND day < :hi"),
        {"lo": first_day.date(), "hi": last_day.date()},
    )
    conn.execute(text(ROLL_DAYS), {"lo": first_day, "hi": last_day})
    # running totals: within the recomputed days, then per day from the first recomputed day
    # through the day of the watermark (a backfill of old hours changes every later day's)
    days = {"lo": first_day, "hi": last_day}
    # sets joined to sets: hash joins, whatever the statistics of tables filled in this
    # transaction say (a nested loop or a merge join on part of the key took minutes)
    conn.execute(text("SET LOCAL enable_nestloop = off"))
    conn.execute(text("SET LOCAL enable_mergejoin = off"))
    conn.execute(
        text("DELETE FROM analytics_hourly_running WHERE hour >= :lo AND hour < :hi"), days
    )
    conn.execute(text(ROLL_HOURLY_RUNNING), days)
    rolled = conn.execute(
        text("SELECT rolled_until FROM analytics_watermark WHERE name = :name"),
        {"name": WATERMARK},
    ).scalar()
    lo, hi = first_day.date(), last_day.date()
    if rolled is not None:
        hi = max(
            hi, (rolled - timedelta(microseconds=1)).astimezone(UTC).date() + timedelta(days=1)
        )
    conn.execute(text("DELETE FROM analytics_daily_running WHERE day >= :lo"), {"lo": lo})
    conn.execute(text(ROLL_DAILY_RUNNING), {"lo": lo, "hi": hi, "before": lo - timedelta(days=1)})
    conn.execute(text("SET LOCAL enable_nestloop = on"))
    conn.execute(text("SET LOCAL enable_mergejoin = on"))
