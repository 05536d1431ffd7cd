"""The tracking writer: events from the Redis Stream shards into Postgres, exactly once.

    python -m api.tracking.writer [--consumer NAME] [--batch 2000] [--block-ms 1000]

    writer = Writer(WriterConfig.from_settings(Settings(), consumer="w1"))
    writer.run()      # until stop(), SIGTERM or SIGINT
    writer.drain()    # until the streams have nothing left for it (tests, benchmarks)

Several writers share the consumer group `writers` on every shard stream. Each loop takes
one batch (up to `batch` entries per stream): first the entries delivered to this consumer
and never acknowledged (a previous life of it crashed), then, every `claim_every_seconds`,
entries other consumers have held longer than `claim_idle_ms` (XAUTOCLAIM: a dead writer's
batch), then new ones. The rate rules are counted in Redis first (below): `rate_ip` (events
per truncated IP prefix per minute above a limit), then `rate_publisher` (per publisher per
minute). Then ONE Postgres transaction:

1. COPY into a temporary staging table;
2. `duplicate`, for events still valid: `INSERT INTO ad_event_redemptions … ON CONFLICT DO
   NOTHING`; a redemption by the same event (a replayed batch) is not a duplicate of itself;
3. `INSERT INTO ad_events … ON CONFLICT (event_id, occurred_at) DO NOTHING`, and
   `publisher_traffic_daily` += what that insert returned, so a replay counts nothing twice.

A batch read as new (the common case) takes a shorter way to the same rows (`_store_fresh`):
its redemptions and its events are COPYed straight into their tables, and any sign that
some were stored before (a unique violation) sends it back the way above.

After the commit, the billing of every stored event that is not verified but whose entry
says the intake billed it is taken back once (the `unbilled` marker, SET NX, in the same
script as the DECRBY of `billed` and of the epoch's spend); then the entries are
acknowledged and deleted. Nothing is acknowledged before its commit: with Postgres down the
writer backs off and retries the same batch, and a writer killed mid-batch leaves its
entries pending for its next life or another writer.

Event ids are `<shard>:<stream entry id>`: entry ids are unique within one stream only, and
two shards can hand out the same id in the same millisecond.

Entries of both stream versions (`api.tracking.stream`) are read and stored alike: version 2
(packed) as the intake appends it now, version 1 (every field by name) left in a stream by
an API from before. A writer from before version 2 cannot read version 2: upgrade the
writers before the API.

Rate counting lives in Redis: a counter per (scope, value, minute) that every writer and
every batch shares (a hash field per counter, added to once per batch, in one script per
hash slot); the
events of a counter in a batch take the ordinals after its count, earliest first, and those
beyond the limit are rejected. A writer keeps the decisions of the batch it holds, so a
batch it retries through a Postgres outage is not counted again. Entries re-read after a
crash (their writer's or another's) are counted again: a crash can count one batch twice,
erring toward rejecting, never toward billing more. (Exact replay-proof counting needs a
record per event — a hash field or a Postgres row per event and prefix — which cost more
than the rest of the writer together; a Postgres table also needs a row lock per prefix in
the batch transaction.) Every event counts toward a rate, valid or not: the limit is on the
traffic a prefix or a publisher sends.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import Any

import msgspec
import psycopg
import psycopg.errors
import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.core.settings import Settings
from api.tracking import partitions
from api.tracking.stream import DEFAULT_SHARDS, GROUP, PACKED, PACKED_FIELDS, Keys, stream_keys
from observe import logs, metrics

logger = logging.getLogger("api.tracking.writer")  # also when run as __main__

# defaults of the writer's rules when a config is built by hand (the settings
# `tracking_rate_ip_per_minute` and `tracking_rate_publisher_per_minute`; 0 = no limit)
RATE_IP_PER_MINUTE = 300
RATE_PUBLISHER_PER_MINUTE = 30_000
RATE_TTL_SECONDS = 600  # how long a minute's rate decisions are kept after their last use
UNBILLED_TTL_SECONDS = 7 * 86_400  # the take-back marker outlives any replay of its entry
CLAIM_IDLE_MS = 60_000
MAX_BACKOFF_SECONDS = 10.0

WRITER_REASONS = ("rate_ip", "rate_publisher", "duplicate")
DAY_MS = 86_400_000
MINUTE_MS = 60_000
EARLIEST_MS, LATEST_MS = 946_684_800_000, 253_402_300_799_999  # years 2000 to 9999
LATEST_S = 253_402_300_799  # the last second Python's datetime holds
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DIGITS = {"chain_id": 9, "campaign_id": 18, "served_at": 12, "bid": 78, "price": 78}

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS tracking_staging (
    event_id text NOT NULL, occurred_ms bigint NOT NULL, kind text NOT NULL, reason text,
    chain_id integer NOT NULL, serve_id text, campaign_id bigint, slot_id text,
    publisher text, token text, bid_model text, bid numeric, price numeric NOT NULL,
    served_s bigint, ip_prefix text, visitor text, device text, geo text,
    billed boolean NOT NULL
) ON COMMIT DELETE ROWS
"""
COPY = (
    "COPY tracking_staging (event_id, occurred_ms, kind, reason, chain_id, serve_id,"
    " campaign_id, slot_id, publisher, token, bid_model, bid, price, served_s, ip_prefix,"
    " visitor, device, geo, billed) FROM STDIN"
)
# the first valid event of each token redeems it; the others (and events whose token another
# batch redeemed) are duplicates, except a replay of the very event that redeemed it. (Shaped
# so the planner hashes this batch's redemptions and probes the table's index only for the
# few losers: a NOT EXISTS over the CTE was a nested loop, quadratic in the batch.)
REDEEM = """
WITH candidates AS (
    SELECT DISTINCT ON (serve_id, kind) serve_id || ':' || kind AS token_id, event_id, occurred_ms
    FROM tracking_staging
    WHERE reason IS NULL AND serve_id IS NOT NULL
    ORDER BY serve_id, kind, occurred_ms, event_id
), redeemed AS (
    INSERT INTO ad_event_redemptions (token_id, event_id, redeemed_at)
    SELECT token_id, event_id, timestamptz 'epoch' + occurred_ms * interval '1 millisecond'
    FROM candidates ORDER BY token_id
    ON CONFLICT (token_id) DO NOTHING
    RETURNING event_id
), losers AS (
    SELECT event_id, serve_id || ':' || kind AS token_id
    FROM tracking_staging
    WHERE reason IS NULL AND serve_id IS NOT NULL
      AND event_id NOT IN (SELECT event_id FROM redeemed)
), duplicates AS (
    SELECT l.event_id FROM losers l
    WHERE NOT EXISTS (
        SELECT 1 FROM ad_event_redemptions r
        WHERE r.token_id = l.token_id AND r.event_id = l.event_id
    )
)
UPDATE tracking_staging s SET reason = 'duplicate'
FROM duplicates d WHERE s.event_id = d.event_id
"""
# store the events; count only the newly stored ones into the daily traffic; return how many
# were stored and verified, and the stored ones the intake billed that are not verified
INSERT = """
WITH inserted AS (
    INSERT INTO ad_events (event_id, occurred_at, kind, verified, reason, chain_id, serve_id,
        campaign_id, slot_id, publisher, token, bid_model, bid, price, served_at, ip_prefix,
        visitor, device, geo)
    SELECT event_id, timestamptz 'epoch' + occurred_ms * interval '1 millisecond', kind,
        reason IS NULL, reason, chain_id, serve_id, campaign_id, slot_id, publisher, token,
        bid_model, bid, price, to_timestamp(served_s), ip_prefix, visitor, device, geo
    FROM tracking_staging
    ON CONFLICT (event_id, occurred_at) DO NOTHING
    RETURNING event_id, occurred_at, publisher, verified
), traffic AS (
    INSERT INTO publisher_traffic_daily AS t (wallet, day, events, verified)
    SELECT publisher, (occurred_at AT TIME ZONE 'UTC')::date, count(*),
        count(*) FILTER (WHERE verified)
    FROM inserted WHERE publisher IS NOT NULL
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (wallet, day) DO UPDATE
    SET events = t.events + EXCLUDED.events, verified = t.verified + EXCLUDED.verified
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM inserted),
    (SELECT count(*) FROM inserted WHERE verified),
    (SELECT count(*) FROM traffic),
    ARRAY(
        SELECT i.event_id FROM inserted i JOIN tracking_staging s USING (event_id)
        WHERE s.billed AND NOT i.verified
    )
"""
# the fresh way (`Writer._store_fresh`): a batch of events none of which is stored yet
# the batch's first valid event per token redeems it: COPYed straight into the table when
# no token of the batch was redeemed before (the rule); else (a savepoint back) through a
# staging table and INSERT … ON CONFLICT DO NOTHING RETURNING the events that did
COPY_REDEMPTIONS = "COPY ad_event_redemptions (token_id, event_id, redeemed_at) FROM STDIN"
REDEEM_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS tracking_redeem (
    token_id text NOT NULL, event_id text NOT NULL, redeemed_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
COPY_REDEEM = "COPY tracking_redeem (token_id, event_id, redeemed_at) FROM STDIN"
REDEEM_FRESH = """
INSERT INTO ad_event_redemptions (token_id, event_id, redeemed_at)
SELECT token_id, event_id, redeemed_at FROM tracking_redeem ORDER BY token_id
ON CONFLICT (token_id) DO NOTHING
RETURNING event_id
"""
COPY_EVENTS = (
    "COPY ad_events (event_id, occurred_at, kind, verified, reason, chain_id, serve_id,"
    " campaign_id, slot_id, publisher, token, bid_model, bid, price, served_at, ip_prefix,"
    " visitor, device, geo) FROM STDIN"
)
TRAFFIC_FRESH = """
INSERT INTO publisher_traffic_daily AS t (wallet, day, events, verified)
SELECT * FROM unnest(%s::varchar[], %s::date[], %s::bigint[], %s::bigint[])
ON CONFLICT (wallet, day) DO UPDATE
SET events = t.events + EXCLUDED.events, verified = t.verified + EXCLUDED.verified
"""
# events of this batch stored before (a replay: the batch was committed, then its writer
# died or lost the answer) that the intake billed and that are not verified; one index
# probe per event, in its day's partition
REPLAYED = """
SELECT s.event_id FROM tracking_staging s, LATERAL (
    SELECT e.verified FROM ad_events e
    WHERE e.event_id = s.event_id
      AND e.occurred_at = timestamptz 'epoch' + s.occurred_ms * interval '1 millisecond'
    LIMIT 1
) e
WHERE s.billed AND NOT e.verified
"""

# KEYS: one counter hash of the slot (for routing: every hash it names shares its tag).
# ARGV: ttl (s), the hashes' common prefix, the limit, then three arguments per minute: the
# minute, its counters' values (each ended by a newline) and what to add to each (spaced).
# Adds to field <value> of hash <prefix><minute>; returns, for the counters that pass the
# limit, their position among the call's counters (from 1) and their count before, flat. (So
# the answer is as long as the rejections, not the batch. Thousands of distinct prefixes per
# batch cost more to send as a key each, and a HINCRBY each cost Redis about twice one HMGET
# and one HSET of up to a thousand fields.)
RATE_SCRIPT = """
local over, at, limit = {}, 0, tonumber(ARGV[3])
for a = 4, #ARGV, 3 do
    local key = ARGV[2] .. ARGV[a]
    local names, adds, now = {}, {}, {}
    for value in string.gmatch(ARGV[a + 1], '([^\\n]*)\\n') do names[#names + 1] = value end
    for n in string.gmatch(ARGV[a + 2], '%d+') do adds[#adds + 1] = tonumber(n) end
    for i = 1, #names, 1000 do
        local last = math.min(i + 999, #names)
        local before = redis.call('HMGET', key, unpack(names, i, last))
        local set = {}
        for j = i, last do
            local name = names[j]  -- named twice (two values with one field name): counts twice
            local count = now[name] or tonumber(before[j - i + 1]) or 0
            local after = count + adds[j]
            if after > limit then
                over[#over + 1] = at + j
                over[#over + 1] = count
            end
            now[name] = after
            set[#set + 1] = name
            set[#set + 1] = after
        end
        redis.call('HSET', key, unpack(set))
    end
    redis.call('EXPIRE', key, ARGV[1])
    at = at + #names
end
return over
"""

# KEYS: a stream. ARGV: group, '1' to delete the entries, then the ids to acknowledge, in
# the order read (ascending). Deleting is trimming: every entry older than the group's oldest
# pending one was delivered and acknowledged, so XTRIM MINID takes them all at once (an XDEL
# per entry cost Redis more than the rest of the acknowledgement); acknowledged entries at or
# after that one (another consumer's batch in flight is older) are deleted one by one. With
# nothing pending, the last id acknowledged is the floor, and is deleted itself.
ACK_SCRIPT = """
redis.replicate_commands()
local n = #ARGV
for i = 3, n, 1000 do
    redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, math.min(i + 999, n)))
end
if ARGV[2] ~= '1' or n < 3 then return n - 2 end
local function key(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms) or 0, tonumber(seq) or 0
end
local function before(a, b)  -- id a older than id b
    local am, as = key(a)
    local bm, bs = key(b)
    return am < bm or (am == bm and as < bs)
end
local floor = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
if not floor then floor = ARGV[n] end
redis.call('XTRIM', KEYS[1], 'MINID', floor)
-- the ids not older than the floor (a binary search: they are ascending), deleted one by one
local lo, hi = 3, n + 1
while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(ARGV[mid], floor) then lo = mid + 1 else hi = mid end
end
for i = lo, n, 1000 do
    redis.call('XDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, n)))
end
return n - 2
"""

# an entry's values as the writer holds them, whichever its version
ENTRY_VALUES = ("id", "verdict", "billed", "epoch", *PACKED_FIELDS)
VALUE_AT = {name: i for i, name in enumerate(ENTRY_VALUES)}
# a version 2 entry's `v2`: exactly the values of PACKED_FIELDS, strings
_READ_PACKED = msgspec.json.Decoder(tuple.__class_getitem__((str,) * len(PACKED_FIELDS)))


_Counter = tuple[str | None, int]  # a rate counter: the value it counts (None: none), minute


def _raw(response: Any, **_options: Any) -> Any:
    """XREADGROUP's answer as hiredis parsed it: redis-py's own parsing makes a dict per
    entry, which cost more than Postgres takes to store it."""
    return response


# KEYS: the event's unbilled marker, the campaign's billed, [the serve epoch's spend].
# ARGV: price, marker ttl (s). Takes the price back once.
UNBILL_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('DECRBY', KEYS[2], ARGV[1])
    if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
        redis.call('DECRBY', KEYS[3], ARGV[1])  -- keeps its TTL; a gone epoch is left gone
    end
    return 1
end
return 0
"""


@dataclass
class WriterConfig:
    """How a writer runs; `from_settings` fills it from the environment (`BUZZER_*`)."""

    database_url: str
    redis_url: str
    chain_id: int = 1337
    shards: int = DEFAULT_SHARDS
    consumer: str = ""
    batch: int = 2000
    block_ms: int = 1000
    claim_idle_ms: int = CLAIM_IDLE_MS
    claim_every_seconds: float = 5.0
    rate_ip_per_minute: int = RATE_IP_PER_MINUTE
    rate_publisher_per_minute: int = RATE_PUBLISHER_PER_MINUTE
    rate_ttl_seconds: int = RATE_TTL_SECONDS
    unbilled_ttl_seconds: int = UNBILLED_TTL_SECONDS
    log_every: int = 100  # batches between progress lines
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    delete_acked: bool = True
    read_ahead: bool = True  # read and judge the next batch while Postgres stores one

    def __post_init__(self) -> None:
        if not self.consumer:
            self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WriterConfig:
        values: dict[str, Any] = {
            "database_url": settings.database_url,
            "redis_url": settings.redis_url,
            "chain_id": settings.chain_id,
            "shards": settings.tracking_shards,
            "rate_ip_per_minute": settings.tracking_rate_ip_per_minute,
            "rate_publisher_per_minute": settings.tracking_rate_publisher_per_minute,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(slots=True)
class Entry:
    """One stream entry as read: its shard, stream key, id, and either its fields by name
    (a version 1 entry, or one read by redis-py) or its values in ENTRY_VALUES order (a
    version 2 entry as the intake appends it). An entry deleted meanwhile has neither."""

    shard: int
    stream: str
    entry_id: str
    fields: dict[str, str] | None = None
    fresh: bool = False  # read with ">": never delivered before (a hint, see `_store`)
    values: tuple[str, ...] | None = None
    clean: bool = False  # no value holds a character COPY escapes, nor NUL (`_copy_text`)

    def __post_init__(self) -> None:
        if self.values is None and self.fields:  # by name: its values, whatever its version
            self.values = _values_of(self.entry_id, self.fields)

    @property
    def event_id(self) -> str:
        return f"{self.shard}:{self.entry_id}"

    @property
    def live(self) -> bool:
        return self.values is not None

    def value(self, name: str) -> str:
        return "" if self.values is None else self.values[VALUE_AT[name]]

    def as_fields(self) -> dict[str, str]:
        """The entry's fields as read (by name; a version 2 entry as the intake appends it,
        unpacked)."""
        if self.fields is not None or self.values is None:
            return dict(self.fields or {})
        return dict(zip(ENTRY_VALUES[1:], self.values[1:], strict=True))


@dataclass
class Batch:
    """Entries read and judged: their events and staging rows (reasons after the rates)."""

    entries: Sequence[Entry]
    events: list[Event]
    rows: list[tuple[Any, ...]]


@dataclass(slots=True)
class Event:
    """What the writer needs of an entry beyond its staging row."""

    entry: Entry
    occurred_ms: int
    reason: str | None
    billed: bool
    campaign_id: int | None
    publisher: str | None
    ip_prefix: str | None
    event_id: str


def _digits(value: str, name: str) -> str | None:
    return value if value and value.isdigit() and len(value) <= MAX_DIGITS[name] else None


def _text(value: str) -> str | None:
    if not value:
        return None
    return value.replace("\x00", "") if "\x00" in value else value


NULL = "\\N"  # COPY's text for null


def _copy_text(value: str) -> str:
    """A value as COPY's text format takes it."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _entry_ms(entry_id: str) -> int:
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


