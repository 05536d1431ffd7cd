"""The rollups hold exactly what a direct sum over the raw events gives, whatever the events,
whenever they land (within the lateness window) and however often the job runs; and a report
that mixes rollups with live raw events equals one read from the raw events alone."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.analytics import service
from api.analytics.jobs import LATENESS, floor_hour, roll_up, rollup
from api.analytics.models import COUNT_COLUMNS, MONEY_COLUMNS, REASONS, RUNNING_GRAINS
from api.analytics.service import Scope, Span
from tests.analytics.conftest import Event, insert_events, insert_payment

BASE = datetime(2026, 11, 2, 20, tzinfo=UTC)  # two UTC days and a bit, across midnights
HOURS = 60
PUBLISHERS = ("0x" + "a" * 40, "0x" + "c" * 40, None)
METRICS = (*COUNT_COLUMNS, *MONEY_COLUMNS)


@st.composite
def events(draw: Any, lo: int = 0, hi: int = HOURS - 1) -> Event:
    verified = draw(st.booleans())
    return Event(
        occurred_at=BASE
        + timedelta(hours=draw(st.integers(lo, hi)), seconds=draw(st.integers(0, 3599))),
        kind=draw(st.sampled_from(("impression", "click"))),
        verified=verified,
        reason=None if verified else draw(st.sampled_from((*REASONS, "something_new"))),
        campaign_id=draw(st.sampled_from((1, 2, 3, None))),
        publisher=draw(st.sampled_from(PUBLISHERS)),
        slot_id=draw(st.sampled_from(("s1", "s2", None))),
        price=draw(st.sampled_from((0, 1, 10**6, 10**30 + 7))) if verified else 0,
    )


def metrics(event: Event) -> Counter[str]:
    found: Counter[str] = Counter()
    found["impressions" if event.kind == "impression" else "clicks"] += 1
    if event.verified:
        found["verified_" + ("impressions" if event.kind == "impression" else "clicks")] += 1
        found["spend"] += event.price
    else:
        reason = event.reason if event.reason in REASONS else "other"
        found[f"ivt_{reason}"] += 1
    return found


def expected(all_events: list[Event], until: datetime) -> dict[tuple[Any, ...], Counter[str]]:
    """What `analytics_hourly` should hold, summed in Python from the events."""
    rows: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for event in all_events:
        if event.occurred_at >= until:
            continue
        hour = floor_hour(event.occurred_at)
        c, p, s = event.campaign_id or 0, event.publisher or "", event.slot_id or ""
        for key in (("cps", c, p, s), ("c", c, "", ""), ("p", 0, p, ""), ("s", 0, p, s)):
            rows[(*key, hour)] += metrics(event)
        rows[("n", 0, "", "", hour)] += metrics(event)
    return rows


def stored(engine: Engine, table: str, bucket: str) -> dict[tuple[Any, ...], Counter[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT grain, campaign_id, publisher, slot_id, {bucket}, * FROM {table}")
        ).mappings()
        return {
            (r["grain"], r["campaign_id"], r["publisher"], r["slot_id"], r[bucket]): Counter(
                {m: int(r[m]) for m in METRICS if r[m]}
            )
            for r in rows
        }


def days(hourly: dict[tuple[Any, ...], Counter[str]]) -> dict[tuple[Any, ...], Counter[str]]:
    rows: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for (*key, hour), figures in hourly.items():
        rows[(*key, hour.date())] += figures
    return dict(rows)


def running(
    hourly: dict[tuple[Any, ...], Counter[str]], through: date
) -> tuple[dict[tuple[Any, ...], Counter[str]], dict[tuple[Any, ...], Counter[str]]]:
    """What `analytics_daily_running` and `analytics_hourly_running` should hold: for each
    campaign, publisher and slot, a row every day from its first through `through` with its
    totals so far, and a row every hour from its first of a day through 23:00 with the day's
    totals so far (`active_hours`: how many hourly rows are in those totals)."""
    per_entity: dict[tuple[Any, ...], dict[datetime, Counter[str]]] = defaultdict(dict)
    for (*key, hour), figures in hourly.items():
        if key[0] in RUNNING_GRAINS:
            per_entity[tuple(key)][hour] = figures + Counter({"active_hours": 1})
    daily: dict[tuple[Any, ...], Counter[str]] = {}
    within: dict[tuple[Any, ...], Counter[str]] = {}
    for key, by_hour in per_entity.items():
        total: Counter[str] = Counter()
        day = min(by_hour).date()
        while day <= through:
            today: Counter[str] = Counter()
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            for hour in (midnight + timedelta(hours=h) for h in range(24)):
                today = today + by_hour.get(hour, Counter())
                if today:
                    within[(*key, hour)] = today
            total = total + today
            daily[(*key, day)] = total
            day += timedelta(days=1)
    return daily, within


def stored_running(engine: Engine, table: str, bucket: str) -> dict[tuple[Any, ...], Counter[str]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table}")).mappings()
        return {
            (r["grain"], r["campaign_id"], r["publisher"], r["slot_id"], r[bucket]): Counter(
                {m: int(r[m]) for m in (*METRICS, "active_hours") if r[m]}
            )
            for r in rows
        }


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE ad_events, analytics_hourly, analytics_daily, analytics_daily_running,"
                " analytics_hourly_running,"
                " analytics_watermark"
            )
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(events(), max_size=40),
    late_hours=st.integers(0, LATENESS // timedelta(hours=1)),
    late=st.lists(events(), max_size=15),
    cut=st.integers(1, HOURS),
    reruns=st.integers(1, 2),
)
def test_rollups_equal_the_raw_events(engine, first, late_hours, late, cut, reruns):
    reset(engine)
    now = BASE + timedelta(hours=cut, minutes=30)
    on_time = [e for e in first if e.occurred_at < now]
    insert_events(engine, on_time)
    roll_up(engine, now=now)
    # the writer was down: events of the last hours land after the run; the next run (an
    # hour later) must still count them, and running it again changes nothing
    window_start = floor_hour(now) - timedelta(hours=late_hours)
    landed = [
        Event(
            **{**vars(e), "occurred_at": window_start + (e.occurred_at - BASE) % timedelta(hours=1)}
        )
        for e in late
    ]
    insert_events(engine, landed)
    later = now + timedelta(hours=1)
    for _ in range(reruns):
        roll_up(engine, now=later)

    want = expected(on_time + landed, later)
    hourly = stored(engine, "analytics_hourly", "hour")
    assert hourly == {k: v for k, v in want.items() if v}
    daily = stored(engine, "analytics_daily", "day")
    assert daily == days(hourly)
    by_day, by_hour = running(hourly, (later - timedelta(microseconds=1)).date())
    assert stored_running(engine, "analytics_daily_running", "day") == by_day
    assert stored_running(engine, "analytics_hourly_running", "hour") == by_hour


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.lists(events(), max_size=40),
    rolled=st.integers(0, HOURS),
    minutes=st.integers(0, 59),
    lo=st.integers(0, HOURS),
    length=st.integers(1, HOURS),
    group=st.sampled_from(("hour", "day", None)),
    scope=st.sampled_from(
        (Scope(), Scope(campaign_id=2), Scope(publisher=PUBLISHERS[0]), Scope(publisher="0xnone"))
    ),
)
def test_a_report_reads_the_same_from_rollups_and_raw_events(
    engine, batch, rolled, minutes, lo, length, group, scope
):
    reset(engine)
    insert_events(engine, batch)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE x402_payments"))
    insert_payment(engine, BASE + timedelta(hours=5), "s1", PUBLISHERS[0], 77)
    watermark = BASE + timedelta(hours=rolled, minutes=minutes)
    roll_up(engine, now=watermark, since=BASE - timedelta(days=1))
    span = Span(BASE + timedelta(hours=lo), BASE + timedelta(hours=lo + length))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        for by in ((), ("campaign_id",), ("publisher",), ("publisher", "slot_id")):
            ask: dict[str, Any] = {"group": group, "by": by}
            mixed = service.aggregate(session, 1337, scope, span, rolled_until=watermark, **ask)
            raw = service.aggregate(session, 1337, scope, span, rolled_until=epoch, **ask)
            assert mixed == raw
            if by:  # the top performers too
                top: dict[str, Any] = {"by": by, "order": service.ORDER, "limit": 2}
                mixed = service.aggregate(session, 1337, scope, span, rolled_until=watermark, **top)
                raw = service.aggregate(session, 1337, scope, span, rolled_until=epoch, **top)
                assert mixed == raw


def test_the_scheduler_job_rolls_up_to_the_current_minute(engine, database_url, settings):
    now = datetime.now(UTC)
    insert_events(engine, [Event(now - timedelta(hours=1), price=9)])
    rollup(settings.model_copy(update={"database_url": database_url}))
    with Session(engine) as session:
        rolled = service.watermark(session)
        assert now - timedelta(minutes=1) <= rolled <= datetime.now(UTC)
        totals = service.aggregate(
            session,
            1337,
            Scope(),
            Span(floor_hour(now) - timedelta(hours=1), rolled),
            rolled_until=rolled,
        )
    assert totals[0]["spend"] == 9


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.lists(events(lo=-48, hi=HOURS + 24), max_size=40),
    backfill=st.lists(events(lo=-48, hi=0), max_size=10),
    rolled=st.integers(24, HOURS + 24),
    first_day=st.integers(-3, 2),
    days_long=st.integers(1, 5),
    hours=st.none() | st.tuples(st.integers(-72, HOURS + 24), st.integers(1, 120)),
    scope=st.sampled_from((Scope(), Scope(campaign_id=2), Scope(publisher=PUBLISHERS[0]))),
)
def test_sums_read_from_the_running_totals_equal_the_raw_events(
    engine, batch, backfill, rolled, first_day, days_long, hours, scope
):
    """Sums per campaign, publisher or slot over whole days or any whole hours (read from the
    running totals), after a backfill of old hours that changes every later day's totals:
    the top performers and per-entity rows equal the raw events'."""
    reset(engine)
    insert_events(engine, batch)
    watermark = BASE + timedelta(hours=rolled, minutes=17)
    roll_up(engine, now=watermark, since=BASE - timedelta(days=3))
    insert_events(engine, backfill)  # older than the lateness window: only a backfill sees them
    roll_up(engine, now=BASE + timedelta(hours=1), since=BASE - timedelta(days=3))
    start = BASE.date() + timedelta(days=first_day)
    span = service.span_of(start, start + timedelta(days=days_long - 1))
    if hours is not None:
        span = Span(BASE + timedelta(hours=hours[0]), BASE + timedelta(hours=sum(hours)))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        rolled_until = service.watermark(session)
        assert rolled_until == watermark
        for by in ((), ("campaign_id",), ("publisher",), ("publisher", "slot_id")):
            for top in ({}, {"order": service.ORDER, "limit": 2}):
                ask: dict[str, Any] = {"by": by, **top}
                mixed = service.aggregate(session, 1337, scope, span, rolled_until=watermark, **ask)
                raw = service.aggregate(session, 1337, scope, span, rolled_until=epoch, **ask)
                assert mixed == raw


