"""Analytics queries: a date range cut into what the rollups hold and what is still live.

    report(session, chain_id, Scope(publisher="0xab…"), span, group="day")

Hours before the rollup's watermark are read from `analytics_daily` (whole days) and
`analytics_hourly` (the ragged edges); hours from the watermark on are summed straight from
`ad_events` and `x402_payments`, so a report is never behind the raw events. One SQL statement
per report (its series, its top performers and the watermark it was planned for), prepared
once per connection and run outside a transaction: one statement sees one snapshot, so the
watermark and the rollups it reads agree (`settled`).

Earnings are the publishers' share of spend, estimated until settled: `spend * 8500 // 10000`
per row shown (the floor; settlement allocates each epoch's charge by largest remainder, so
the settled figure can differ by less than one atomic unit per publisher and epoch, and is
lower when a campaign's charge was capped by its balance or max per epoch)."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

import psycopg.errors
from psycopg import sql as pg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from api.analytics.jobs import METRICS, RAW_ROWS, WATERMARK, floor_hour
from api.analytics.models import REASONS, RUNNING_GRAINS

PUBLISHER_SHARE_BPS = 8_500  # the escrow's fee is 1,500 bps (scripts/_deploy.py FEE_BPS)
BPS = 10_000
TOP = 10
MAX_RANGE = timedelta(days=366)

Group = Literal["hour", "day"]
Dimension = Literal["campaign_id", "publisher", "slot_id"]


def earnings(spend: int) -> int:
    """The publishers' share of `spend`, rounded down (estimated until settled)."""
    return spend * PUBLISHER_SHARE_BPS // BPS


@dataclass(frozen=True)
class Span:
    """Whole hours [start, end), UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Scope:
    """Whose data: one campaign, one publisher, or (neither) the network."""

    campaign_id: int | None = None
    publisher: str | None = None

    def filters(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.campaign_id is not None:
            found["campaign_id"] = self.campaign_id
        if self.publisher is not None:
            found["publisher"] = self.publisher.lower()
        return found


def grain(dimensions: set[str]) -> str:
    """The coarsest rollup grain that still has every dimension in `dimensions`."""
    if "campaign_id" in dimensions and dimensions & {"publisher", "slot_id"}:
        return "cps"
    if "campaign_id" in dimensions:
        return "c"
    if "slot_id" in dimensions:
        return "s"
    if "publisher" in dimensions:
        return "p"
    return "n"


# the dimensions a grain's rows do not have, at their fixed value (so the primary key's
# prefix finds them)
UNUSED: dict[str, tuple[tuple[str, str], ...]] = {
    "cps": (),
    "c": (("publisher", "''"), ("slot_id", "''")),
    "p": (("campaign_id", "0"), ("slot_id", "''")),
    "s": (("campaign_id", "0"),),
    "n": (("campaign_id", "0"), ("publisher", "''"), ("slot_id", "''")),
}


def _ceil_day(at: datetime) -> datetime:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == at else day + timedelta(days=1)


def _ceil_hour(at: datetime) -> datetime:
    hour = floor_hour(at)
    return hour if hour == at else hour + timedelta(hours=1)


@dataclass
class Plan:
    """Where each part of a span is read from."""

    hourly: list[tuple[datetime, datetime]] = field(default_factory=list)
    daily: tuple[date, date] | None = None
    raw: tuple[datetime, datetime] | None = None


def plan(span: Span, watermark: datetime, use_days: bool) -> Plan:
    """[start, min(end, watermark)) from the rollups (whole days from the daily table when
    `use_days`; the rows of the watermark's own hour and day hold exactly their events
    before the watermark), the rest from the raw events."""
    found = Plan()
    rolled_end = min(span.end, watermark)
    if span.start < rolled_end:
        hours_end = _ceil_hour(rolled_end)  # the watermark's hour: its events before it
        first = _ceil_day(span.start)
        last = _ceil_day(rolled_end) if rolled_end == watermark else rolled_end.replace(hour=0)
        if use_days and first < last:
            found.daily = (first.date(), last.date())
            found.hourly.append((span.start, first))
            if last < rolled_end:
                found.hourly.append((last, hours_end))
        else:
            found.hourly.append((span.start, hours_end))
    live_start = max(span.start, watermark)
    if live_start < span.end:
        found.raw = (live_start, span.end)
    found.hourly = [(lo, hi) for lo, hi in found.hourly if lo < hi]
    return found


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def watermark(session: Session) -> datetime:
    """Where the rollups end, as the session's transaction sees it."""
    rolled = session.execute(
        text("SELECT rolled_until FROM analytics_watermark WHERE name = :name"),
        {"name": WATERMARK},
    ).scalar()
    return rolled if rolled is not None else EPOCH


