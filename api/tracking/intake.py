"""The intake: one impression or click becomes one stream entry, decided and appended in ONE
Redis round trip.

    intake = Intake(settings, redis_async, catalog)
    outcome = await intake.record("impression", token, Visit(ip, user_agent, geo))
    outcome.verdict   # '' or the reason it is not billable; outcome.billed: money moved

Python checks what needs no state: the token's signature and expiry (`forged`, `expired`)
and the request (`bot`, `datacenter`, see `api.tracking.ivt`). One Lua script, on keys that
all share the campaign's hash tag, then does the rest atomically: first use of the token
(`duplicate`), was it served (`not_served`), for a click the impression's time
(`click_without_impression`, `too_fast`), the budget move (a CPM impression turns its
reservation into billed spend; a CPC click bills its price if the free budget and the
epoch's max still hold it) and the append to the campaign's stream shard, never trimmed.
The writer applies the rate rules and the redemption table and stores every event."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from api.ads import tokens
from api.ads.catalog import Catalog, Snapshot
from api.ads.leases import lease_key, lease_of, member
from api.ads.matching import CPC, CPM, SAFE_INTEGER, Candidate, EpochClock
from api.ads.traffic import device_of, today, truncated_ip, visitor_key
from api.core.settings import Settings
from api.tracking.ivt import IvtRules
from api.tracking.models import CLICK, IMPRESSION
from api.tracking.stream import PACKED, PACKED_FIELDS, Keys, pack, shard_of, stream_key
from observe import metrics

log = logging.getLogger("api.tracking")

FORGED, EXPIRED, DUPLICATE = "forged", "expired", "duplicate"
NOT_SERVED, CLICK_WITHOUT_IMPRESSION, TOO_FAST = (
    "not_served",
    "click_without_impression",
    "too_fast",
)
TOKEN_KIND = {IMPRESSION: "imp", CLICK: "click"}
USED_MARGIN = 3_600  # a token's first-use mark outlives the token by this much
EPOCH_KEY_MARGIN = 3_600
INGESTED = metrics.Labelled(metrics.EVENTS_INGESTED)
REJECTED = metrics.Labelled(metrics.EVENTS_REJECTED)

# the stream entry's fields that Python fills, in this order, packed into one (the script
# adds verdict, billed and epoch; `api.tracking.stream` has the entry's format)
ENTRY_FIELDS = PACKED_FIELDS

# KEYS: 1 first use of this token, 2 first use of the serve's impression token, 3 live
# serves (zset), 4 the serve's hash or its lease's record, 5 reserved, 6 billed, 7 the
# serve's epoch spend, 8 the stream shard. ARGV[1]: a JSON array of strings (one argument
# packs much faster than 40): 1 verdict so far ('' none), 2 kind, 3 bid model, 4 price,
# 5 now (ms), 6 seconds the first-use mark lives, 7 least ms from impression to click,
# 8 balance, 9 the epoch's max, 10 seconds the epoch key lives, 11 serve id, 12 epoch,
# 13 the lease's zset member ('' for a serve of its own), 14 the serve's number in its
# lease. ARGV[2]: the entry's packed values of ENTRY_FIELDS (appended as they are).
# Answers {entry id, verdict, billed}.
# A serve `L.n` of a lease (`api.ads.leases`) was served if the lease record exists and n is
# below its count; its impression bills the lease (and a closed lease all billed leaves the
# live serves).
TRACK = (
    """
local A = cjson.decode(ARGV[1])
local verdict = A[1]
local billed = '0'
local epoch = A[12]
local lease = A[13] ~= ''
local serve
if lease then
  serve = redis.call('HMGET', KEYS[4], 'price', 'epoch', 'count', 'closed')
  if serve[3] and tonumber(A[14]) >= tonumber(serve[3]) then serve = {false, false} end
else
  serve = redis.call('HMGET', KEYS[4], 'price', 'epoch')
end
if serve[2] then epoch = serve[2] end
if not redis.call('SET', KEYS[1], A[5], 'NX', 'EX', tonumber(A[6])) then
  verdict = 'duplicate'
elseif A[2] == 'impression' then
  if A[3] == 'cpm' and serve[2] then
    if not lease and redis.call('ZSCORE', KEYS[3], A[11]) == false then
      if verdict == '' then verdict = 'not_served' end
    elseif verdict == '' then
      local price = tonumber(serve[1])
      if lease then
        local used = redis.call('HINCRBY', KEYS[4], 'billed', 1)
        if serve[4] == '1' and used >= tonumber(serve[3]) then
          redis.call('ZREM', KEYS[3], A[13])
        end
      else
        redis.call('ZREM', KEYS[3], A[11])
      end
      redis.call('DECRBY', KEYS[5], price)
      redis.call('INCRBY', KEYS[6], price)
      billed = '1'
    end
  elseif not serve[2] and verdict == '' then
    verdict = 'not_served'
  end
