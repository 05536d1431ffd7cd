"""Day partitions of `ad_events`: `ad_events_pYYYYMMDD` holds [day 00:00 UTC, next day 00:00 UTC).

    ensure(engine, 3)                      # today and the next three days (the scheduler job)
    ensure(conn, [date(2026, 12, 6)])      # exactly these days (the writer, per batch)

Idempotent and safe when two processes race: each partition is created with `CREATE TABLE IF
NOT EXISTS … PARTITION OF` in a transaction (or savepoint) of its own, and the error the loser
of a race can still get (the catalog's unique index on the type name) is taken as "exists".
Takes a SQLAlchemy `Engine` or `Connection`, or a psycopg connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
import sqlalchemy
import sqlalchemy.exc

logger = logging.getLogger(__name__)

PARENT = "ad_events"
DEFAULT_DAYS_AHEAD = 3

# what a CREATE … IF NOT EXISTS that lost a race can raise instead of a notice
_RACE_ERRORS = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable)


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def create_statement(day: date) -> str:
    following = day + timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT} "
        f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00')"
        f" TO ('{following.isoformat()} 00:00:00+00')"
    )


def days_from(days: Iterable[date] | int, today: date | None = None) -> list[date]:
    """The days an `ensure` call covers: the given ones, or today (UTC) and `days` more."""
    if isinstance(days, int):
        start = today or datetime.now(UTC).date()
        return [start + timedelta(days=n) for n in range(days + 1)]
    return sorted(set(days))


def ensure(bind: Any, days: Iterable[date] | int = DEFAULT_DAYS_AHEAD) -> list[str]:
    """Make sure the partitions of `days` exist; returns the names of the partitions covered.

    `bind`: a SQLAlchemy Engine or Connection, or a psycopg Connection. A connection inside
    a transaction gets a savepoint per day, so a lost race does not abort its transaction."""
    covered = days_from(days)
    for day in covered:
        statement = create_statement(day)
        if isinstance(bind, psycopg.Connection):
            _create_psycopg(bind, statement)
        elif isinstance(bind, sqlalchemy.Engine):
            with bind.connect() as conn:
                _create_sqlalchemy(conn, statement)
        elif isinstance(bind, sqlalchemy.Connection):
            _create_sqlalchemy(bind, statement)
        else:
            raise TypeError(f"cannot create partitions through {type(bind).__name__}")
    return [partition_name(day) for day in covered]


def _create_psycopg(conn: psycopg.Connection[Any], statement: str) -> None:
    try:
        with conn.transaction():  # a savepoint when the connection is inside a transaction
            conn.execute(statement.encode())  # built from dates only
    except _RACE_ERRORS:
        logger.debug("partition created concurrently: %s", statement)


def _create_sqlalchemy(conn: sqlalchemy.Connection, statement: str) -> None:
    outer = conn.in_transaction()
    scope = conn.begin_nested() if outer else conn.begin()
    try:
        conn.execute(sqlalchemy.text(statement))
        scope.commit()
    except sqlalchemy.exc.DBAPIError as exc:
        scope.rollback()
        if not isinstance(exc.orig, _RACE_ERRORS):
            raise
        logger.debug("partition created concurrently: %s", statement)