# the watermark the last report of this process found, and when (monotonic seconds): the next
# report's guess while it is at most GUESS_SECONDS old (it moves once a run of the rollup job,
# every minute); an older one, or none, is read first (a report planned for a watermark far
# behind reads everything since from the raw events: a month of them for the first report)
_last_seen: list[tuple[datetime, float]] = [(EPOCH, -math.inf)]
GUESS_SECONDS = 30.0
GUESSES = 3  # reports asked with a guessed watermark before reading it in a transaction first


def settled(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    asks: list[Ask],
    rolled_until: datetime | None = None,
) -> tuple[datetime, list[list[dict[str, Any]]]]:
    """The watermark and the rows of each of `asks` read with it (with `rolled_until` when
    given, as the benchmark asks the raw events alone).

    The statement is planned for the watermark the last report found (read first when that
    is older than GUESS_SECONDS) and reads the current one in its own snapshot: when the
    rollup job moved it since, it is asked again with the new one. Two round trips (the
    pool's ping, the statement; one for a report after a report on the same session) where
    a transaction that read the watermark first took five (the ping, BEGIN, the watermark,
    the statement, ROLLBACK): one publisher's week by hour at 10,000,000 events, asked in
    turn with each in one process, p50 5.0 ms to 4.8 ms."""
    if rolled_until is not None:
        _outside_transaction(session)
        return rolled_until, answer(
            session, chain_id, scope, span, asks, rolled_until=rolled_until
        )[1]
    for _ in range(GUESSES):
        _outside_transaction(session)
        guess, seen = _last_seen[0]
        if time.monotonic() - seen > GUESS_SECONDS:
            guess = watermark(session)
        found, rows = answer(session, chain_id, scope, span, asks, rolled_until=guess, check=True)
        _last_seen[0] = (found or EPOCH, time.monotonic())
        if found == guess:
            return guess, rows
    # the job moved it each time: read it first, then the rows, in one snapshot
    session.rollback()
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    rolled = watermark(session)
    return rolled, answer(session, chain_id, scope, span, asks, rolled_until=rolled)[1]


def _outside_transaction(session: Session) -> None:
    """The session reading outside a transaction: what it read before ended, on a connection
    in autocommit (the one it holds when already so: a report after a report)."""
    if session.in_transaction() and _driver(session).autocommit:
        return
    session.rollback()  # (ends what the request read before, and returns its connection)
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _driver(session: Session) -> Any:
    """The session's psycopg connection."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver


@dataclass(frozen=True)
class Ask:
    """One question of a report: the sums per bucket of `group` and per value of `by`, in
    `order` (SQL over the sums; then by the keys), the first `limit` rows."""

    group: Group | None = None
    by: tuple[Dimension, ...] = ()
    order: str | None = None
    limit: int | None = None

    def group_keys(self) -> list[str]:
        return [*(["bucket"] if self.group else []), *self.by]


def aggregate(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    *,
    group: Group | None = None,
    by: tuple[Dimension, ...] = (),
    rolled_until: datetime,
    order: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Sums of every metric over `span` for `scope`, per bucket of `group` (key `bucket`) and
    per value of the dimensions `by`; rollups before `rolled_until`, raw events after."""
    ask = Ask(group=group, by=by, order=order, limit=limit)
    return answer(session, chain_id, scope, span, [ask], rolled_until=rolled_until)[1][0]


