"""Postgres side of the indexer: one transaction per block range (raw events, the block
window, projections and the checkpoint together), the reorg rewind, and the leader lock."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from eth_utils import keccak
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql

from chain.decode import Event
from indexer.projections import ALL, Key, Projection, Row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    block_number: int
    block_hash: str
    block_timestamp: int
    finalized_block: int
    head_block: int


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    logs_bloom: str = ""

    @classmethod
    def from_rpc(cls, block: dict[str, Any]) -> BlockHeader:
        return cls(
            number=int(block["number"], 16),
            hash=block["hash"].lower(),
            parent_hash=block["parentHash"].lower(),
            timestamp=int(block["timestamp"], 16),
            logs_bloom=block.get("logsBloom") or "",
        )

    def may_have_logs_of(self, addresses: Sequence[str]) -> bool:
        """The block's bloom filter admits a log from one of `addresses` (false positives
        happen; false negatives do not)."""
        if not self.logs_bloom:
            return True
        bloom = int(self.logs_bloom, 16)
        for address in addresses:
            digest = keccak(bytes.fromhex(address[2:]))
            bits = [((digest[i] << 8) | digest[i + 1]) & 2047 for i in (0, 2, 4)]
            if all(bloom >> bit & 1 for bit in bits):
                return True
        return False


def connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url, autocommit=False)


# ---------------------------------------------------------------- leader lock


@contextmanager
def leader_lock(database_url: str, chain_id: int, on_wait: Any = None) -> Iterator[None]:
    """Hold the indexer's advisory lock for `chain_id` on a dedicated connection for as long
    as the block runs. A second process blocks here and takes over when the first dies (its
    connection closes and Postgres releases the lock)."""
    conn = psycopg.connect(database_url, autocommit=True)
    key = 0x42555A5A00000000 + chain_id  # "BUZZ" + chain id
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (got and got[0]):
            if on_wait:
                on_wait()
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        yield
    finally:
        conn.close()


# ---------------------------------------------------------------- reads


def load_checkpoint(conn: psycopg.Connection[Any], chain_id: int) -> Checkpoint | None:
    row = conn.execute(
        "SELECT block_number, block_hash, block_timestamp, finalized_block, head_block"
        " FROM indexer_checkpoints WHERE chain_id = %s",
        (chain_id,),
    ).fetchone()
    conn.commit()
    return Checkpoint(*row) if row else None


def window_blocks(conn: psycopg.Connection[Any], chain_id: int) -> dict[int, str]:
    rows = conn.execute(
        "SELECT number, hash FROM indexed_blocks WHERE chain_id = %s", (chain_id,)
    ).fetchall()
    conn.commit()
    return {number: block_hash for number, block_hash in rows}


# ---------------------------------------------------------------- the range transaction


def write_range(
    conn: psycopg.Connection[Any],
    chain_id: int,
    events: Sequence[Event],
    headers: Sequence[BlockHeader],
    checkpoint: Checkpoint,
    window: int,
    backfills: Mapping[str, int] | None = None,
    backfill_from: int = 0,
) -> None:
    """Commit one block range: raw events, window blocks, projections, the payment wallets
    whose history is to be read (`backfills`: wallet -> last block, from `backfill_from`)
    and the checkpoint, all or nothing."""
    with conn.transaction():
        if backfills:
            _add_backfills(conn, chain_id, backfills, backfill_from, checkpoint.block_number)
        _insert_events(conn, chain_id, events)
        if headers:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO indexed_blocks (chain_id, number, hash, parent_hash, timestamp)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (chain_id, number) DO UPDATE"
                    " SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash,"
                    " timestamp = EXCLUDED.timestamp",
                    [(chain_id, h.number, h.hash, h.parent_hash, h.timestamp) for h in headers],
                )
        conn.execute(
            "DELETE FROM indexed_blocks WHERE chain_id = %s AND number <= %s",
            (chain_id, checkpoint.block_number - window),
        )
        _apply_forward(conn, chain_id, events)
        _save_checkpoint(conn, chain_id, checkpoint)


_EVENT_COLUMNS = (
    "chain_id, block_number, block_hash, tx_hash, tx_index, log_index,"
    " contract, address, event, subject, args, canonical"
)


def _insert_events(conn: psycopg.Connection[Any], chain_id: int, events: Sequence[Event]) -> None:
    if not events:
        return
    first, last = events[0].block_number, events[-1].block_number
    seen = conn.execute(
        "SELECT 1 FROM chain_events WHERE chain_id = %s AND block_number BETWEEN %s AND %s LIMIT 1",
        (chain_id, first, last),
    ).fetchone()
    if seen is None:  # the usual case going forward: nothing to merge with, copy straight in
        _copy_events(conn, "chain_events", chain_id, events)
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS chain_events_stage"
        " (LIKE chain_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy_events(conn, "chain_events_stage", chain_id, events)
    # a block seen again after a reorg back to it makes its rows canonical again
    conn.execute(
        f"INSERT INTO chain_events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS}"
        " FROM chain_events_stage"
        " ON CONFLICT (chain_id, block_hash, log_index) DO UPDATE SET canonical = true"
    )


def _copy_events(
    conn: psycopg.Connection[Any], table: str, chain_id: int, events: Sequence[Event]
) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({_EVENT_COLUMNS}) FROM STDIN") as copy:
        for e in events:
            copy.write_row(
                (
                    chain_id,
                    e.block_number,
                    e.block_hash,
                    e.tx_hash,
                    e.tx_index,
                    e.log_index,
                    e.contract,
                    e.address,
                    e.name,
                    e.subject,
                    Jsonb(e.args, dumps=json.dumps),
                    True,
                )
            )


def _save_checkpoint(conn: psycopg.Connection[Any], chain_id: int, cp: Checkpoint) -> None:
    conn.execute(
        "INSERT INTO indexer_checkpoints"
        " (chain_id, block_number, block_hash, block_timestamp, finalized_block, head_block)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (chain_id) DO UPDATE SET"
        " block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,"
        " block_timestamp = EXCLUDED.block_timestamp,"
        " finalized_block = EXCLUDED.finalized_block, head_block = EXCLUDED.head_block",
        (
            chain_id,
            cp.block_number,
            cp.block_hash,
            cp.block_timestamp,
            cp.finalized_block,
            cp.head_block,
        ),
    )


def reindex(conn: psycopg.Connection[Any], chain_id: int, events: Sequence[Event]) -> None:
    """Store a range already indexed once more (missing rows are added, none doubled) and
    refold every projection key it touches from the canonical events."""
    with conn.transaction():
        _insert_events(conn, chain_id, events)
        subjects = {e.subject for e in events}
        for projection in ALL:
            keys = {projection.key(e) for e in events if projection.handles(e)}
            if keys:
                refold(conn, chain_id, projection, keys, subjects)


# ---------------------------------------------------------------- projections


def _apply_forward(conn: psycopg.Connection[Any], chain_id: int, events: Sequence[Event]) -> None:
    batch = {(e.tx_hash, e.log_index): e for e in events}
    for projection in ALL:
        mine = [e for e in events if projection.handles(e)]
        if not mine:
            continue
        keys = {projection.key(e) for e in mine}
        rows: dict[Key, Row | None] = dict(_load_rows(conn, chain_id, projection, keys))
        for e in mine:
            key = projection.key(e)
            rows[key] = projection.apply(rows.get(key), e, batch)
        _store_rows(conn, chain_id, projection, rows)


def _key_filter(projection: Projection, keys: Sequence[Key]) -> tuple[str, list[Any]]:
    """`(k1, k2) IN (unnest(arrays))`: one fixed query text whatever the number of keys."""
    table = projection.model.__table__  # type: ignore[attr-defined]
    types = [table.c[f].type.compile(dialect=_DIALECT) for f in projection.key_fields]
    fields = ", ".join(projection.key_fields)
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    params = [[key[i] for key in keys] for i in range(len(projection.key_fields))]
    return f"({fields}) IN (SELECT * FROM unnest({arrays}))", params


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _load_rows(
    conn: psycopg.Connection[Any], chain_id: int, projection: Projection, keys: Iterable[Key]
) -> Iterator[tuple[Key, Row]]:
    ordered = list(keys)
    for start in range(0, len(ordered), 10_000):
        chunk = ordered[start : start + 10_000]
        where, params = _key_filter(projection, chunk)
        cur = conn.execute(
            f"SELECT * FROM {projection.table_name} WHERE chain_id = %s AND {where}",
            [chain_id, *params],
        )
        names = [d.name for d in cur.description or []]
        for values in cur.fetchall():
            row = {n: _py(v) for n, v in zip(names, values, strict=True) if n != "chain_id"}
            yield tuple(row[f] for f in projection.key_fields), row


def _py(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    return value


def _store_rows(
    conn: psycopg.Connection[Any],
    chain_id: int,
    projection: Projection,
    rows: dict[Key, Row | None],
) -> None:
    live = [row for row in rows.values() if row is not None]
    gone = [key for key, row in rows.items() if row is None]
    if gone:
        where, params = _key_filter(projection, gone)
        conn.execute(
            f"DELETE FROM {projection.table_name} WHERE chain_id = %s AND {where}",
            [chain_id, *params],
        )
    if not live:
        return
    columns = list(live[0])
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in projection.key_fields)
    conflict = ", ".join(("chain_id", *projection.key_fields))
    sql = (
        f"INSERT INTO {projection.table_name} (chain_id, {', '.join(columns)})"
        f" VALUES (%s, {', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({conflict}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    )
    with conn.cursor() as cur:
        cur.executemany(
            sql,
            [
                (
                    chain_id,
                    *(Jsonb(row[c]) if isinstance(row[c], dict) else row[c] for c in columns),
                )
                for row in live
            ],
        )


# ---------------------------------------------------------------- payment wallets


def followed_wallets(conn: psycopg.Connection[Any], chain_id: int) -> list[str]:
    """Every wallet some publisher is paid at now."""
    rows = conn.execute(
        "SELECT DISTINCT payment_wallet FROM publishers_onchain WHERE chain_id = %s", (chain_id,)
    ).fetchall()
    conn.commit()
    return [wallet for (wallet,) in rows]


def payment_wallet_limits(conn: psycopg.Connection[Any], chain_id: int) -> dict[str, int | None]:
    """Every wallet a publisher has been paid at, with the last block it was one (None for
    those that still are): what re-indexing the token reads."""
    rows = conn.execute(
        "WITH named AS ("
        " SELECT args->>'payment_wallet' AS wallet, NULL::bigint AS dropped FROM chain_events"
        "  WHERE chain_id = %(c)s AND canonical AND contract = 'PublisherRegistry'"
        "  AND event = 'PublisherRegistered'"
        " UNION ALL SELECT args->>'new_wallet', NULL FROM chain_events"
        "  WHERE chain_id = %(c)s AND canonical AND contract = 'PublisherRegistry'"
        "  AND event = 'PaymentWalletUpdated'"
        " UNION ALL SELECT args->>'previous_wallet', block_number FROM chain_events"
        "  WHERE chain_id = %(c)s AND canonical AND contract = 'PublisherRegistry'"
        "  AND event = 'PaymentWalletUpdated')"
        " SELECT n.wallet, CASE WHEN bool_or(p.payment_wallet IS NOT NULL) THEN NULL"
        "  ELSE max(n.dropped) END"
        " FROM named n LEFT JOIN publishers_onchain p"
        "  ON p.chain_id = %(c)s AND p.payment_wallet = n.wallet"
        " GROUP BY n.wallet",
        {"c": chain_id},
    ).fetchall()
    conn.commit()
    return {wallet: dropped for wallet, dropped in rows}


def publishers_per_wallet(
    conn: psycopg.Connection[Any], chain_id: int, wallets: Iterable[str]
) -> dict[str, int]:
    """How many publishers each of `wallets` pays (absent: none)."""
    rows = conn.execute(
        "SELECT payment_wallet, count(*) FROM publishers_onchain"
        " WHERE chain_id = %s AND payment_wallet = ANY(%s) GROUP BY payment_wallet",
        (chain_id, sorted(wallets)),
    ).fetchall()
    conn.commit()
    return {wallet: int(count) for wallet, count in rows}


def _add_backfills(
    conn: psycopg.Connection[Any],
    chain_id: int,
    backfills: Mapping[str, int],
    first: int,
    created_block: int,
) -> None:
    # a wallet with a job already keeps its progress; the job reaches the later last block
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO payment_backfills"
            " (chain_id, wallet, next_block, last_block, created_block)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (chain_id, wallet) DO UPDATE SET"
            " last_block = GREATEST(payment_backfills.last_block, EXCLUDED.last_block)",
            [
                (chain_id, wallet, first, last, created_block)
                for wallet, last in sorted(backfills.items())
                if last >= first
            ],
        )


@dataclass(frozen=True)
class Backfill:
    wallet: str
    next_block: int
    last_block: int


def pending_backfills(conn: psycopg.Connection[Any], chain_id: int) -> list[Backfill]:
    rows = conn.execute(
        "SELECT wallet, next_block, last_block FROM payment_backfills WHERE chain_id = %s"
        " ORDER BY next_block, last_block, wallet",
        (chain_id,),
    ).fetchall()
    conn.commit()
    return [Backfill(*row) for row in rows]


def write_backfill(
    conn: psycopg.Connection[Any],
    chain_id: int,
    events: Sequence[Event],
    wallets: Sequence[str],
    upto: int,
) -> None:
    """Store a backfilled chunk of the payment token's events (none doubled) with the jobs
    of `wallets` moved past block `upto`, in one transaction: a crash loses nothing."""
    with conn.transaction():
        if events:
            reindex(conn, chain_id, events)
        conn.execute(
            "UPDATE payment_backfills SET next_block = %s"
            " WHERE chain_id = %s AND wallet = ANY(%s) AND next_block <= %s",
            (upto + 1, chain_id, list(wallets), upto),
        )
        conn.execute(
            "DELETE FROM payment_backfills WHERE chain_id = %s AND next_block > last_block",
            (chain_id,),
        )


# ---------------------------------------------------------------- reorgs


def rewind(
    conn: psycopg.Connection[Any], chain_id: int, ancestor: BlockHeader, finalized_block: int
) -> int:
    """Undo everything above `ancestor`: its events stay for audit but turn non-canonical,
    and every projection row they touched is folded again from canonical events.
    Returns the number of orphaned events."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE chain_events SET canonical = false"
            " WHERE chain_id = %s AND canonical AND block_number > %s"
            " RETURNING block_number, block_hash, tx_hash, tx_index, log_index, address,"
            " contract, event, args",
            (chain_id, ancestor.number),
        ).fetchall()
        orphaned = [_event_from_row(r) for r in rows]
        conn.execute(
            "DELETE FROM indexed_blocks WHERE chain_id = %s AND number > %s",
            (chain_id, ancestor.number),
        )
        # jobs asked for by orphaned ranges go (indexing them again asks again); the others
        # read no further than the ancestor (a job extended later may reach beyond it)
        conn.execute(
            "DELETE FROM payment_backfills WHERE chain_id = %s AND created_block > %s",
            (chain_id, ancestor.number),
        )
        conn.execute(
            "UPDATE payment_backfills SET last_block = LEAST(last_block, %s) WHERE chain_id = %s",
            (ancestor.number, chain_id),
        )
        conn.execute(
            "DELETE FROM payment_backfills WHERE chain_id = %s AND next_block > last_block",
            (chain_id,),
        )
        for projection in ALL:
            keys = {projection.key(e) for e in orphaned if projection.handles(e)}
            if keys:
                refold(conn, chain_id, projection, keys, {e.subject for e in orphaned})
        _save_checkpoint(
            conn,
            chain_id,
            Checkpoint(
                ancestor.number,
                ancestor.hash,
                ancestor.timestamp,
                min(finalized_block, ancestor.number),
                ancestor.number,
            ),
        )
    return len(orphaned)


