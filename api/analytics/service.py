"""Analytics queries: a date range cut into what the rollups hold and what is still live.

    report(session, chain_id, Scope(publisher="0xab…"), span, group="day")

Hours before the rollup's watermark are read from `analytics_daily` (whole days) and
`analytics_hourly` (the ragged edges); hours from the watermark on are summed straight from
`ad_events` and `x402_payments`, so a report is never behind the raw events. One SQL statement
per question, under REPEATABLE READ so the watermark and the rollups agree.

Earnings are the publishers' share of spend, estimated until settled: `spend * 8500 // 10000`
per row shown (the floor; settlement allocates each epoch's charge by largest remainder, so
the settled figure can differ by less than one atomic unit per publisher and epoch, and is
lower when a campaign's charge was capped by its balance or max per epoch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
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


def _snapshot(session: Session) -> None:
    """Read everything that follows from one snapshot, so the series, the totals and the
    watermark agree while the rollup job commits (ends the read-only transaction so far)."""
    session.rollback()
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def watermark(session: Session) -> datetime:
    rolled = session.execute(
        text("SELECT rolled_until FROM analytics_watermark WHERE name = :name"),
        {"name": WATERMARK},
    ).scalar()
    return rolled if rolled is not None else EPOCH


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
    per value of the dimensions `by`; rollups before `rolled_until`, raw events after.

    With a `limit` (top performers; `order` then names only the `RANK` metrics), the leaders
    are found summing those few metrics, and all metrics are summed for the leaders only."""
    ask: dict[str, Any] = {"group": group, "by": by, "rolled_until": rolled_until}
    cheap = group is None and grain(set(scope.filters()) | set(by)) in RUNNING_GRAINS
    if limit is None or not by or cheap:  # (running totals: a few rows each, sum them all)
        return _sums(session, chain_id, scope, span, **ask, order=order, limit=limit)
    leaders = _sums(session, chain_id, scope, span, **ask, metrics=RANK, order=order, limit=limit)
    chosen = [tuple(row[k] for k in by) for row in leaders]
    if not chosen:
        return []
    rows = _sums(session, chain_id, scope, span, **ask, among=chosen)
    position = {key: index for index, key in enumerate(chosen)}
    return sorted(rows, key=lambda row: position[tuple(row[k] for k in by)])


RANK = ("spend", "verified_impressions", "impressions")