def test_a_report_is_the_same_after_the_connection_drops_its_prepared_statements(engine):
    """A report runs as a statement prepared on its connection; whoever deallocates it (the
    driver does at a rollback, once it has prepared statements of its own), the next report
    prepares it again and reads the same."""
    reset(engine)
    insert_events(engine, [Event(BASE + timedelta(hours=h), price=5 + h) for h in range(30)])
    roll_up(engine, now=BASE + timedelta(hours=30, minutes=5), since=BASE)
    span = Span(BASE, BASE + timedelta(hours=31))
    ask = (Scope(publisher=PUBLISHERS[0]), span, "hour", ("campaigns", "slots"))
    with Session(engine) as session:
        first = service.report(session, 1337, *ask)
        prepared = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'analytics_%'"
        assert session.execute(text(prepared)).scalar() >= 1
        session.connection().exec_driver_sql("DEALLOCATE ALL")
        assert service.report(session, 1337, *ask) == first
        assert first["totals"]["spend"] == str(sum(5 + h for h in range(30)))


def test_a_report_asked_after_the_rollups_moved_reads_their_new_watermark(engine, monkeypatch):
    """A report is planned for the watermark the last one found; when the rollup job has moved
    it since (or in another database), the report is asked again with the new one, and when
    it moves every time, read in one snapshot after it: each reads what the raw events say."""
    reset(engine)
    insert_events(engine, [Event(BASE + timedelta(hours=h), price=5 + h) for h in range(30)])
    span = Span(BASE, BASE + timedelta(hours=31))
    ask = (Scope(publisher=PUBLISHERS[0]), span, "hour", ("campaigns", "slots"))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        for guesses, until in ((service.GUESSES, 10), (service.GUESSES, 20), (0, 30)):
            monkeypatch.setattr(service, "GUESSES", guesses)
            roll_up(engine, now=BASE + timedelta(hours=until, minutes=5), since=BASE)
            found = service.report(session, 1337, *ask)
            assert found["rolled_until"] == BASE + timedelta(hours=until, minutes=5)
            raw = service.report(session, 1337, *ask, rolled_until=epoch)
            assert {k: v for k, v in found.items() if k != "rolled_until"} == {
                k: v for k, v in raw.items() if k != "rolled_until"
            }
            assert found["totals"]["spend"] == str(sum(5 + h for h in range(30)))