def _values_of(entry_id: str, fields: dict[str, str]) -> tuple[str, ...]:
    """An entry's values in ENTRY_VALUES order from its fields by name: a version 1 entry's,
    or a version 2 entry's whose `v2` is not as the intake appends it (a `v2` that is
    not an array of as many strings is taken as no values)."""
    packed = fields.get(PACKED)
    if packed is not None:
        try:
            unpacked = json.loads(packed)
        except ValueError:
            unpacked = None
        if (
            isinstance(unpacked, list)
            and len(unpacked) == len(PACKED_FIELDS)
            and all(isinstance(v, str) for v in unpacked)
        ):
            fields = {**fields, **dict(zip(PACKED_FIELDS, unpacked, strict=True))}
    return (entry_id, *(str(fields.get(name, "")) for name in ENTRY_VALUES[1:]))


def stage(entry: Entry, chain_id: int) -> tuple[Event, tuple[Any, ...]]:
    """The staging row of an entry, made safe for COPY whatever the entry holds: numbers
    that do not parse become null (price 0), a missing receive time is the entry id's."""
    (
        _, verdict, billed_flag, _, kind, received, chain, serve, campaign, slot, publisher,
        token, bid_model, bid, price, served_at, prefix, visitor, device, geo,
    ) = entry.values or _values_of(entry.entry_id, {})  # fmt: skip
    if not entry.clean:  # the text values without NUL (the numbers are checked as they are)
        verdict, kind, serve, slot, publisher, token, bid_model, prefix, visitor, device, geo = (
            _text(v) or ""
            for v in (verdict, kind, serve, slot, publisher, token, bid_model, prefix, visitor,
                      device, geo)
        )  # fmt: skip
    occurred_ms = int(received) if received.isdigit() and len(received) <= 15 else 0
    if not EARLIEST_MS <= occurred_ms <= LATEST_MS:
        occurred_ms = _entry_ms(entry.entry_id)  # when Redis appended it
    digits = MAX_DIGITS
    campaign_id = (
        campaign if campaign.isdigit() and len(campaign) <= digits["campaign_id"] else None
    )
    wallet = publisher.lower() or None  # each text value: '' is null
    ip_prefix = prefix or None
    serve_id = serve or None
    billed = billed_flag == "1"
    event_id = f"{entry.shard}:{entry.entry_id}"
    event = Event(
        entry,
        occurred_ms,
        verdict or None,
        billed,
        int(campaign_id) if campaign_id is not None else None,
        wallet,
        ip_prefix,
        event_id,
    )
    row = (
        event_id,
        occurred_ms,
        kind,
        None,  # reason: filled once the writer's rules ran
        (chain if chain.isdigit() and len(chain) <= digits["chain_id"] else None) or chain_id,
        serve_id,
        campaign_id,
        slot or None,
        wallet,
        token or None,
        bid_model or None,
        bid if bid.isdigit() and len(bid) <= digits["bid"] else None,
        (price if price.isdigit() and len(price) <= digits["price"] else None) or 0,
        served_at if served_at.isdigit() and len(served_at) <= digits["served_at"] else None,
        ip_prefix,
        visitor or None,
        device or None,
        geo or None,
        billed,
    )
    return event, row