elseif verdict == '' then
  local seen = redis.call('GET', KEYS[2])
  if not serve[2] then
    verdict = 'not_served'
  elseif not seen then
    verdict = 'click_without_impression'
  elseif tonumber(A[5]) - tonumber(seen) < tonumber(A[7]) then
    verdict = 'too_fast'
  elseif A[3] == 'cpc' then
    local price = tonumber(A[4])
    local taken = tonumber(redis.call('GET', KEYS[5]) or '0')
      + tonumber(redis.call('GET', KEYS[6]) or '0')
    local in_epoch = tonumber(redis.call('GET', KEYS[7]) or '0')
    if taken + price <= tonumber(A[8]) and in_epoch + price <= tonumber(A[9]) then
      redis.call('INCRBY', KEYS[6], price)
      redis.call('INCRBY', KEYS[7], price)
      redis.call('EXPIRE', KEYS[7], tonumber(A[10]))
      billed = '1'
    end
  end
end
local id = redis.call('XADD', KEYS[8], '*', 'verdict', verdict, 'billed', billed,
  'epoch', epoch, '"""
    + PACKED
    + """', ARGV[2])
return {id, verdict, billed}
"""
)

# An event whose token is not usable (forged, expired): recorded, nothing else.
# KEYS: the stream shard. ARGV: the verdict, the entry's packed values of ENTRY_FIELDS.
APPEND = f"""return redis.call('XADD', KEYS[1], '*', 'verdict', ARGV[1], 'billed', '0',
  'epoch', '', '{PACKED}', ARGV[2])
"""


@dataclass(frozen=True)
class Visit:
    """Who sent the event, as the request shows it. The IP is only used here: what is
    kept is its /24 (/48) and a daily-salted visitor key (DESIGN.md, Privacy)."""

    ip: str | None
    user_agent: str | None
    geo: str | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str
    event: tokens.AdEvent | None  # the claims when the token is one we signed
    verdict: str  # '' when nothing was found wrong here
    billed: bool
    recorded: bool  # appended to the stream (False when Redis is unreachable)


