"""The tracking writer's rules and bookkeeping, on a real Postgres and a Redis of the test's
own: every event stored once with its verdict, duplicates by the redemption table, the rate
rules across writers and batches, billing taken back once, daily traffic equal to the events."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import create_engine

from api.tracking import partitions
from api.tracking import writer as writer_module
from api.tracking.stream import GROUP, Keys, stream_keys
from api.tracking.writer import Entry, Writer, stage
from migrations import libpq_url, sqlalchemy_url
from tests.tracking import writer_fixtures
from tests.tracking.writer_fixtures import (
    SHARDS,
    OwnRedis,
    append,
    event_id,
    make_writer,
    rows,
    tracked,
)

# the fixtures these tests use, by name
tracking_database = writer_fixtures.tracking_database
db = writer_fixtures.db
own_redis = writer_fixtures.own_redis

CAMPAIGN = 7
PRICE = 5


def billed(redis_server: OwnRedis, campaign: int = CAMPAIGN) -> int:
    return int(redis_server.client().get(Keys(campaign, SHARDS).billed) or 0)


def epoch_spend(redis_server: OwnRedis, epoch: int = 3, campaign: int = CAMPAIGN) -> int:
    return int(redis_server.client().get(Keys(campaign, SHARDS).epoch(epoch)) or 0)


def bill(redis_server: OwnRedis, amount: int, campaign: int = CAMPAIGN, epoch: int = 3) -> None:
    """What the intake did for `amount` of billed events."""
    client = redis_server.client()
    keys = Keys(campaign, SHARDS)
    client.incrby(keys.billed, amount)
    client.incrby(keys.epoch(epoch), amount)


def read_batch(writer: Writer) -> list[Entry]:
    """Entries delivered to this writer (its read, without writing them)."""
    return writer._read(None)


def stored(database_url: str) -> dict[str, tuple[bool, str | None]]:
    return {
        eid: (verified, reason)
        for eid, verified, reason in rows(
            database_url, "SELECT event_id, verified, reason FROM ad_events"
        )
    }


def test_every_event_is_stored_once_with_its_verdict(db: str, own_redis: OwnRedis) -> None:
    client = own_redis.client()
    received = datetime(2026, 12, 6, 10, 30, 15, 123000, tzinfo=UTC)
    ms = int(received.timestamp() * 1000)
    good = tracked(received_ms=ms)
    bot = tracked(verdict="bot", billed="0", received_ms=ms)
    click = tracked(
        kind="click", bid_model="cpc", bid=40_000, price=40_000, campaign_id=9, received_ms=ms
    )
    ids = {event_id(e, append(client, e)): e for e in (good, bot, click)}

    assert make_writer(db, own_redis.url).drain() == 3

    events = {
        r[0]: r[1:]
        for r in rows(
            db,
            "SELECT event_id, verified, reason, kind, price, bid, occurred_at, publisher, serve_id"
            " FROM ad_events",
        )
    }
    assert set(events) == set(ids)
    by_serve = {v[7]: v for v in events.values()}
    assert by_serve[good.serve_id][:5] == (True, None, "impression", 5, 5000)
    assert by_serve[good.serve_id][5] == received
    assert by_serve[bot.serve_id][:2] == (False, "bot")
    assert by_serve[click.serve_id][:5] == (True, None, "click", 40_000, 40_000)
    # every entry acknowledged and removed from its stream
    for key in stream_keys(SHARDS):
        assert client.xpending(key, GROUP)["pending"] == 0
        assert client.xlen(key) == 0
    assert rows(db, "SELECT wallet, events, verified FROM publisher_traffic_daily") == [
        (good.publisher, 3, 2)
    ]


def test_entries_another_writer_holds_stay_in_the_stream_until_it_stores_them(
    db: str, own_redis: OwnRedis
) -> None:
    """Acknowledged entries leave their stream; one that another writer read and has not
    stored yet stays there, older or newer than what is acknowledged around it."""
    client = own_redis.client()
    key = stream_keys(SHARDS)[CAMPAIGN % SHARDS]
    for _ in range(2):
        append(client, tracked())
    slow = make_writer(db, own_redis.url, consumer="slow", batch=1)
    held = read_batch(slow)  # the older entry, delivered to `slow`, not stored
    for _ in range(3):
        append(client, tracked())
    fast = make_writer(db, own_redis.url, consumer="fast", batch=2)
    late = read_batch(fast)  # the next two, held by `fast` too
    make_writer(db, own_redis.url, consumer="third").drain()  # stores the last two
    left = [i for i, _ in client.xrange(key)]
    assert left == [e.entry_id for e in held + late]
    fast.write(late)
    assert [i for i, _ in client.xrange(key)] == [held[0].entry_id]
    slow.write(held)
    assert client.xlen(key) == 0 and len(stored(db)) == 5


def test_a_replayed_batch_changes_nothing(db: str, own_redis: OwnRedis) -> None:
    client = own_redis.client()
    events = [tracked() for _ in range(20)] + [tracked(verdict="datacenter", billed="0")]
    for e in events:
        append(client, e)
    bill(own_redis, PRICE * 20)
    writer = make_writer(db, own_redis.url, delete_acked=False, batch=100)
    batch = read_batch(writer)
    writer.write(batch)
    first = stored(db)
    traffic = rows(db, "SELECT wallet, day, events, verified FROM publisher_traffic_daily")

    writer.write(batch)  # e.g. the writer died after its commit, before acknowledging
    make_writer(db, own_redis.url, consumer="other").write(batch)

    assert stored(db) == first
    assert sum(v for v, _ in first.values()) == 20  # not turned into duplicates of themselves
    assert rows(db, "SELECT wallet, day, events, verified FROM publisher_traffic_daily") == traffic
    assert traffic[0][2:] == (21, 20)
    assert billed(own_redis) == PRICE * 20


def test_entries_handed_out_as_new_again_after_they_were_stored_land_once(
    db: str, own_redis: OwnRedis
) -> None:
    """A batch read with ">" is COPYed straight into ad_events; a Redis that lost its last
    second (the read and the acknowledgement, not the entries) hands the committed entries
    out as new again: they must go the staged way, not turn into duplicates of themselves."""
    client = own_redis.client()
    dup = tracked(serve_id="serve-twice", received_ms=1_765_000_000_000)
    events = [tracked() for _ in range(5)] + [
        dup,
        tracked(serve_id="serve-twice", received_ms=1_765_000_000_100),
        tracked(verdict="bot", billed="0"),
    ]
    for e in events:
        append(client, e)
    bill(own_redis, PRICE * 7)
    writer = make_writer(db, own_redis.url, delete_acked=False)
    assert writer.drain() == 8
    assert writer.stats["replayed_fresh"] == 0
    first = stored(db)
    traffic = rows(db, "SELECT wallet, day, events, verified FROM publisher_traffic_daily")
    assert sorted(r for _, r in first.values() if r) == ["bot", "duplicate"]
    assert billed(own_redis) == PRICE * 6  # the duplicate's billing taken back

    for key in stream_keys(SHARDS):  # the group as a Redis restarted from an old file has it
        client.xgroup_destroy(key, GROUP)
        client.xgroup_create(key, GROUP, id="0")
    again = make_writer(db, own_redis.url, consumer="after-restart")
    assert again.drain() == 8
    assert again.stats["replayed_fresh"] >= 1 and again.stats["inserted"] == 0

    assert stored(db) == first
    assert rows(db, "SELECT wallet, day, events, verified FROM publisher_traffic_daily") == traffic
    assert billed(own_redis) == PRICE * 6  # taken back once
    assert len(rows(db, "SELECT token_id FROM ad_event_redemptions")) == 6


def test_same_token_through_two_writers_is_one_verified_one_duplicate(
    db: str, own_redis: OwnRedis
) -> None:
    client = own_redis.client()
    # the intake's first-use key was lost (say a Redis crash): both entries arrive billed
    first = tracked(serve_id="serve-dup", received_ms=1_765_000_000_000)
    again = tracked(serve_id="serve-dup", received_ms=1_765_000_000_500)
    append(client, first)
    append(client, again)
    bill(own_redis, 2 * PRICE)
    a = make_writer(db, own_redis.url, consumer="a", batch=1, delete_acked=False)
    b = make_writer(db, own_redis.url, consumer="b", batch=1, delete_acked=False)
    batch_a, batch_b = read_batch(a), read_batch(b)
    assert len(batch_a) == len(batch_b) == 1 and batch_a != batch_b

    start = threading.Barrier(2)

    def write(writer: Writer, batch: list[Entry]) -> None:
        start.wait()
        writer.write(batch)

    threads = [threading.Thread(target=write, args=wb) for wb in ((a, batch_a), (b, batch_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    verdicts = sorted(stored(db).values(), key=lambda v: not v[0])
    assert verdicts == [(True, None), (False, "duplicate")]
    (redeemed_by,) = rows(db, "SELECT event_id FROM ad_event_redemptions")
    assert stored(db)[redeemed_by[0]] == (True, None)
    # the duplicate's billing was taken back, once, from billed and from its epoch
    assert billed(own_redis) == PRICE and epoch_spend(own_redis) == PRICE

    a.write(batch_a + batch_b)  # replayed by anyone: nothing moves
    b.write(batch_b)
    assert sorted(stored(db).values(), key=lambda v: not v[0]) == verdicts
    assert billed(own_redis) == PRICE and epoch_spend(own_redis) == PRICE
    assert rows(db, "SELECT events, verified FROM publisher_traffic_daily") == [(2, 1)]


def test_a_click_and_an_impression_of_one_serve_are_not_duplicates(
    db: str, own_redis: OwnRedis
) -> None:
    client = own_redis.client()
    append(client, tracked(serve_id="serve-1", kind="impression"))
    append(client, tracked(serve_id="serve-1", kind="click", bid_model="cpm", price=0))
    make_writer(db, own_redis.url).drain()
    assert sorted(v for v, _ in stored(db).values()) == [True, True]


def test_rate_per_ip_prefix_holds_across_writers_and_batches(db: str, own_redis: OwnRedis) -> None:
    client = own_redis.client()
    minute = 1_765_000_020_000  # one minute's events from one /24, rotating visitors
    burst = [
        tracked(ip_prefix="203.0.113.0/24", visitor=f"v{i}", device=random.choice("abc"),
                received_ms=minute + i)
        for i in range(8)
    ]  # fmt: skip
    for e in burst:
        append(client, e)
    bill(own_redis, 8 * PRICE)
    writers = [
        make_writer(db, own_redis.url, consumer=f"w{i}", batch=3, rate_ip_per_minute=5)
        for i in range(2)
    ]
    while sum(w.drain() for w in writers):
        pass

    reasons = sorted(str(r) for _, r in stored(db).values())
    assert reasons == ["None"] * 5 + ["rate_ip"] * 3
    assert billed(own_redis) == 5 * PRICE  # the rejected ones' billing taken back
    by_visitor = dict(rows(db, "SELECT visitor, reason FROM ad_events"))
    assert [by_visitor[f"v{i}"] for i in range(8)].count(None) == 5

    # the next minute starts over; another prefix was never limited
    append(client, tracked(ip_prefix="203.0.113.0/24", received_ms=minute + 60_000))
    append(client, tracked(ip_prefix="203.0.114.0/24", received_ms=minute + 10))
    writers[0].drain()
    assert sum(v for v, _ in stored(db).values()) == 7


def test_rate_per_publisher(db: str, own_redis: OwnRedis) -> None:
    client = own_redis.client()
    busy, quiet = "0x" + "11" * 20, "0x" + "22" * 20
    minute = 1_765_000_080_000
    for i in range(6):
        append(client, tracked(publisher=busy, received_ms=minute + i))
    append(client, tracked(publisher=quiet, received_ms=minute + 9))
    writer = make_writer(db, own_redis.url, rate_publisher_per_minute=4, batch=2)
    writer.drain()
    assert rows(
        db, "SELECT publisher, reason, count(*) FROM ad_events GROUP BY 1, 2 ORDER BY 1, 2"
    ) == [(busy, "rate_publisher", 2), (busy, None, 4), (quiet, None, 1)]


def test_rate_decisions_survive_a_retry_of_the_batch(db: str, own_redis: OwnRedis) -> None:
    """A batch written again (Postgres failed at commit) is judged as the first time: its
    events are not counted twice against their prefix."""
    client = own_redis.client()
    for i in range(4):
        append(client, tracked(ip_prefix="192.0.2.0/24", received_ms=1_765_000_200_000 + i))
    writer = make_writer(db, own_redis.url, rate_ip_per_minute=4, delete_acked=False)
    batch = read_batch(writer)
    for _ in range(3):  # judged three times, as if the transaction had failed each time
        writer._rate_reasons([stage(e, 1337)[0] for e in batch])
    writer.write(batch)
    assert sum(v for v, _ in stored(db).values()) == 4


def test_daily_traffic_equals_the_events(db: str, own_redis: OwnRedis) -> None:
    rng = random.Random(7)
    client = own_redis.client()
    publishers = ["0x" + f"{i:02x}" * 20 for i in range(5)]
    base = int(datetime(2026, 12, 5, 22, 0, tzinfo=UTC).timestamp() * 1000)
    serves = [f"s{i}" for i in range(150)]
    for _ in range(400):
        verdict = rng.choice(["", "", "", "bot", "expired", "too_fast"])
        append(
            client,
            tracked(
                publisher=rng.choice(publishers),
                serve_id=rng.choice(serves),  # some tokens used more than once
                kind=rng.choice(["impression", "click"]),
                verdict=verdict,
                billed="0" if verdict else "1",
                ip_prefix=f"10.0.{rng.randrange(3)}.0/24",
                received_ms=base + rng.randrange(4 * 3600 * 1000),  # across midnight
                campaign_id=rng.randrange(1, 9),
            ),
        )
    writers = [
        make_writer(db, own_redis.url, consumer=f"w{i}", batch=37, rate_ip_per_minute=3)
        for i in range(2)
    ]
    threads = [threading.Thread(target=w.drain) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    truth = rows(
        db,
        "SELECT publisher, (occurred_at AT TIME ZONE 'UTC')::date, count(*),"
        " count(*) FILTER (WHERE verified) FROM ad_events GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert sum(r[2] for r in truth) == 400
    assert {r[1] for r in truth} == {date(2026, 12, 5), date(2026, 12, 6)}
    reasons = dict(rows(db, "SELECT coalesce(reason, 'ok'), count(*) FROM ad_events GROUP BY 1"))
    assert reasons["duplicate"] > 0 and reasons["rate_ip"] > 0 and reasons["ok"] > 0
    # one verified event per token and kind at most
    assert rows(
        db,
        "SELECT count(*) FROM (SELECT serve_id, kind FROM ad_events WHERE verified"
        " GROUP BY 1, 2 HAVING count(*) > 1) d",
    ) == [(0,)]
    assert (
        rows(db, "SELECT wallet, day, events, verified FROM publisher_traffic_daily ORDER BY 1, 2")
        == truth
    )


def test_an_entry_with_garbage_fields_does_not_block_its_shard(
    db: str, own_redis: OwnRedis
) -> None:
    client = own_redis.client()
    key = stream_keys(SHARDS)[CAMPAIGN % SHARDS]
    client.xadd(key, {"kind": "impression", "price": "12abc", "chain_id": "x", "bid": "-1",
                      "served_at": "9" * 40, "device": "a\tb\\c\nd\x00", "v": "99"})  # fmt: skip
    client.xadd(key, {"unexpected": "only"})
    append(client, tracked())
    assert make_writer(db, own_redis.url).drain() == 3
    got = rows(db, "SELECT kind, price, chain_id, bid, served_at, device FROM ad_events")
    assert len(got) == 3
    assert ("", 0, 1337, None, None, None) in got
    assert ("impression", 0, 1337, None, None, "a\tb\\c\nd") in got
    assert client.xlen(key) == 0


def test_entries_of_both_stream_versions_are_stored_alike(db: str, own_redis: OwnRedis) -> None:
    """Entries appended before the upgrade to stream version 2 (every field by name) and
    after it (packed), in one stream and one batch, land the same."""
    client = own_redis.client()
    received = 1_765_000_400_000
    pairs = []
    for i in range(6):
        common = {"received_ms": received + i, "ip_prefix": f"192.0.2.{i}/32", "visitor": f"v{i}"}
        if i == 5:
            common |= {"verdict": "bot", "billed": "0"}
        old, new = tracked(**common), tracked(**common)
        append(client, old, packed=False)
        append(client, new)
        pairs.append((old.serve_id, new.serve_id))
    assert make_writer(db, own_redis.url).drain() == 12
    columns = (
        "kind, verified, reason, chain_id, campaign_id, slot_id, publisher, token, bid_model,"
        " bid, price, served_at, ip_prefix, visitor, device, geo, occurred_at"
    )
    by_serve = {r[0]: r[1:] for r in rows(db, f"SELECT serve_id, {columns} FROM ad_events")}
    assert len(by_serve) == 12
    for old_serve, new_serve in pairs:
        assert by_serve[old_serve] == by_serve[new_serve]
    assert sorted(str(v[2]) for v in by_serve.values()) == ["None"] * 10 + ["bot"] * 2


def test_entries_taken_over_from_a_dead_writer_are_judged_and_taken_back_alike(
    db: str, own_redis: OwnRedis
) -> None:
    """Entries another writer read and never acknowledged come by XAUTOCLAIM (redis-py,
    fields by name, `v2` packed): the duplicate among them is found and its billing taken
    back, as for entries read new."""
    client = own_redis.client()
    first = tracked(serve_id="serve-claimed", received_ms=1_765_000_500_000)
    again = tracked(serve_id="serve-claimed", received_ms=1_765_000_500_100)
    other = tracked()
    for e in (first, again, other):
        append(client, e)
    bill(own_redis, 3 * PRICE)
    dead = make_writer(db, own_redis.url, consumer="dead")
    assert len(read_batch(dead)) == 3  # delivered to it, never written
    rescuer = make_writer(db, own_redis.url, consumer="rescuer", claim_idle_ms=0)
    assert rescuer.drain() == 3
    assert sorted(str(r) for _, r in stored(db).values()) == ["None", "None", "duplicate"]
    assert billed(own_redis) == 2 * PRICE and epoch_spend(own_redis) == 2 * PRICE
    assert client.xlen(stream_keys(SHARDS)[CAMPAIGN % SHARDS]) == 0


def test_an_entry_that_arrives_while_the_writer_waits_is_stored(
    db: str, own_redis: OwnRedis
) -> None:
    """With nothing ready the writer blocks on one stream at a time; what arrives meanwhile
    is read and stored as any other entry."""
    client = own_redis.client()
    writer = make_writer(db, own_redis.url, block_ms=2_000)
    late = tracked(campaign_id=SHARDS, verdict="bot", billed="0")  # shard 0, waited on first
    timer = threading.Timer(0.2, lambda: append(client, late))
    timer.start()
    try:
        writer._recovering = False  # as after its first read
        entries = writer._read(2_000)
    finally:
        timer.join()
    assert [e.entry_id for e in entries] == [i for i, _ in client.xrange(stream_keys(SHARDS)[0])]
    writer.write(entries)
    assert list(stored(db).values()) == [(False, "bot")]
    assert rows(db, "SELECT campaign_id, price FROM ad_events") == [(SHARDS, PRICE)]


def test_a_packed_entry_that_does_not_parse_does_not_block_its_shard(
    db: str, own_redis: OwnRedis
) -> None:
    """A `v2` field some other client wrote broken: its shard's batch is read entry by
    entry, the broken ones stored with what they hold, the others as usual."""
    client = own_redis.client()
    key = stream_keys(SHARDS)[CAMPAIGN % SHARDS]
    good = tracked()
    append(client, good)
    head = {"verdict": "", "billed": "0", "epoch": ""}
    client.xadd(key, {**head, "v2": '["impression", "1765000000000"'})  # cut short
    client.xadd(key, {**head, "v2": '["click", 5]'})  # not strings, too short
    append(client, tracked())
    assert make_writer(db, own_redis.url).drain() == 4
    got = rows(db, "SELECT serve_id, kind, verified, price, chain_id FROM ad_events")
    assert len(got) == 4
    assert (good.serve_id, "impression", True, PRICE, 1337) in got
    assert sorted(r[1] for r in got if r[0] is None) == ["", ""]
    assert client.xlen(key) == 0


def test_a_packed_entry_cannot_pass_for_two(db: str, own_redis: OwnRedis) -> None:
    """A `v2` written to splice a second array among the entries read: each entry's `v2` is
    one array of its own, or the entry is read by name."""
    client = own_redis.client()
    key = stream_keys(SHARDS)[CAMPAIGN % SHARDS]
    append(client, tracked())
    values = json.loads(tracked(serve_id="forged-twin").entry()["v2"])
    twin = json.dumps(["1-1", "", "1", "", *values])
    client.xadd(
        key, {"verdict": "", "billed": "0", "epoch": "", "v2": f"{json.dumps(values)},{twin}"}
    )
    append(client, tracked())
    assert make_writer(db, own_redis.url).drain() == 3
    got = rows(db, "SELECT event_id, serve_id FROM ad_events")
    assert len(got) == 3 and ("forged-twin" not in {serve for _, serve in got})
    assert client.xlen(key) == 0


def test_packed_values_that_copy_must_escape_are_stored_as_sent(
    db: str, own_redis: OwnRedis
) -> None:
    client = own_redis.client()
    odd = tracked(device="a\tb\\c\nd\re\x00", geo="\\N", slot_id="tab\there")
    append(client, odd)
    append(client, tracked(geo="NL"))  # in the same batch as the odd one
    assert make_writer(db, own_redis.url).drain() == 2
    got = dict(rows(db, "SELECT serve_id, (device, geo, slot_id) FROM ad_events"))
    assert got[odd.serve_id] == ("a\tb\\c\nd\re", "\\N", "tab\there")
    assert len(got) == 2


def test_an_entry_postgres_refuses_is_dead_lettered_and_the_rest_written(
    db: str, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind the parsing: a batch Postgres refuses is written in halves
    down to the one entry it refuses, which goes to `<stream>:dead` with the error."""
    monkeypatch.setitem(writer_module.MAX_DIGITS, "chain_id", 20)  # lets an overflow through
    client = own_redis.client()
    good = [tracked() for _ in range(9)]
    for e in good[:4]:
        append(client, e)
    append(client, tracked(chain_id=10**15))
    for e in good[4:]:
        append(client, e)
    assert make_writer(db, own_redis.url).drain() == 10
    assert len(stored(db)) == 9
    key = stream_keys(SHARDS)[CAMPAIGN % SHARDS]
    (dead,) = client.xrange(f"{key}:dead")
    assert dead[1]["chain_id"] == str(10**15) and "out of range" in dead[1]["error"]
    assert client.xlen(key) == 0 and client.xpending(key, GROUP)["pending"] == 0


