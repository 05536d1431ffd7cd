"""Scheduler jobs of tracking, each `job(settings) -> None` (`api.scheduler` runs them
under an advisory lock):

- `release_expired`: a CPM serve whose token expired unused gives its reservation back
  (out of `reserved` and out of its epoch's spend), atomically and once per serve; a budget
  lease whose last token expired gives back what it reserved and did not bill (a lease a
  dead worker never closed counts as fully served until then);
- `create_partitions`: the day partitions of `ad_events` ahead of time;
- `prune_redemptions`: redemption rows older than any live token are no longer needed."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from sqlalchemy import text

from api.ads.leases import lease_key
from api.core.db import make_engine
from api.core.redis import connect
from api.core.settings import Settings
from api.tracking.stream import Keys

log = logging.getLogger("api.tracking")

GRACE_SECONDS = 30  # an impression sent just before its token expired may still be in flight
BATCH = 500
DAYS_AHEAD = 7

# KEYS: the live serves (zset), reserved, the serve's hash, its epoch's spend. ARGV: serve id.
# Answers the price released (0: it was billed or released already).
RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local price = tonumber(redis.call('HGET', KEYS[3], 'price') or '0')
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('DECRBY', KEYS[2], math.min(price, reserved))
local in_epoch = redis.call('GET', KEYS[4])
if in_epoch then redis.call('DECRBY', KEYS[4], math.min(price, tonumber(in_epoch))) end
redis.call('DEL', KEYS[3])
return price
"""


# A lease (`api.ads.leases`) once its last token expired. KEYS: the live serves (zset),
# reserved, the lease's record, its epoch's spend. ARGV: its zset member. Gives back what it
# reserved and did not bill ((count − billed) · price) and drops the record; answers that.
RELEASE_LEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local l = redis.call('HMGET', KEYS[3], 'price', 'count', 'billed')
local back = 0
if l[1] then back = math.max(0, (tonumber(l[2]) - tonumber(l[3])) * tonumber(l[1])) end
if back > 0 then
  local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('DECRBY', KEYS[2], string.format('%d', math.min(back, reserved)))
  local in_epoch = redis.call('GET', KEYS[4])
  if in_epoch then
    redis.call('DECRBY', KEYS[4], string.format('%d', math.min(back, tonumber(in_epoch))))
  end
end
redis.call('DEL', KEYS[3])
return back
"""


def release_expired(settings: Settings, now: float | None = None) -> None:
    redis = connect(settings.redis_url)
    try:
        released, amount = release(
            redis, settings.tracking_shards, now if now is not None else settings.now()
        )
    finally:
        redis.close()
    if released:
        log.info("released %d expired reservation(s), %d atomic units", released, amount)


def release(redis: Any, shards: int, now: float | None = None) -> tuple[int, int]:
    """Release every reservation whose token expired (before `now` − grace) on every
    shard; the count and the sum released. Safe to run concurrently and again."""
    cutoff = (now if now is not None else time.time()) - GRACE_SECONDS
    script = redis.register_script(RELEASE)
    lease_script = redis.register_script(RELEASE_LEASE)
    count = total = 0
    for shard in range(shards):
        for served in redis.scan_iter(match=f"buzzer:{{b{shard}}}:served:*", count=1_000):
            campaign_id = int(str(served).rsplit(":", 1)[1])
            keys = Keys(campaign_id, shards)
            while True:
                due = redis.zrangebyscore(keys.served, "-inf", cutoff, start=0, num=BATCH)
                if not due:
                    break
                records = [_record(keys, campaign_id, str(m), shards) for m in due]
                with redis.pipeline(transaction=False) as pipe:
                    for record, _ in records:
                        pipe.hget(record, "epoch")
                    epochs = pipe.execute()
                with redis.pipeline(transaction=False) as pipe:
                    for due_member, (record, leased), epoch in zip(
                        due, records, epochs, strict=True
                    ):
                        (lease_script if leased else script)(
                            keys=[
                                keys.served,
                                keys.reserved,
                                record,
                                keys.epoch(int(epoch or 0)),
                            ],
                            args=[due_member],
                            client=pipe,
                        )
                    prices = pipe.execute()
                count += sum(1 for p in prices if int(p) > 0)
                total += sum(int(p) for p in prices)
    return count, total


def _record(keys: Keys, campaign_id: int, due: str, shards: int) -> tuple[str, bool]:
    """The Redis record of a live-serves member: a lease's or a single serve's."""
    if due.startswith("lease:"):
        return lease_key(campaign_id, due.removeprefix("lease:"), shards), True
    return keys.serve(due), False


def create_partitions(settings: Settings) -> None:
    partitions = importlib.import_module("api.tracking.partitions")  # the writer's module
    engine = make_engine(settings.database_url)
    try:
        partitions.ensure(engine, DAYS_AHEAD)
    finally:
        engine.dispose()


def prune_redemptions(settings: Settings) -> None:
    """A token lives `ad_token_ttl_seconds`; a day past that, its redemption row can no
    longer stop anything."""
    keep = settings.ad_token_ttl_seconds + 86_400
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as db:
            deleted = db.execute(
                text(
                    "DELETE FROM ad_event_redemptions"
                    " WHERE redeemed_at < now() - make_interval(secs => :keep)"
                ),
                {"keep": keep},
            ).rowcount
    finally:
        engine.dispose()
    if deleted:
        log.info("pruned %d token redemption(s)", deleted)