class Intake:
    def __init__(self, settings: Settings, redis: Any, catalog: Catalog) -> None:
        self.settings = settings
        self.redis = redis
        self.catalog = catalog
        self.rules = IvtRules.from_settings(settings)
        self.shards = settings.tracking_shards
        self._commit = GroupCommit(redis, {"track": TRACK, "append": APPEND})
        self._campaigns: tuple[Snapshot | None, dict[int, Candidate]] = (None, {})

    def campaign(self, campaign_id: int) -> Candidate | None:
        """The campaign as the ad server holds it now (None: not servable any more)."""
        snapshot = self.catalog.current()
        held, campaigns = self._campaigns
        if held is not snapshot:
            campaigns = {
                c.campaign_id: c
                for tiers in snapshot.index.buckets.values()
                for _, members in tiers
                for c in members
            }
            self._campaigns = (snapshot, campaigns)
        return campaigns.get(campaign_id)

    def read(self, kind: str, token: str, now: float) -> tuple[tokens.AdEvent | None, str]:
        """The token's claims if we signed them, and `forged` / `expired` / ''."""
        try:
            return tokens.verify(self.settings.jwt_secret, token, TOKEN_KIND[kind], now), ""
        except tokens.Expired as exc:
            return exc.event, EXPIRED
        except (tokens.BadToken, ValueError, TypeError, KeyError):
            return None, FORGED

    async def record(self, kind: str, token: str, visit: Visit) -> Outcome:
        outcome = await self._record(kind, token, visit)
        if not outcome.recorded:
            REJECTED(kind, "lost").inc()
        else:
            INGESTED(kind).inc()
            if outcome.verdict:
                REJECTED(kind, outcome.verdict).inc()
        return outcome

    async def _record(self, kind: str, token: str, visit: Visit) -> Outcome:
        now = self.settings.now()
        event, verdict = self.read(kind, token, now)
        verdict = verdict or self.rules.verdict(visit.user_agent, visit.ip)
        fields = self._fields(kind, event, visit, now)
        try:
            if event is None or verdict in (FORGED, EXPIRED):
                shard = 0 if event is None else shard_of(event.campaign_id, self.shards)
                key = stream_key(shard)
                await self._commit.call("append", [key], [verdict, pack(fields)])
                return Outcome(kind, event, verdict, False, True)
            keys, args = self._call(kind, event, verdict, fields, now)
            _, verdict, billed = [_text(v) for v in await self._commit.call("track", keys, args)]
        except Exception:  # Redis unreachable: the event is lost, the visitor is not
            log.warning("tracking: could not record a %s (redis unreachable)", kind)
            return Outcome(kind, event, verdict, False, False)
        return Outcome(kind, event, str(verdict), str(billed) == "1", True)

    def _call(
        self, kind: str, event: tokens.AdEvent, verdict: str, fields: list[str], now: float
    ) -> tuple[list[str], list[str]]:
        k = Keys(event.campaign_id, self.shards)
        clock = self.catalog.current().clock
        epoch = clock.at(event.issued_at) if clock is not None else None
        number = epoch.number if epoch is not None else 0
        campaign = self.campaign(event.campaign_id)
        balance = min(campaign.balance, SAFE_INTEGER) if campaign else 0
        max_spend = min(campaign.max_spend_in(number), SAFE_INTEGER) if campaign else 0
        lease = lease_of(event.serve_id)
        record = lease_key(event.campaign_id, lease[0], self.shards) if lease else None
        keys = [
            k.used(event.serve_id, kind),
            k.used(event.serve_id, IMPRESSION),
            k.served,
            record or k.serve(event.serve_id),
            k.reserved,
            k.billed,
            k.epoch(number),
            k.stream,
        ]
        args: list[str | int] = [
            verdict,
            kind,
            event.bid_model,
            event.price,
            int(now * 1000),
            max(1, int(event.expires_at - now)) + USED_MARGIN,
            self.settings.min_click_ms,
            balance,
            max_spend,
            _epoch_ttl(clock, number, now),
            event.serve_id,
            number,
            member(lease[0]) if lease else "",
            lease[1] if lease else 0,
        ]
        return keys, [json.dumps([str(arg) for arg in args]), pack(fields)]

    def _fields(
        self, kind: str, event: tokens.AdEvent | None, visit: Visit, now: float
    ) -> list[str]:
        """The values of ENTRY_FIELDS (the script sets verdict, billed and epoch)."""
        secret = self.settings.jwt_secret
        base = {
            "kind": kind,
            "received_ms": str(int(now * 1000)),
            "chain_id": str(self.settings.chain_id),
            "ip_prefix": truncated_ip(visit.ip),
            "visitor": visitor_key(secret, visit.ip, visit.user_agent, today()),
            "device": device_of(visit.user_agent),
            "geo": visit.geo or "",
        }
        if event is not None:
            billable = (kind == IMPRESSION and event.bid_model == CPM) or (
                kind == CLICK and event.bid_model == CPC
            )
            base |= {
                "serve_id": event.serve_id,
                "campaign_id": str(event.campaign_id),
                "slot_id": event.slot_id,
                "publisher": event.publisher.lower(),
                "token": event.token.lower(),
                "bid_model": event.bid_model,
                "bid": str(event.bid) if event.bid else "",
                "price": str(event.price if billable else 0),
                "served_at": str(event.issued_at),
            }
        return [base.get(name, "") for name in ENTRY_FIELDS]


class GroupCommit:
    """Scripts called by concurrent requests go to Redis together: a call made while a
    round trip is in flight waits for it and goes in the next one, as one pipeline. An idle
    server sends each call at once; a busy one sends one round trip for many events (each
    script still runs atomically on its own)."""

    def __init__(self, redis: Any, scripts: dict[str, str]) -> None:
        self.redis = redis
        self.scripts = scripts
        self.shas = {name: redis.register_script(body).sha for name, body in scripts.items()}
        self.pending: list[tuple[str, list[str], list[Any], asyncio.Future[Any]]] = []
        self.busy = False

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((name, keys, args, future))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[str, list[str], list[Any], asyncio.Future[Any]]] = []
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await self._send(batch)
                except Exception as exc:
                    results = [exc] * len(batch)
                for (*_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.busy = False
            for *_, future in batch + self.pending:  # cancelled mid-flight: nobody waits forever
                if not future.done():
                    future.set_exception(ConnectionError("the tracking round trip was cancelled"))
            self.pending = []

    async def _send(self, batch: list[tuple[str, list[str], list[Any], Any]]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                name, keys, args, _ = batch[i]
                pipe.evalsha(self.shas[name], len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)  # not run: the server lost its scripts (a restart)
                else:
                    results[i] = reply
            if not missing:
                break
            for body in self.scripts.values():
                await self.redis.script_load(body)
            todo = missing
        return results


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch_ttl(clock: EpochClock | None, number: int, now: float) -> int:
    """Seconds the epoch's spend key must live: past the epoch's end, with a margin."""
    if clock is None or number == 0:
        return EPOCH_KEY_MARGIN
    ends = clock.genesis + number * clock.length
    return max(1, int(ends - now)) + EPOCH_KEY_MARGIN