class Writer:
    """One consumer of the group `writers` (see the module docs)."""

    def __init__(self, config: WriterConfig) -> None:
        if not config.database_url:
            raise ValueError("the writer needs DATABASE_URL")
        self.config = config
        self.streams = stream_keys(config.shards)
        self._shard_of = {key: k for k, key in enumerate(self.streams)}
        self._redis: Redis | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._held: deque[Batch] = deque()  # read, judged, not acknowledged yet
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._recovering = True  # read our own pending entries first
        self._last_claim = 0.0
        self._wait_turn = 0  # which stream the next blocking read waits on
        self._claim_cursor: dict[str, str] = {}
        self._days: set[int] = set()
        self._rated: dict[str, str | None] = {}  # event id → reason after the rate rules
        self._failures = 0
        self.stats: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)  # per phase of a batch
        self._window = (time.monotonic(), 0)

    # -- connections --------------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = self._connect_redis()
            self._rate = self._redis.register_script(RATE_SCRIPT)
            self._redis.set_response_callback("XREADGROUP", _raw)
            self._ack_script = self._redis.register_script(ACK_SCRIPT)
            self._unbill = self._redis.register_script(UNBILL_SCRIPT)
            self._ensure_groups(self._redis)
        return self._redis

    def _connect_redis(self) -> Redis:
        timeout = self.config.block_ms / 1000 + 5
        if self.config.redis_url:
            return Redis.from_url(
                self.config.redis_url,
                decode_responses=True,
                encoding_errors="replace",
                socket_connect_timeout=2,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 1),  # the loop backs off itself and watches for stop
            )
        from api.core.redis import connect

        return connect("")  # the embedded Redis the API uses

    def _ensure_groups(self, client: Redis) -> None:
        for key in self.streams:
            try:
                client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @property
    def pg(self) -> psycopg.Connection[Any]:
        if self._pg is None:
            conn = psycopg.connect(
                _libpq(self.config.database_url),
                connect_timeout=5,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                application_name=f"tracking-writer {self.config.consumer}",
            )
            conn.execute(STAGING)
            conn.execute(REDEEM_STAGING)
            conn.commit()
            self._pg = conn
        return self._pg

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._pg is not None:
            self._pg.close()
            self._pg = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def _drop_connections(self, exc: BaseException) -> None:
        if isinstance(exc, psycopg.Error) and self._pg is not None:
            if self._pg.closed or self._pg.broken or isinstance(exc, psycopg.OperationalError):
                self._pg.close()
                self._pg = None
            else:
                self._pg.rollback()
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and self._redis is not None:
            self._redis.close()
            self._redis = None

    # -- the loop -----------------------------------------------------------------------

    def backlog(self) -> dict[str, int]:
        """Each shard stream's entries not stored yet (acknowledged entries are deleted)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.streams:
            pipe.xlen(key)
        return dict(zip(self.streams, map(int, pipe.execute()), strict=True))

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        logger.info(
            "writer %s on %d shard streams, batches of %d",
            self.config.consumer,
            len(self.streams),
            self.config.batch,
        )
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            if self._held:
                left = sum(len(b.entries) for b in self._held)
                logger.info("stopping: %d entries left unacknowledged", left)
            self.close()
            logger.info("writer %s stopped", self.config.consumer)

    def drain(self, idle_reads: int = 1) -> int:
        """Write until `idle_reads` reads in a row find nothing; returns the entries handled."""
        handled, idle = 0, 0
        while idle < idle_reads and not self._stop.is_set():
            n = self.step()
            handled += n
            idle = idle + 1 if n == 0 and not self._held and not self._failures else 0
        return handled

    def step(self) -> int:
        """Write the oldest batch held (reading one if none is) and acknowledge it; returns
        the number of entries acknowledged. While Postgres stores a batch, the next one is
        read and judged (`read_ahead`). Failures back off and keep the batches held."""
        try:
            if not self._held:
                read_at = time.monotonic()
                entries = self._read(self.config.block_ms)
                self.seconds["read"] += time.monotonic() - read_at
                if not entries:
                    return 0
                self._held.append(self._prepare(entries))
            batch = self._held[0]
            stored: Future[int] | None = None
            ahead_error: BaseException | None = None
            if self.config.read_ahead and len(self._held) == 1 and not self._recovering:
                stored = self._pool.submit(self._commit, batch)
                try:
                    read_at = time.monotonic()
                    entries = self._read(None)
                    self.seconds["read"] += time.monotonic() - read_at
                    if entries:
                        self._held.append(self._prepare(entries))
                except BaseException as exc:  # raised once the batch being stored is done
                    ahead_error = exc
            self._finish(batch, stored)
            self._held.popleft()
            self._failures = 0
            if ahead_error is not None:
                raise ahead_error
            return len(batch.entries)
        except (redis.RedisError, psycopg.Error, OSError) as exc:
            self._failures += 1
            delay = min(self.config.max_backoff_seconds, 0.2 * 2 ** min(self._failures, 6))
            logger.warning(
                "writer %s: %s: %s; retrying in %.1f s (%d entries kept)",
                self.config.consumer,
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                delay,
                sum(len(b.entries) for b in self._held),
            )
            self._drop_connections(exc)
            self._days.clear()
            self._recovering = True
            self._stop.wait(delay)
            return 0

    # -- reading ------------------------------------------------------------------------

    def _read(self, block: int | None) -> list[Entry]:
        client = self.redis
        if self._recovering:
            entries = self._xreadgroup(client, "0", block=None)
            if entries:
                return entries
            self._recovering = False
        if time.monotonic() - self._last_claim >= self.config.claim_every_seconds:
            self._last_claim = time.monotonic()
            entries = self._claim(client)
            if entries:
                return entries
        return self._xreadgroup(client, ">", block=block)

    def _xreadgroup(self, client: Redis, start: str, block: int | None) -> list[Entry]:
        """Entries of every stream from `start` ('0': our pending ones, '>': new ones);
        when there are no new ones, waits up to `block` ms for some."""
        fresh = start == ">"
        try:
            pipe = client.pipeline(transaction=False)
            for key in self.streams:
                pipe.xreadgroup(GROUP, self.config.consumer, {key: start}, count=self.config.batch)
            entries = []
            for reply in pipe.execute():
                entries.extend(self._unpack(reply, fresh))
            if entries or block is None:
                return entries
            # nothing ready: wait on one stream at a time, in turn (a blocking read of several
            # streams names keys of several hash slots, which Redis Cluster refuses), for a
            # share of `block`, so an entry on any shard waits at most about `block` ms
            key = self.streams[self._wait_turn % len(self.streams)]
            self._wait_turn += 1
            reply = client.xreadgroup(
                GROUP,
                self.config.consumer,
                {key: start},
                count=self.config.batch,
                block=max(10, block // len(self.streams)),
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_groups(client)  # Redis lost its data: start over
            return []
        entries.extend(self._unpack(reply, fresh))
        return entries

    def _claim(self, client: Redis) -> list[Entry]:
        entries: list[Entry] = []
        for key in self.streams:
            cursor = self._claim_cursor.get(key, "0-0")
            reply = client.xautoclaim(
                key,
                GROUP,
                self.config.consumer,
                min_idle_time=self.config.claim_idle_ms,
                start_id=cursor,
                count=self.config.batch,
            )
            self._claim_cursor[key] = reply[0]
            claimed = self._entries(key, reply[1])
            if claimed:
                logger.info("claimed %d idle entries of %s", len(claimed), key)
            entries.extend(claimed)
            if len(entries) >= self.config.batch:
                break
        return entries

    def _unpack(self, reply: Any, fresh: bool) -> list[Entry]:
        """The entries of an XREADGROUP answer as hiredis parses it ([[stream, entries]], or
        {stream: entries} over RESP3). A version 2 entry as the intake appends it is taken
        from its `v2` array; any other (version 1, a broken `v2`) by its fields' names."""
        entries: list[Entry] = []
        decode = _READ_PACKED.decode
        for stream, messages in reply.items() if isinstance(reply, dict) else reply or []:
            stream = str(stream)
            shard = self._shard_of[stream]
            for entry_id, f in messages:
                if (
                    f is not None
                    and len(f) == 8
                    and f[0] == "verdict"
                    and f[2] == "billed"
                    and f[4] == "epoch"
                    and f[6] == PACKED
                ):
                    packed, verdict = f[7], f[1]
                    try:
                        values = decode(packed)
                    except msgspec.DecodeError:  # not an array of as many strings
                        pass
                    else:
                        # JSON escapes every character COPY would (and NUL): with no escape
                        # in the array (nor in the verdict), its values go into COPY as they are
                        clean = "\\" not in packed and (
                            not verdict or (verdict.isprintable() and "\\" not in verdict)
                        )
                        values = (entry_id, verdict, f[3], f[5], *values)
                        entries.append(Entry(shard, stream, entry_id, None, fresh, values, clean))
                        continue
                entries.extend(self._entries(stream, [(entry_id, f)], fresh))
        return entries

    def _entries(self, stream: str, messages: Iterable[Any], fresh: bool = False) -> list[Entry]:
        shard = self._shard_of[stream]
        entries = []
        for entry_id, fields in messages:
            if isinstance(fields, list):  # [field, value, ...]
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            entries.append(Entry(shard, stream, entry_id, fields or {}, fresh))
        return entries

    # -- writing ------------------------------------------------------------------------

    def write(self, entries: Sequence[Entry]) -> None:
        """Write one batch and acknowledge it (safe to call again with the same entries)."""
        self._finish(self._prepare(entries), None)

    def _prepare(self, entries: Sequence[Entry]) -> Batch:
        """Stage the entries' rows and apply the rate rules (Redis)."""
        started = time.monotonic()
        live = [e for e in entries if e.live]  # an entry deleted meanwhile has no fields
        staged = [stage(e, self.config.chain_id) for e in live]
        events = [event for event, _ in staged]
        judged = time.monotonic()
        self.seconds["stage"] += judged - started
        reasons = self._rate_reasons(events)
        rows = [  # a staged row's reason is null: most keep it
            row if reason is None else (*row[:3], reason, *row[4:])
            for reason, (_, row) in zip(reasons, staged, strict=True)
        ]
        self.seconds["rate"] += time.monotonic() - judged
        return Batch(entries, events, rows)

    def _commit(self, batch: Batch) -> int:
        """Store the batch, then take back the billing owed and acknowledge its entries:
        never before the commit. Runs in the store thread when reading ahead, so the
        acknowledgement of one batch overlaps the reading of the next. Returns how many
        billings were taken back."""
        unbill = self._store(batch.rows, batch.events)
        started = time.monotonic()
        by_id = {event.event_id: event for event in batch.events}
        taken_back = self._take_back([by_id[event_id] for event_id in unbill])
        self._ack(batch.entries)
        self.seconds["ack"] += time.monotonic() - started
        return taken_back

    def _finish(self, batch: Batch, stored: Future[int] | None) -> None:
        """Commit the batch (or wait for its commit running in the background)."""
        try:
            taken_back = stored.result() if stored is not None else self._commit(batch)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            if isinstance(exc, psycopg.errors.CheckViolation):
                raise  # no partition for a day we thought had one (dropped?): retried
            self._refused(batch.entries, exc)
            return
        for entry in batch.entries:
            self._rated.pop(entry.event_id, None)
        self.stats["batches"] += 1
        self.stats["events"] += len(batch.entries)
        metrics.EVENTS_STORED.inc(len(batch.entries))
        self.stats["taken_back"] += taken_back
        self._progress()

    def _refused(self, entries: Sequence[Entry], exc: BaseException) -> None:
        """Postgres refused the batch: write it in halves, down to the entry it refuses."""
        self.pg.rollback()
        if len(entries) == 1:
            self._dead_letter(entries[0], exc)
            return
        logger.warning("batch of %d refused (%s): writing it in halves", len(entries), exc)
        half = len(entries) // 2
        self.write(entries[:half])
        self.write(entries[half:])

    def _rate_reasons(self, events: list[Event]) -> list[str | None]:
        """Each event's reason after the rate rules. Counted once per event by this writer:
        a batch it retries (Postgres down) reuses the decisions it took."""
        rated = self._rated
        fresh = [e for e in events if e.event_id not in rated]
        if fresh:
            rated.update(self._count_rates(fresh))
        return [rated[e.event_id] for e in events]

    def _count_rates(self, events: list[Event]) -> dict[str, str | None]:
        reasons = {e.event_id: e.reason for e in events}
        scopes = (
            ("rate_ip", "ip", self.config.rate_ip_per_minute, attrgetter("ip_prefix")),
            (
                "rate_publisher",
                "pub",
                self.config.rate_publisher_per_minute,
                attrgetter("publisher"),
            ),
        )
        minutes = [event.occurred_ms // MINUTE_MS for event in events]
        pipe = self.redis.pipeline(transaction=False)
        # per script call: its rule, limit, how to tell an event's value, and its counters
        calls: list[tuple[str, int, Callable[[Event], str | None], list[_Counter]]] = []
        shards = self.config.shards
        for reason, scope, limit, value_of in scopes:
            if limit <= 0:
                continue
            # (value, minute) → its events in the batch
            counters = Counter(zip(map(value_of, events), minutes, strict=True))
            # slot → minute → (its counters' field names, their adds, their keys)
            slots: dict[int, dict[int, tuple[list[str], list[int], list[_Counter]]]] = {}
            for counter, n in counters.items():
                value, minute = counter
                if value is None:
                    continue
                slot = zlib.crc32(value.encode()) % shards
                hashes = slots.get(slot)
                if hashes is None:
                    hashes = slots[slot] = {}
                held = hashes.get(minute)
                if held is None:
                    held = hashes[minute] = ([], [], [])
                held[0].append(value if "\n" not in value else _name(value))
                held[1].append(n)
                held[2].append(counter)
            for slot, hashes in slots.items():
                prefix = f"buzzer:{{b{slot}}}:rate:{scope}:"
                args: list[Any] = [self.config.rate_ttl_seconds, prefix, limit]
                keys: list[_Counter] = []
                for minute, (names, adds, held_keys) in hashes.items():
                    args.append(minute)
                    args.append("\n".join(names) + "\n")
                    args.append(" ".join(map(str, adds)))
                    keys.extend(held_keys)
                self._rate(keys=[f"{prefix}{next(iter(hashes))}"], args=args, client=pipe)
                calls.append((reason, limit, value_of, keys))
        if not calls:
            return reasons
        ordered: list[tuple[Event, int]] = []  # earliest first, read order on ties
        for (reason, limit, value_in, keys), over in zip(calls, pipe.execute(), strict=True):
            if not over:
                continue
            if not ordered:  # sorted only when some counter passes its limit
                ordered = sorted(
                    zip(events, minutes, strict=True), key=lambda pair: pair[0].occurred_ms
                )
            # the counters past the limit → their count before this batch's events
            before_of = {keys[int(over[i]) - 1]: int(over[i + 1]) for i in range(0, len(over), 2)}
            ordinal: dict[_Counter, int] = {}
            for event, minute in ordered:
                counter = (value_in(event), minute)
                before = before_of.get(counter)
                if before is None:
                    continue
                k = ordinal.get(counter, 0)
                ordinal[counter] = k + 1
                if before + k >= limit and reasons[event.event_id] is None:
                    reasons[event.event_id] = reason
                    metrics.EVENTS_REJECTED.labels(event.entry.value("kind"), reason).inc()
        return reasons  # the IP rule is applied first: an event over both keeps rate_ip

    def _store(self, rows: list[tuple[Any, ...]], events: list[Event]) -> list[str]:
        """The batch's Postgres transaction; the stored events whose billing is owed back.
        Runs in the store thread when reading ahead (it touches Postgres only).

        A batch of entries never delivered before (read with ">") cannot be stored yet, so
        it is COPYed straight into `ad_events` (`_store_fresh`). That is only a hint, not
        trusted: a Redis that lost its last second can hand out again as new what was
        already committed. Then the COPY hits the primary key, the transaction (its
        redemptions too) rolls back, and the batch goes the staged way, which lands a
        replay once."""
        if not rows:
            return []
        conn = self.pg
        lap = [time.monotonic()]

        def timed(phase: str) -> None:
            now = time.monotonic()
            self.seconds[phase] += now - lap[0]
            lap[0] = now

        days = {event.occurred_ms // DAY_MS for event in events} - self._days
        if days:
            partitions.ensure(conn, [_day(d) for d in days])
            conn.commit()
            self._days |= days
            timed("partitions")
        if all(event.entry.fresh for event in events) and all(
            row[13] is None or int(row[13]) <= LATEST_S for row in rows
        ):
            try:
                return self._store_fresh(conn, rows, timed, all(e.entry.clean for e in events))
            except psycopg.errors.UniqueViolation:
                self.stats["replayed_fresh"] += 1  # stored before: the staged way below
                logger.info("a batch read as new was stored before: writing it staged")
                timed("insert")
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(COPY) as copy:
                for row in rows:
                    copy.write_row(row)
            timed("copy")
            cur.execute(REDEEM)
            timed("redeem")
            cur.execute(INSERT)
            inserted, verified, _, unbill = cur.fetchone() or (0, 0, 0, [])
            if inserted < len(rows):  # some were stored before: their take-back may be owed
                unbill = [*unbill, *(r[0] for r in cur.execute(REPLAYED))]
            timed("insert")
        timed("commit")
        self.stats["inserted"] += inserted
        self.stats["verified"] += verified
        return list(unbill)

    def _store_fresh(
        self,
        conn: psycopg.Connection[Any],
        rows: list[tuple[Any, ...]],
        timed: Callable[[str], None],
        clean: bool,
    ) -> list[str]:
        """`_store` of a batch none of whose events is stored: redemptions first (the
        batch's first valid event per token), then the events with their final reasons
        COPYed into `ad_events` (raises UniqueViolation if one was stored after all), and
        the daily traffic of exactly those rows. Both COPYs are written as text here: a
        row formatted by psycopg cost twice a join. `clean`: no value needs escaping."""
        if not clean:
            rows = [tuple(_copy_text(v) if type(v) is str else v for v in row) for row in rows]
        at = _Timestamps()
        first: dict[str, tuple[int, str]] = {}  # token id → (occurred_ms, event_id)
        for row in rows:
            if row[3] is None and row[5] is not None:
                token_id = f"{row[5]}:{row[2]}"
                candidate = (row[1], row[0])
                held = first.get(token_id)
                if held is None or candidate < held:
                    first[token_id] = candidate
        unbill: list[str] = []
        traffic: dict[tuple[str, int], list[int]] = {}
        with conn.transaction(), conn.cursor() as cur:
            winners = {event_id for _, event_id in first.values()}
            if first:
                of_ms = at.of_ms
                redemptions = "".join(
                    f"{token_id}\t{event_id}\t{of_ms.get(ms) or at.ms(ms)}\n"
                    for token_id, (ms, event_id) in sorted(first.items())
                )
                try:
                    with conn.transaction(), cur.copy(COPY_REDEMPTIONS) as copy:
                        copy.write(redemptions)
                except psycopg.errors.UniqueViolation:  # a token redeemed before: skip those
                    with cur.copy(COPY_REDEEM) as copy:
                        copy.write(redemptions)
                    cur.execute(REDEEM_FRESH)
                    winners = {r[0] for r in cur.fetchall()}
            timed("redeem")
            verified = 0
            lines = []
            of_ms, of_second = at.of_ms, at.of_second
            for (
                event_id, ms, kind, reason, chain, serve, campaign, slot, publisher, token,
                bid_model, bid, price, served, prefix, visitor, device, geo, billed,
            ) in rows:  # fmt: skip
                if reason is None and serve is not None and event_id not in winners:
                    reason = "duplicate"  # its token was redeemed, not by this event
                lines.append(
                    f"{event_id}\t{of_ms.get(ms) or at.ms(ms)}\t{kind}\t{'f' if reason else 't'}"
                    f"\t{reason or NULL}\t{chain}\t{serve or NULL}\t{campaign or NULL}"
                    f"\t{slot or NULL}\t{publisher or NULL}\t{token or NULL}"
                    f"\t{bid_model or NULL}\t{bid or NULL}\t{price}"
                    f"\t{NULL if served is None else of_second.get(served) or at.second(served)}"
                    f"\t{prefix or NULL}\t{visitor or NULL}\t{device or NULL}\t{geo or NULL}\n"
                )
                if reason is None:
                    verified += 1
                elif billed:
                    unbill.append(event_id)
                if publisher is not None:
                    day = (publisher, ms // DAY_MS)
                    counts = traffic.get(day)
                    if counts is None:
                        traffic[day] = [1, 0 if reason else 1]
                    else:
                        counts[0] += 1
                        counts[1] += reason is None
            with cur.copy(COPY_EVENTS) as copy:
                copy.write("".join(lines))
            timed("copy")
            if traffic:
                keys = sorted(traffic)
                cur.execute(
                    TRAFFIC_FRESH,
                    (
                        [wallet for wallet, _ in keys],
                        [_day(day) for _, day in keys],
                        [traffic[k][0] for k in keys],
                        [traffic[k][1] for k in keys],
                    ),
                )
            timed("insert")
        timed("commit")
        self.stats["inserted"] += len(rows)
        self.stats["verified"] += verified
        return unbill

    def _take_back(self, events: list[Event]) -> int:
        """Take back the billing of events the intake billed and that are stored as not
        verified; the marker makes it once per event whatever happens after."""
        pipe = self.redis.pipeline(transaction=False)
        calls = 0
        for event in events:
            f = event.entry.value
            price = _digits(f("price"), "price")
            if event.campaign_id is None or not f("serve_id") or not price or not int(price):
                continue
            keys = Keys(event.campaign_id, self.config.shards)
            names = [keys.unbilled(f("serve_id"), f("kind")), keys.billed]
            if f("epoch").isdigit():
                names.append(keys.epoch(int(f("epoch"))))
            self._unbill(keys=names, args=[price, self.config.unbilled_ttl_seconds], client=pipe)
            calls += 1
        return sum(pipe.execute()) if calls else 0

    def _ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_stream[entry.stream].append(entry.entry_id)
        pipe = self.redis.pipeline(transaction=False)
        delete = "1" if self.config.delete_acked else "0"
        for stream, ids in by_stream.items():
            self._ack_script(keys=[stream], args=[GROUP, delete, *ids], client=pipe)
        pipe.execute()

    def _dead_letter(self, entry: Entry, exc: BaseException) -> None:
        """Keep an entry Postgres refuses even alone in `<stream>:dead` (same hash slot),
        so it cannot block its shard, and acknowledge it."""
        logger.error("entry %s refused by Postgres (%s): dead-lettered", entry.event_id, exc)
        self.pg.rollback()
        letter: dict[Any, Any] = {**entry.as_fields(), "error": str(exc)[:500]}
        self.redis.xadd(f"{entry.stream}:dead", letter)
        self._ack([entry])
        self._rated.pop(entry.event_id, None)
        self.stats["dead"] += 1

    def _progress(self) -> None:
        batches = self.stats["batches"]
        if self.config.log_every and batches % self.config.log_every == 0:
            since, count = self._window
            now = time.monotonic()
            rate = (self.stats["events"] - count) / max(now - since, 1e-9)
            logger.info(
                "%d events in %d batches (%d stored, %d verified, %d billing taken back); "
                "%.0f events/s; seconds so far by phase: %s",
                self.stats["events"],
                batches,
                self.stats["inserted"],
                self.stats["verified"],
                self.stats["taken_back"],
                rate,
                " ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
            )
            self._window = (now, self.stats["events"])


class _Timestamps:
    """Timestamps as COPY text, exactly the instant the staged way computes in SQL
    (`'epoch' + ms`, `to_timestamp(s)`): psycopg formats a datetime at several times the
    cost of a string, and a batch's events share their seconds. Each text is kept by the
    value it was made of (`of_ms`, `of_second`): a hit is one dict look-up, inlined in the
    loops that write a row per event; a miss calls `ms` or `second`."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}
        self.of_ms: dict[int, str] = {}
        self.of_second: dict[str, str] = {}  # by the second as the entry holds it

    def _second(self, s: int) -> str:
        text = self._seconds.get(s)
        if text is None:
            text = (EPOCH + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")
            self._seconds[s] = text
        return text

    def second(self, s: str) -> str:
        text = self.of_second[s] = f"{self._second(int(s))}+00"
        return text

    def ms(self, ms: int) -> str:
        s, rest = divmod(ms, 1000)
        text = self.of_ms[ms] = f"{self._second(s)}.{rest:03d}+00"
        return text


def tune_gc() -> None:
    """For a writer process: it allocates a few dozen short-lived, acyclic objects per event
    (entries, dicts, rows), and with the default thresholds the cyclic collector ran every
    700 allocations and cost a third of the Python time of reading and staging. Collect
    rarely, and keep what the process holds from its start out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _name(value: str) -> str:
    """A rate counter's field: on one line."""
    return value.replace("\n", "_")


def _day(day_number: int) -> date:
    return datetime.fromtimestamp(day_number * 86_400, UTC).date()


def _libpq(url: str) -> str:
    from migrations import libpq_url

    return libpq_url(url)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m api.tracking.writer",
        description="Write tracked events from the Redis Stream shards into Postgres.",
    )
    parser.add_argument("--consumer", help="consumer name in the group (default host-pid)")
    parser.add_argument("--batch", type=int, default=2000, help="entries per batch and stream")
    parser.add_argument("--block-ms", type=int, default=1000, help="how long a read waits")
    parser.add_argument(
        "--claim-idle-ms",
        type=int,
        default=CLAIM_IDLE_MS,
        help="take over entries another consumer has held this long",
    )
    parser.add_argument("--log-every", type=int, default=100, help="batches per progress line")
    args = parser.parse_args(argv)
    logs.configure("writer")
    config = WriterConfig.from_settings(
        Settings(),
        consumer=args.consumer,
        batch=args.batch,
        block_ms=args.block_ms,
        claim_idle_ms=args.claim_idle_ms,
        log_every=args.log_every,
    )
    writer = Writer(config)

    def stop(signum: int, _frame: Any) -> None:
        logger.info("signal %d: stopping after the current batch", signum)
        writer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tune_gc()
    metrics.serve("writer", metrics.Backlog(writer.backlog))  # scrapes use a pooled connection
    writer.run()


if __name__ == "__main__":
    main()