def _sums(
    session: Session,
    chain_id: int,
    scope: Scope,
    span: Span,
    *,
    group: Group | None,
    by: tuple[Dimension, ...],
    rolled_until: datetime,
    metrics: tuple[str, ...] = METRICS,
    among: list[tuple[Any, ...]] | None = None,
    order: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    filters = scope.filters()
    params: dict[str, Any] = {"chain": chain_id, **{f"f_{k}": v for k, v in filters.items()}}
    where = "".join(f" AND {column} = :f_{column}" for column in filters)
    if among:
        tuples = []
        for row, key in enumerate(among):
            params |= {f"a{row}_{index}": value for index, value in enumerate(key)}
            tuples.append("(" + ", ".join(f":a{row}_{index}" for index in range(len(key))) + ")")
        where += f" AND ({', '.join(by)}) IN ({', '.join(tuples)})"
    columns = ", ".join(("at", *by, *metrics))
    wanted = grain(set(filters) | set(by))
    fixed = "".join(f" AND {column} = {value}" for column, value in UNUSED[wanted])
    parts: list[str] = []
    found = plan(span, rolled_until, use_days=group != "hour")
    running = group is None and wanted in RUNNING_GRAINS
    if running:  # the rolled hours from the running totals instead
        rolled_end = min(span.end, rolled_until)
        if span.start < rolled_end:
            ends = (span.start, _ceil_hour(rolled_end))
            parts += _running(ends, wanted, by, metrics, params, where + fixed)
        found.hourly, found.daily = [], None
    for index, (lo, hi) in enumerate(found.hourly):
        params |= {f"h{index}_lo": lo, f"h{index}_hi": hi}
        parts.append(
            f"SELECT hour AS {columns} FROM analytics_hourly WHERE grain = '{wanted}'"
            f" AND chain_id = :chain AND hour >= :h{index}_lo AND hour < :h{index}_hi{where}{fixed}"
        )
    if found.daily is not None:
        params |= {"d_lo": found.daily[0], "d_hi": found.daily[1]}
        parts.append(
            f"SELECT (day::timestamp AT TIME ZONE 'UTC') AS {columns} FROM analytics_daily"
            f" WHERE grain = '{wanted}' AND chain_id = :chain AND day >= :d_lo AND day < :d_hi"
            f"{where}{fixed}"
        )
    if found.raw is not None:
        params |= {"lo": found.raw[0], "hi": found.raw[1]}
        active = ", 1 AS active" if running else ""
        parts.append(
            f"SELECT {columns}{active} FROM ({RAW_ROWS}) raw WHERE chain_id = :chain{where}"
        )
    if not parts:
        return []
    keys = [*(["bucket"] if group else []), *by]
    bucket = [f"date_trunc('{group}', at, 'UTC') AS bucket"] if group else []
    sums = [f"sum({column}) AS {column}" for column in metrics]
    sql = f"SELECT {', '.join([*bucket, *by, *sums])} FROM ({' UNION ALL '.join(parts)}) u"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    if running:  # no traffic in the span: no row (as summing hourly rows gives)
        sql += " HAVING sum(active) > 0"
    sql += f" ORDER BY {', '.join([*([order] if order else []), *keys]) or '1'}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = session.execute(text(sql), params).mappings().all()
    if not keys and rows and rows[0][metrics[0]] is None:
        return []
    return [{k: (int(v) if k in metrics else v) for k, v in row.items()} for row in rows]


def _running(
    ends: tuple[datetime, datetime],
    wanted: str,
    by: tuple[Dimension, ...],
    metrics: tuple[str, ...],
    params: dict[str, Any],
    where: str,
) -> list[str]:
    """The sums over the whole hours [x, y) from the running totals, per campaign, publisher
    or slot: its totals before y minus its totals before x, where the totals before an hour t
    are the daily running row of the day before t's day plus (unless t is a midnight) the
    hourly running row of t - 1 hour; at most four rows each, whatever the span. `active`
    counts its hourly rollup rows in [x, y)."""
    params["r_at"] = ends[0]
    parts = []
    for name, end, sign in (("y", ends[1], ""), ("x", ends[0], "-")):
        at = end.astimezone(UTC)
        points = [("analytics_daily_running", "day", at.date() - timedelta(days=1))]
        if at.hour:
            points.append(("analytics_hourly_running", "hour", at - timedelta(hours=1)))
        for index, (table, bucket, value) in enumerate(points):
            params[f"r_{name}{index}"] = value
            sums = ", ".join(f"{sign}{column} AS {column}" for column in metrics)
            parts.append(
                f"SELECT CAST(:r_at AS timestamptz) AS at, {''.join(f'{k}, ' for k in by)}"
                f"{sums}, {sign}active_hours AS active FROM {table}"
                f" WHERE grain = '{wanted}' AND chain_id = :chain"
                f" AND {bucket} = :r_{name}{index}{where}"
            )
    return parts


def measures(row: dict[str, Any]) -> dict[str, Any]:
    """A row's figures as the API shows them: counts as numbers, money as integer strings,
    rates in basis points (integers, rounded down)."""
    impressions = row["impressions"]
    clicks = row["clicks"]
    events = impressions + clicks
    invalid = {reason: row[f"ivt_{reason}"] for reason in (*REASONS, "other")}
    return {
        "impressions": impressions,
        "verified_impressions": row["verified_impressions"],
        "clicks": clicks,
        "verified_clicks": row["verified_clicks"],
        "ctr_bps": _bps(row["verified_clicks"], row["verified_impressions"]),
        "spend": str(row["spend"]),
        "earnings": str(earnings(row["spend"])),
        "ivt_events": sum(invalid.values()),
        "ivt_rate_bps": _bps(sum(invalid.values()), events),
        "ivt_by_reason": {
            reason: {"events": count, "rate_bps": _bps(count, events)}
            for reason, count in invalid.items()
            if count
        },
        "x402_payments": row["x402_payments"],
        "x402_revenue": str(row["x402_revenue"]),
    }


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
    _snapshot(session)
    rolled = watermark(session) if rolled_until is None else rolled_until
    series = aggregate(session, chain_id, scope, span, group=group, rolled_until=rolled)
    totals = {column: sum(row[column] for row in series) for column in METRICS}
    top = {
        name: [
            {**{k: row[k] for k in TOPS[name]}, **measures(row)}
            for row in _known(
                aggregate(
                    session,
                    chain_id,
                    scope,
                    span,
                    by=TOPS[name],
                    order=ORDER,
                    limit=TOP + 2,
                    rolled_until=rolled,
                ),
                TOPS[name],
            )[:TOP]
        ]
        for name in tops
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
    _snapshot(session)
    rolled = watermark(session) if rolled_until is None else rolled_until
    rows = aggregate(
        session,
        chain_id,
        scope,
        span,
        by=by,
        rolled_until=rolled,
        order="(" + " + ".join(f"sum(ivt_{r})" for r in (*REASONS, "other")) + ") DESC",
    )
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