def test_a_report_runs_the_statement_its_connection_has_without_knowing_it(engine):
    """A connection that holds the report's statement though the pool's record of it says
    otherwise (a transaction-mode pooler hands out server connections others prepared on)
    runs the statement there instead of failing on its PREPARE."""
    reset(engine)
    insert_events(engine, [Event(BASE + timedelta(hours=h), price=7) for h in range(5)])
    roll_up(engine, now=BASE + timedelta(hours=5, minutes=5), since=BASE)
    ask = (Scope(publisher=PUBLISHERS[0]), Span(BASE, BASE + timedelta(hours=6)), "hour", ())
    with Session(engine) as session:
        first = service.report(session, 1337, *ask)
        session.connection().connection.info[service.PREPARED].clear()
        assert service.report(session, 1337, *ask) == first
        assert first["totals"]["spend"] == "35"


def test_a_process_first_report_is_planned_for_the_watermark_it_reads(engine, monkeypatch):
    """With no watermark seen lately (a process's first report, or one after a quiet spell),
    the report reads the watermark before planning, instead of planning for a stale one and
    reading every raw event since."""
    reset(engine)
    insert_events(engine, [Event(BASE + timedelta(hours=h), price=3) for h in range(5)])
    watermark = BASE + timedelta(hours=5, minutes=5)
    roll_up(engine, now=watermark, since=BASE)
    planned: list[datetime] = []
    answer = service.answer
    monkeypatch.setattr(
        service,
        "answer",
        lambda *args, **kwargs: planned.append(kwargs["rolled_until"]) or answer(*args, **kwargs),
    )
    ask = (Scope(), Span(BASE, BASE + timedelta(hours=6)), "hour", ())
    with Session(engine) as session:
        for seen in (-math.inf, time.monotonic() - service.GUESS_SECONDS - 1):
            monkeypatch.setattr(service, "_last_seen", [(datetime(1970, 1, 1, tzinfo=UTC), seen)])
            found = service.report(session, 1337, *ask)
            assert planned == [watermark] and found["totals"]["spend"] == "15"
            planned.clear()