# the columns every question's rows come back in (a question fills those it is about)
KEYS = {
    "bucket": "NULL::timestamptz",
    "campaign_id": "NULL::bigint",
    "publisher": "NULL::text",
    "slot_id": "NULL::text",
}
MONEY = ("spend", "x402_revenue")
# a report whose live events (since the watermark) span at most this reads them once for all
# its questions, with a generic plan; longer (the rollup job stalled, or the benchmark's
# question of the raw events alone), each question reads them, planned for their range, and
# the top performers sum every metric for every candidate
KEEPING_UP = timedelta(days=1)


def answer(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    asks: list[Ask],
    *,
    rolled_until: datetime,
    check: bool = False,
) -> tuple[datetime | None, list[list[dict[str, Any]]]]:
    """The rows of each of `asks`, all from one SQL statement: one round trip and one plan for
    a whole report, and the live events since the watermark read once for all its questions;
    with `check`, the watermark the statement itself saw (its first row, part -1)."""
    filters = scope.filters()
    params: dict[str, Any] = {"chain": chain_id, **{f"f_{k}": v for k, v in filters.items()}}
    where = "".join(f" AND {column} = :f_{column}" for column in filters)
    live = plan(span, rolled_until, use_days=False).raw
    keeping_up = live is None or live[1] - live[0] <= KEEPING_UP
    questions = []
    for index, ask in enumerate(asks):
        parts, running = _parts(ask, f"q{index}_", span, rolled_until, scope, params, where)
        if live is not None:
            by = "".join(f", {k}" for k in ask.by)
            active = ", 1 AS active" if running else ""
            parts.append(f"SELECT at{by}, {', '.join(METRICS)}{active} FROM live")
        if parts:
            question = _question(index, ask, parts, running, keeping_up)
            questions.append(f"SELECT * FROM ({question}) q{index}")
    if check:
        params["watermark"] = WATERMARK
        nulls = ", NULL" * (len(KEYS) - 1 + len(METRICS))
        questions.append(
            "SELECT -1 AS part, 0 AS seq,"
            f" (SELECT rolled_until FROM analytics_watermark WHERE name = :watermark){nulls}"
        )
    found: list[list[dict[str, Any]]] = [[] for _ in asks]
    if not questions:
        return None, found
    sql = " UNION ALL ".join(questions) + " ORDER BY part, seq"
    if live is not None:
        params |= {"lo": live[0], "hi": live[1]}
        shared = "MATERIALIZED" if keeping_up else "NOT MATERIALIZED"  # (no copy of a month)
        sql = (
            f"WITH live AS {shared} (SELECT at, campaign_id, publisher, slot_id,"
            f" {', '.join(METRICS)} FROM ({RAW_ROWS}) raw WHERE chain_id = :chain{where}) {sql}"
        )
    if keeping_up and _driver(session).autocommit:
        rows: Sequence[Any] = _prepared(session, sql, params)
    else:
        rows = session.execute(text(sql), params).all()
    seen = None
    if check:
        seen, rows = rows[0][2] or EPOCH, rows[1:]
    # each question's keys and every metric, from a row's columns (part, seq, KEYS, METRICS)
    columns = {name: 2 + index for index, name in enumerate((*KEYS, *METRICS))}
    shapes = []
    for ask in asks:
        names = (*ask.group_keys(), *METRICS)
        shapes.append(
            (names, itemgetter(*(columns[name] for name in names)), bool(ask.by or ask.group))
        )
    impressions = columns["impressions"]
    for row in rows:
        names, pick, keyed = shapes[row[0]]
        if not keyed and row[impressions] is None:
            continue  # nothing in the span: no totals
        values = dict(zip(names, pick(row), strict=True))
        for column in MONEY:
            values[column] = int(values[column])
        found[row[0]].append(values)
    return seen, found


_NUMBERED = postgresql.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