def test_a_receive_time_out_of_any_sane_range_falls_back_to_the_append_time(
    db: str, own_redis: OwnRedis
) -> None:
    entry = append(own_redis.client(), tracked(received_ms=999_999_999_999_999))
    make_writer(db, own_redis.url).drain()
    ((occurred,),) = rows(db, "SELECT occurred_at FROM ad_events")
    assert int(occurred.timestamp() * 1000) == int(entry.split("-")[0])


def test_partitions_are_created_ahead_idempotently_and_under_a_race(db: str) -> None:
    engine = create_engine(sqlalchemy_url(db))
    today = datetime.now(UTC).date()
    names = partitions.ensure(engine, 2)
    assert names == [partitions.partition_name(today + timedelta(days=n)) for n in range(3)]
    assert partitions.ensure(engine, 2) == names

    days = [date(2031, 1, 1) + timedelta(days=n) for n in range(5)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def race() -> None:
        try:
            with psycopg.connect(libpq_url(db)) as conn:
                start.wait()
                partitions.ensure(conn, days)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    created = {
        r[0]
        for r in rows(
            db,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'ad_events'::regclass",
        )
    }
    assert {partitions.partition_name(d) for d in days} <= created
    # a day's partition holds exactly that UTC day
    with psycopg.connect(libpq_url(db)) as conn:
        conn.execute(
            "INSERT INTO ad_events (event_id, occurred_at, kind, verified, chain_id, price)"
            " VALUES ('x', '2031-01-02 23:59:59.999+00', 'click', true, 1, 0)"
        )
        (where,) = conn.execute(
            "SELECT tableoid::regclass::text FROM ad_events WHERE event_id = 'x'"
        ).fetchone()  # type: ignore[misc]
    assert where == "ad_events_p20310102"
    engine.dispose()


def test_the_writer_creates_the_partition_of_an_event_day_on_demand(
    db: str, own_redis: OwnRedis
) -> None:
    old = int(datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp() * 1000)
    append(own_redis.client(), tracked(received_ms=old))
    make_writer(db, own_redis.url).drain()
    assert rows(db, "SELECT tableoid::regclass::text FROM ad_events") == [("ad_events_p20250301",)]


@pytest.mark.parametrize("limit", [0])
def test_a_limit_of_zero_means_no_limit(db: str, own_redis: OwnRedis, limit: int) -> None:
    client = own_redis.client()
    for i in range(5):
        append(client, tracked(ip_prefix="198.18.0.0/24", received_ms=1_765_000_300_000 + i))
    make_writer(db, own_redis.url, rate_ip_per_minute=limit).drain()
    assert sum(v for v, _ in stored(db).values()) == 5