def refold(
    conn: psycopg.Connection[Any],
    chain_id: int,
    projection: Projection,
    keys: set[Key],
    subjects: set[str],
) -> None:
    """Recompute the rows of `keys` from the canonical events of their subjects (of every
    handled event for a projection that scans all)."""
    handled = sorted(projection.handlers)
    by_subject = not projection.scan_all
    cur = conn.execute(
        "SELECT block_number, block_hash, tx_hash, tx_index, log_index, address, contract,"
        " event, args FROM chain_events"
        " WHERE chain_id = %s AND canonical AND (NOT %s OR subject = ANY(%s))"
        " AND (contract, event) IN (" + ", ".join(["(%s, %s)"] * len(handled)) + ")"
        " ORDER BY block_number, tx_index, log_index",
        [chain_id, by_subject, list(subjects), *[part for pair in handled for part in pair]],
    )
    events = [_event_from_row(r) for r in cur.fetchall()]
    batch = _batch_with_neighbours(conn, chain_id, events)
    rows: dict[Key, Row | None] = {key: None for key in keys}
    for e in events:
        key = projection.key(e)
        if key in rows:
            rows[key] = projection.apply(rows[key], e, batch)
    _store_rows(conn, chain_id, projection, rows)


def _batch_with_neighbours(
    conn: psycopg.Connection[Any], chain_id: int, events: Sequence[Event]
) -> dict[tuple[str, int], Event]:
    """The events plus every canonical log of their transactions (handlers may look at the
    next log of the same transaction)."""
    batch = {(e.tx_hash, e.log_index): e for e in events}
    tx_hashes = sorted({e.tx_hash for e in events})
    if tx_hashes:
        cur = conn.execute(
            "SELECT block_number, block_hash, tx_hash, tx_index, log_index, address, contract,"
            " event, args FROM chain_events WHERE chain_id = %s AND canonical"
            " AND tx_hash = ANY(%s)",
            (chain_id, tx_hashes),
        )
        for row in cur.fetchall():
            e = _event_from_row(row)
            batch.setdefault((e.tx_hash, e.log_index), e)
    return batch


def _event_from_row(row: Sequence[Any]) -> Event:
    block_number, block_hash, tx_hash, tx_index, log_index, address, contract, name, args = row
    return Event(
        block_number=block_number,
        block_hash=block_hash,
        tx_hash=tx_hash,
        tx_index=tx_index,
        log_index=log_index,
        address=address,
        contract=contract,
        name=name,
        args=args,
    )