def _prepared(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql` from a statement prepared once per connection and run with a generic
    plan, outside a transaction: a report's statement has the same text each time, and
    parsing and planning it took longer than running it (one publisher's week by hour at
    10,000,000 events: 4 ms against 2 ms).

    One simple query: the generic plan for its own implicit transaction, then EXECUTE (whose
    arguments are literals: it takes no bound parameters), after the PREPARE when the
    connection has not got the statement. Which it has is kept with the pooled connection; a
    rollback by the driver deallocates them all (when it had prepared statements of its
    own), which the EXECUTE finds out, and the statement is prepared again. A PREPARE that
    finds the name taken (a server connection of a transaction-mode pooler that another
    client connection prepared it on) runs the one there: its name is its text's hash."""
    numbered, name, names = _numbered(sql)
    arguments = pg.SQL(", ").join(pg.Literal(params[n]) for n in names)
    execute = pg.SQL(
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', true); EXECUTE {}({})"
    ).format(pg.Identifier(name), arguments)
    held = session.connection().connection.info.setdefault(PREPARED, set())
    driver = _driver(session)
    with driver.cursor() as cursor:
        if name in held:
            try:
                cursor.execute(execute, prepare=False)
            except psycopg.errors.InvalidSqlStatementName:
                held.clear()  # (deallocated by the driver: no statement of ours is left)
        if name not in held:
            prepare = pg.SQL("PREPARE {} AS ").format(pg.Identifier(name)) + pg.SQL(numbered)
            try:
                cursor.execute(prepare + pg.SQL("; ") + execute, prepare=False)
            except psycopg.errors.DuplicatePreparedStatement:
                cursor.execute(execute, prepare=False)
            held.add(name)
        while cursor.nextset():  # (to the EXECUTE's rows)
            pass
        return list(cursor.fetchall())


# the pooled connection's `info` key: the names of the reports' statements it has prepared
PREPARED = "analytics_prepared"


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> tuple[str, str, tuple[str, ...]]:
    """`sql` with `$1`, `$2`… for its parameters, the name of its prepared statement, and the
    names of its parameters in their order."""
    compiled = text(sql).compile(dialect=_NUMBERED)
    name = "analytics_" + hashlib.sha256(sql.encode()).hexdigest()[:24]
    return str(compiled), name, tuple(compiled.positiontup or ())


def _question(index: int, ask: Ask, parts: list[str], running: bool, keeping_up: bool) -> str:
    """The sums of one question over the union of its `parts`, a row per key, numbered in
    its order (`seq`); every question's rows have the same columns (`KEYS`, `METRICS`)."""
    grouped = {
        k: f"date_trunc('{ask.group}', at, 'UTC')" if k == "bucket" else k for k in ask.group_keys()
    }
    columns = [f"{grouped.get(k, null)} AS {k}" for k, null in KEYS.items()]
    sums = [f"sum({m}){'' if m in MONEY else '::bigint'} AS {m}" for m in METRICS]
    order = ", ".join([*([ask.order] if ask.order else []), *grouped.values()]) or "1"
    # no traffic in the span: no row (as summing hourly rows gives)
    having = " HAVING sum(active) > 0" if running else ""
    source = " UNION ALL ".join(parts)
    if ask.limit is not None and ask.by and ask.group is None and keeping_up:
        # the leaders found summing only what `order` sorts on, every metric summed for them
        # alone (the network's report of a month by day at 10,000,000 events: p50 26 ms to 21);
        # the rows are copied once, so not with more than a day of live events among them
        keys = ", ".join(ask.by)
        source = (
            f"WITH rows AS MATERIALIZED ({source}), leaders AS (SELECT {keys} FROM rows"
            f" GROUP BY {keys}{having} ORDER BY {order} LIMIT {int(ask.limit)})"
            f" SELECT rows.* FROM rows JOIN leaders USING ({keys})"
        )
    sql = (
        f"SELECT {index} AS part, row_number() OVER (ORDER BY {order}) AS seq,"
        f" {', '.join(columns)}, {', '.join(sums)} FROM ({source}) u"
    )
    if grouped:
        sql += f" GROUP BY {', '.join(grouped.values())}"
    sql += having
    sql += f" ORDER BY {order}"
    if ask.limit is not None:
        sql += f" LIMIT {int(ask.limit)}"
    return sql


def _parts(
    ask: Ask,
    prefix: str,
    span: Span,
    rolled_until: datetime,
    scope: Scope,
    params: dict[str, Any],
    where: str,
) -> tuple[list[str], bool]:
    """The rollup rows a question sums (its parameters named from `prefix`), and whether they
    are running totals (with `active`); the live events are added by the caller."""
    columns = ", ".join(("at", *ask.by, *METRICS))
    wanted = grain(set(scope.filters()) | set(ask.by))
    fixed = "".join(f" AND {column} = {value}" for column, value in UNUSED[wanted])
    parts: list[str] = []
    found = plan(span, rolled_until, use_days=ask.group != "hour")
    running = ask.group is None and wanted in RUNNING_GRAINS
    if running:  # the rolled hours from the running totals instead
        rolled_end = min(span.end, rolled_until)
        if span.start < rolled_end:
            ends = (span.start, _ceil_hour(rolled_end))
            parts += _running(ends, prefix, wanted, ask.by, params, where + fixed)
        found.hourly, found.daily = [], None
    for index, (lo, hi) in enumerate(found.hourly):
        lo_name, hi_name = f"{prefix}h{index}_lo", f"{prefix}h{index}_hi"
        params |= {lo_name: lo, hi_name: hi}
        parts.append(
            f"SELECT hour AS {columns} FROM analytics_hourly WHERE grain = '{wanted}'"
            f" AND chain_id = :chain AND hour >= :{lo_name} AND hour < :{hi_name}{where}{fixed}"
        )
    if found.daily is not None:
        params |= {f"{prefix}d_lo": found.daily[0], f"{prefix}d_hi": found.daily[1]}
        parts.append(
            f"SELECT (day::timestamp AT TIME ZONE 'UTC') AS {columns} FROM analytics_daily"
            f" WHERE grain = '{wanted}' AND chain_id = :chain AND day >= :{prefix}d_lo"
            f" AND day < :{prefix}d_hi{where}{fixed}"
        )
    return parts, running


def _running(
    ends: tuple[datetime, datetime],
    prefix: str,
    wanted: str,
    by: tuple[Dimension, ...],
    params: dict[str, Any],
    where: str,
) -> list[str]:
    """The sums over the whole hours [x, y) from the running totals, per campaign, publisher
    or slot: its totals before y minus its totals before x, where the totals before an hour t
    are the daily running row of the day before t's day plus (unless t is a midnight) the
    hourly running row of t - 1 hour; at most four rows each, whatever the span. `active`
    counts its hourly rollup rows in [x, y)."""
    params[f"{prefix}r_at"] = ends[0]
    parts = []
    for name, end, sign in (("y", ends[1], ""), ("x", ends[0], "-")):
        at = end.astimezone(UTC)
        points = [("analytics_daily_running", "day", at.date() - timedelta(days=1))]
        if at.hour:
            points.append(("analytics_hourly_running", "hour", at - timedelta(hours=1)))
        for index, (table, bucket, value) in enumerate(points):
            point = f"{prefix}r_{name}{index}"
            params[point] = value
            sums = ", ".join(f"{sign}{column} AS {column}" for column in METRICS)
            parts.append(
                f"SELECT CAST(:{prefix}r_at AS timestamptz) AS at,"
                f" {''.join(f'{k}, ' for k in by)}{sums}, {sign}active_hours AS active"
                f" FROM {table} WHERE grain = '{wanted}' AND chain_id = :chain"
                f" AND {bucket} = :{point}{where}"
            )
    return parts


def measures(row: dict[str, Any]) -> dict[str, Any]:
    """A row's figures as the API shows them: counts as numbers, money as integer strings,
    rates in basis points (integers, rounded down)."""
    impressions = row["impressions"]
    clicks = row["clicks"]
    events = impressions + clicks
    spend = row["spend"]
    invalid = 0
    by_reason = {}
    for reason, column in IVT_COLUMNS:
        count = row[column]
        if count:
            invalid += count
            by_reason[reason] = {"events": count, "rate_bps": _bps(count, events)}
    return {
        "impressions": impressions,
        "verified_impressions": row["verified_impressions"],
        "clicks": clicks,
        "verified_clicks": row["verified_clicks"],
        "ctr_bps": _bps(row["verified_clicks"], row["verified_impressions"]),
        "spend": str(spend),
        "earnings": str(earnings(spend)),
        "ivt_events": invalid,
        "ivt_rate_bps": _bps(invalid, events),
        "ivt_by_reason": by_reason,
        "x402_payments": row["x402_payments"],
        "x402_revenue": str(row["x402_revenue"]),
    }


IVT_COLUMNS = tuple((reason, f"ivt_{reason}") for reason in (*REASONS, "other"))


def _bps(part: int, whole: int) -> int:
    return part * BPS // whole if whole else 0


TOPS: dict[str, tuple[Dimension, ...]] = {
    "campaigns": ("campaign_id",),
    "publishers": ("publisher",),
    "slots": ("publisher", "slot_id"),
}
ORDER = "sum(spend) DESC, sum(verified_impressions) DESC, sum(impressions) DESC"


def report(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    group: Group,
    tops: tuple[str, ...],
    rolled_until: datetime | None = None,
) -> dict[str, Any]:
    """The series, the totals and the top performers of `scope` over `span` (all from the raw
    events when `rolled_until` is before them, as the benchmark asks)."""
    asks = [Ask(group=group), *(Ask(by=TOPS[name], order=ORDER, limit=TOP + 2) for name in tops)]
    rolled, (series, *leaders) = settled(session, chain_id, scope, span, asks, rolled_until)
    pick = itemgetter(*METRICS)
    sums = map(sum, zip(*map(pick, series), strict=True)) if series else (0 for _ in METRICS)
    totals = dict(zip(METRICS, sums, strict=True))
    top = {
        name: [
            {**{k: row[k] for k in TOPS[name]}, **measures(row)}
            for row in _known(rows, TOPS[name])[:TOP]
        ]
        for name, rows in zip(tops, leaders, strict=True)
    }
    return {
        "from": span.start,
        "to": span.end,
        "group": group,
        "rolled_until": rolled,
        "series": [{"bucket": row["bucket"], **measures(row)} for row in series],
        "totals": measures(totals),
        "top": top,
    }


def _known(rows: list[dict[str, Any]], by: tuple[Dimension, ...]) -> list[dict[str, Any]]:
    """Without the rows of no campaign (x402 revenue, unreadable tokens) or no publisher."""
    return [row for row in rows if all(row[k] not in (0, "") for k in by)]


def ivt_report(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    by: tuple[Dimension, ...],
    rolled_until: datetime | None = None,
) -> dict[str, Any]:
    """Invalid traffic by reason over `span`, one row per value of `by`."""
    order = "(" + " + ".join(f"sum({column})" for _, column in IVT_COLUMNS) + ") DESC"
    asks = [Ask(by=by, order=order)]
    rolled, (rows,) = settled(session, chain_id, scope, span, asks, rolled_until)
    return {
        "from": span.start,
        "to": span.end,
        "rolled_until": rolled,
        "rows": [{**{k: row[k] for k in by}, **measures(row)} for row in rows],
    }


def span_of(start: date | datetime, end: date | datetime) -> Span:
    """Whole hours from `start` to `end`: a date `end` includes its whole day, a datetime
    `end` is rounded up to a whole hour (exclusive; at least one hour). Naive is UTC."""
    lo = floor_hour(aware(start))
    if isinstance(end, datetime):
        hi = floor_hour(aware(end))
        hi = hi if hi == aware(end) and hi > lo else hi + timedelta(hours=1)
    else:
        hi = aware(end) + timedelta(days=1)
    return Span(lo, hi)


def aware(at: date | datetime) -> datetime:
    if not isinstance(at, datetime):
        return datetime(at.year, at.month, at.day, tzinfo=UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
