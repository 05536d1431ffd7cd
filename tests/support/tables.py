"""Compare whole databases: `snapshot` reads every table of the public schema as sorted rows
without surrogate keys and bookkeeping timestamps, so an index built through reorgs, crashes
and retries can be compared with a fresh index of the canonical chain:

    assert snapshot(url_a) == snapshot(url_b), diff(snapshot(url_a), snapshot(url_b))

Partitioned tables are read through their parent (partitions are not listed separately).
Values are normalised so rows sort and compare: bytes/memoryview -> bytes, JSON objects ->
canonical text, arrays -> tuples.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from tests.support.postgres import libpq_url

IGNORED_COLUMNS = frozenset({"id", "created_at", "updated_at", "indexed_at"})
EXCLUDED_TABLES = frozenset({"alembic_version"})

Row = tuple[Any, ...]


class Snapshot(dict[str, list[Row]]):
    """Table name -> sorted rows; `columns` names each table's compared columns. Compares
    equal to any dict with the same rows (the column names do not take part)."""

    columns: dict[str, list[str]]

    def __init__(self) -> None:
        super().__init__()
        self.columns = {}


def _normalise(value: Any) -> Any:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):  # json/jsonb objects
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(value, list):  # arrays (and json arrays): hashable, still ordered
        return tuple(_normalise(v) for v in value)
    return value


def _sort_key(row: Row) -> tuple[Any, ...]:
    # NULLs first, then values; anything unorderable (e.g. mixed types) by its repr
    return tuple((0, "") if v is None else (1, v) for v in row)


def _sorted(rows: list[Row]) -> list[Row]:
    try:
        return sorted(rows, key=_sort_key)
    except TypeError:
        return sorted(rows, key=lambda r: tuple(repr(v) for v in r))


def snapshot(
    database_url: str,
    tables: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = (),
    ignore_columns: Iterable[str] = IGNORED_COLUMNS,
) -> Snapshot:
    """Every table of the public schema (or only `tables`) except `alembic_version` and
    `exclude`, as sorted rows without the `ignore_columns` columns."""
    excluded = EXCLUDED_TABLES | set(exclude)
    ignored = set(ignore_columns)
    wanted = set(tables) if tables is not None else None
    result = Snapshot()
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                """
                SELECT c.relname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                ORDER BY c.relname
                """
            )
        ]
        if wanted is not None:
            missing = wanted - set(names)
            if missing:
                raise KeyError(f"no such tables in the public schema: {sorted(missing)}")
        for name in names:
            if name in excluded or (wanted is not None and name not in wanted):
                continue
            columns = [
                row[0]
                for row in conn.execute(
                    """
                    SELECT a.attname FROM pg_attribute a
                    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
                    ORDER BY a.attnum
                    """,
                    [sql.Identifier("public", name).as_string(conn)],
                )
                if row[0] not in ignored
            ]
            if columns:
                query = sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                    sql.Identifier("public", name),
                )
                rows = [tuple(_normalise(v) for v in row) for row in conn.execute(query)]
            else:
                count = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", name))
                ).fetchone()
                rows = [()] * (count[0] if count else 0)
            result[name] = _sorted(rows)
            result.columns[name] = columns
    return result


def diff(a: dict[str, list[Row]], b: dict[str, list[Row]], limit: int = 10) -> str:
    """A readable summary of how two snapshots differ ("" when they are equal): tables only
    on one side, and per table the rows only in `a` (-) and only in `b` (+), at most
    `limit` of each."""
    lines: list[str] = []
    for name in sorted(set(a) - set(b)):
        lines.append(f"table {name}: only in the first ({len(a[name])} rows)")
    for name in sorted(set(b) - set(a)):
        lines.append(f"table {name}: only in the second ({len(b[name])} rows)")
    for name in sorted(set(a) & set(b)):
        left, right = Counter(a[name]), Counter(b[name])
        missing = list((left - right).elements())
        extra = list((right - left).elements())
        if not missing and not extra:
            continue
        columns = getattr(a, "columns", {}).get(name) or getattr(b, "columns", {}).get(name)
        header = f"table {name}: {len(a[name])} vs {len(b[name])} rows"
        if columns:
            header += f" ({', '.join(columns)})"
        lines.append(header)
        for sign, rows in (("-", missing), ("+", extra)):
            for row in _sorted(rows)[:limit]:
                lines.append(f"  {sign} {row!r}")
            if len(rows) > limit:
                lines.append(f"  {sign} ... {len(rows) - limit} more")
    return "\n".join(lines)
