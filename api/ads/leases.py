"""Budget leases and local frequency counts: `GET /x402/ad` decides a fill without a Redis
round trip in the common case.

A worker reserves budget for a campaign in blocks (a LEASE of `count` impressions at one
price, in one escrow epoch) with one atomic script that checks exactly what a single
reservation checks (free budget = escrow balance − billed − reserved, and the epoch's spend
within its max) and adds the whole block to `reserved` and to the epoch's spend. The worker
then serves from the block in memory: serve `n` of lease `L` has the serve id `L.n`, signed
into its tokens. Redis keeps one record per lease (`lease:<id>`: price, epoch, count,
billed, closed) and the lease in the live-serves zset (`served`) scored by the last moment
one of its tokens can expire. So:

- an impression bills from the lease its token names (reserved −= price, billed += price,
  the lease's billed += 1); `n` must be below the lease's count and each serve id is used
  once (the intake's first-use mark), so a lease never bills more than it reserved;
- closing a lease (run out, its time is up, a new epoch, a new price, shutdown) gives back
  (count − served) · price at once and lowers its score to its last token's expiry;
- the release job gives back (count − billed) · price once the last token can no longer be
  used, and drops the record. A worker that dies never reports what it served: its open
  leases count as fully served and are released at their latest possible token expiry
  (`lease_seconds` + the token lifetime after the grant).

A campaign this worker has not served in a past window (`rate` 0) gets a lease of one
serve, granted and closed at once while its request waits, which is exactly the single
reservation of before. Its lease grows with demand: the serves it had in the last whole
window of `WINDOW` seconds (spread over the windows since, when it paused; the window of its
first serve does not count) times `TARGET_SECONDS`, plus the requests waiting for the grant
in flight; never more than 1/`LEASE_SHARE` of the free budget or of the epoch's room. Grants
stay off the request path for a campaign asked for again (`rate` > 0):
- its next lease is granted in the background once half of the current one is gone (for a
  campaign asked for less than once per `TARGET_SECONDS`, a standby of one serve after each
  serve);
- a lease whose time ran out is granted again in the background while the campaign is still
  expected to be asked for within the new lease's time (its rate as a request would find it
  now, times `lease_seconds`, at least 1) and was asked for in the last `IDLE_SECONDS`, for
  the campaign and epoch as the catalog has them now (`current`).
Such a grant is the same script as on a request, so every bound below holds as it is; what it
costs is budget held ahead (one lease per campaign and worker, given back when it closes)
and Redis scripts: for a quiet campaign a grant and a close per serve instead of one grant,
and after its last request at most `IDLE_SECONDS` / `lease_seconds` renewals. A CPC campaign
reserves nothing at serve time (its click bills, if it still fits): its leases are only
checked to afford one click when granted, so such a campaign may keep being served for up to
`lease_seconds` after it can no longer pay a click (the click is then recorded and not
billed, as before).

Worst cases, W workers, cap C, reconcile interval T (`RECONCILE_SECONDS`):
- budget: none beyond the escrow. Billed + reserved ≤ balance and the epoch's spend ≤ its max
  hold in Redis at every step; the serves a worker hands out are at most what its leases
  reserved, so ads served ≤ free budget / price.
- frequency: a worker counts its own serves at once, so alone it stops at C: a visitor sees
  a campaign at most W · C times a day, over-delivery ≤ (W − 1) · C. Every T a worker pushes
  its counts (learning the total of all workers for those visitors) and pulls the total of
  visitors it counted at half the cap or more, so once a worker has served a visitor C/2
  times, the excess beyond C is at most what the other workers serve that visitor in one T:
  ≤ min((W − 1) · C, (W − 1) · r · T) for r requests a second per worker.
- a worker crash: its open leases' unused parts stay reserved until the release job runs
  after `lease_seconds` + token lifetime + the job's grace."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.ads.matching import (
    CPM,
    EPOCH_KEY_MARGIN,
    SAFE_INTEGER,
    SERVE_MARGIN,
    VIEWS_TTL,
    Candidate,
    Epoch,
    Serve,
)
from api.tracking.stream import DEFAULT_SHARDS, Keys, tag

log = logging.getLogger("api.ads")

LEASE_SECONDS = 10.0  # a lease is served from for at most this long after its grant
TARGET_SECONDS = 2.0  # a busy campaign's lease holds about this many seconds of its serves
LEASE_SHARE = 10  # a lease takes at most this fraction (1/n) of the free budget and room
MAX_LEASE = 10_000  # serves in one lease
WINDOW = 1.0  # serve rates are counted over whole windows of this many seconds
NO_BUDGET_SECONDS = 1.0  # after a refused grant, the campaign is skipped this long
TICK = 0.1  # the background loop: closes and refills
RECONCILE_SECONDS = 0.5  # frequency counts pushed to and pulled from Redis
IDLE_SECONDS = 60.0  # a campaign's state is dropped after this long without a lease
MAX_VISITORS = 200_000  # frequency entries kept per worker (per day)
PULL_LIMIT = 5_000  # visitors near their cap pulled per reconcile
CHUNK = 200  # commands per round trip of the reconcile


def _int(value: int) -> str:
    return str(int(value))


def lease_key(campaign_id: int, lease_id: str, shards: int) -> str:
    """The Redis record of one lease, under its campaign's hash tag."""
    return f"buzzer:{tag(campaign_id, shards)}:lease:{lease_id}"


def member(lease_id: str) -> str:
    """A lease's member in the campaign's live-serves zset."""
    return f"lease:{lease_id}"


def lease_of(serve_id: str) -> tuple[str, int] | None:
    """The lease id and serve number of a serve id `L.n`; None for a serve of its own."""
    lease_id, dot, n = serve_id.partition(".")
    if not dot or not n.isdigit() or len(n) > 9 or not lease_id.isalnum():
        return None
    return lease_id, int(n)


# KEYS: reserved, billed, the epoch's spend, the live serves (zset), the lease's record.
# ARGV: 1 price, 2 balance, 3 the epoch's max, 4 seconds the epoch key lives, 5 serves
# wanted, 6 share (1/n of the free budget at most), 7 1 to reserve (CPM) or 0 (CPC),
# 8 epoch number, 9 score (last possible token expiry), 10 zset member, 11 closed at once
# (1: one serve, taken now), 12 seconds the record lives.
# Answers the serves granted, or 0 (free budget) / -1 (the epoch's max).
GRANT = """
local function int(x) return string.format('%d', x) end
local price = tonumber(ARGV[1])
local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
local billed = tonumber(redis.call('GET', KEYS[2]) or '0')
local free = tonumber(ARGV[2]) - reserved - billed
if free < price then return 0 end
local room = tonumber(ARGV[3]) - tonumber(redis.call('GET', KEYS[3]) or '0')
if room < price then return -1 end
local count = tonumber(ARGV[5])
local cpm = ARGV[7] == '1'
if cpm then
  local share = math.floor(math.min(free, room) / tonumber(ARGV[6]) / price)
  count = math.max(1, math.min(count, share))
  local amount = int(count * price)
  redis.call('INCRBY', KEYS[3], amount)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  redis.call('INCRBY', KEYS[1], amount)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[9]), ARGV[10])
end
redis.call('HSET', KEYS[5], 'price', cpm and ARGV[1] or '0', 'epoch', ARGV[8],
  'count', int(count), 'billed', '0', 'closed', ARGV[11])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[12]))
return count
"""

# KEYS: reserved, the lease epoch's spend, the live serves (zset), the lease's record.
# ARGV: zset member, serves handed out, score (its last token's expiry).
# Gives back what was never served, once; answers the amount.
CLOSE = """
local function int(x) return string.format('%d', x) end
local l = redis.call('HMGET', KEYS[4], 'price', 'count', 'billed', 'closed')
if not l[2] or l[4] == '1' then return 0 end
local price, count, billed = tonumber(l[1]), tonumber(l[2]), tonumber(l[3])
local used = math.min(count, math.max(tonumber(ARGV[2]), billed))
local back = (count - used) * price
if back > 0 then
  local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
  redis.call('DECRBY', KEYS[1], int(math.min(back, reserved)))
  local in_epoch = redis.call('GET', KEYS[2])
  if in_epoch then redis.call('DECRBY', KEYS[2], int(math.min(back, tonumber(in_epoch)))) end
end
redis.call('HSET', KEYS[4], 'count', int(used), 'closed', '1')
if price > 0 then
  if billed >= used then
    redis.call('ZREM', KEYS[3], ARGV[1])
  else
    redis.call('ZADD', KEYS[3], 'XX', tonumber(ARGV[3]), ARGV[1])
  end
end
return back
"""


@dataclass
class Lease:
    lease_id: str
    campaign_id: int
    epoch: int
    price: int
    bid_model: str
    count: int
    ends_at: float  # on the serving clock
    served: int = 0
    last_expiry: int = 0
    closed: bool = False  # closed in Redis already (a one-serve lease)

    def usable(self, candidate: Candidate, epoch: Epoch, now: float) -> bool:
        return (
            self.served < self.count
            and self.epoch == epoch.number
            and now < self.ends_at
            and self.price == candidate.price
            and self.bid_model == candidate.bid_model
        )


@dataclass
class Demand:
    """One campaign as this worker serves it."""

    lease: Lease | None = None
    spare: Lease | None = None  # refilled ahead, used when `lease` runs out
    refill: asyncio.Future[bool] | None = None  # the grant in flight
    waiting: int = 0  # requests waiting for it
    window: int = -1
    first_window: int = -1
    counted: int = 0
    rate: float = 0.0  # serves wanted per second in the last whole window
    ttl: int = 0  # the token lifetime of its last request
    refused: tuple[tuple[int, int, int], float] | None = None  # (epoch, balance, price), until
    touched: float = field(default_factory=time.monotonic)


class Leases:
    """Per-worker budget leases (see the module). `take` decides from memory; `fill` may
    wait for a grant; `start` runs closes, refills and the frequency reconcile in the
    background; `stop` gives back every unused lease."""

    def __init__(
        self,
        redis: Any,
        shards: int = DEFAULT_SHARDS,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
        current: Callable[[int, float], tuple[Candidate, Epoch] | None] = lambda _id, _now: None,
    ) -> None:
        self.redis = redis
        self.shards = shards
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.current = current  # a campaign as the catalog has it now, and the epoch
        self.demand: dict[int, Demand] = {}
        self.closing: list[Lease] = []
        self.frequency = Frequency(redis, shards)
        self._grant = redis.register_script(GRANT)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._background: set[asyncio.Future[Any]] = set()

    # -- the request path -------------------------------------------------------------

    def take(self, candidate: Candidate, epoch: Epoch, now: float, ttl: int) -> Serve | None:
        """A serve from this worker's lease for `candidate`, if it holds one with room."""
        demand = self.demand.get(candidate.campaign_id)
        if demand is None:
            demand = self.demand[candidate.campaign_id] = Demand()
        self._count(demand)
        demand.ttl = ttl
        return self._take(demand, candidate, epoch, now, ttl)

    async def fill(self, candidate: Candidate, epoch: Epoch, now: float, ttl: int) -> Serve | None:
        """After `take` found no room: a grant from Redis (one per campaign in flight; the
        requests that come meanwhile wait for it and size the next one). None when the
        free budget or the epoch's max has no room. Raises on Redis errors."""
        demand = self.demand.setdefault(candidate.campaign_id, Demand())
        refused = (epoch.number, candidate.balance, candidate.price)
        while True:
            serve = self._take(demand, candidate, epoch, now, ttl)
            if serve is not None:
                return serve
            if demand.refused and demand.refused[0] == refused:
                if time.monotonic() < demand.refused[1]:
                    return None
                demand.refused = None
            if demand.refill is not None and demand.refill.done():
                demand.refill = None  # its callback may not have run: never wait on it again
            if demand.refill is None:
                want = self._target(demand) + demand.waiting
                if want <= 1:  # a quiet campaign: one serve of its own, as before leases
                    demand.refill = asyncio.get_running_loop().create_future()
                    try:
                        serve = await self._one(demand, candidate, epoch, now, ttl)
                    finally:
                        done, demand.refill = demand.refill, None
                        if not done.done():
                            done.set_result(True)
                    if serve is not None and demand.rate > 0:  # asked for again: a standby
                        self._refill(demand, candidate, epoch, now, ttl, 1)
                    return serve
                self._refill(demand, candidate, epoch, now, ttl, want)
            assert demand.refill is not None
            demand.waiting += 1
            try:
                granted = await asyncio.shield(demand.refill)
            finally:
                demand.waiting -= 1
            if not granted:
                return None

    def _count(self, demand: Demand) -> None:
        now = time.monotonic()
        demand.touched = now
        window = int(now / WINDOW)
        if window != demand.window:
            if demand.window < 0:
                demand.first_window = window
            demand.rate = self._rate_at(demand, window)
            demand.window, demand.counted = window, 0
        demand.counted += 1

    def _target(self, demand: Demand, rate: float | None = None) -> int:
        rate = demand.rate if rate is None else rate
        return max(1, min(MAX_LEASE, math.ceil(rate * TARGET_SECONDS)))

    def _rate_at(self, demand: Demand, window: int) -> float:
        """The campaign's rate as of `window`: the last whole window's count, spread over the
        windows since (a pause lowers the rate instead of forgetting it); the window of the
        first serve is partial and does not count."""
        if demand.window < 0 or window == demand.window:
            return demand.rate
        counted = demand.counted if demand.window != demand.first_window else 0
        return counted / (WINDOW * (window - demand.window))

    def _take(
        self, demand: Demand, candidate: Candidate, epoch: Epoch, now: float, ttl: int
    ) -> Serve | None:
        while True:
            lease = demand.lease
            if lease is None:
                if demand.spare is None:
                    return None
                demand.lease, demand.spare = demand.spare, None
                continue
            if not lease.usable(candidate, epoch, now):
                self._retire(demand)
                continue
            n = lease.served
            lease.served += 1
            expires = int(now) + ttl
            lease.last_expiry = max(lease.last_expiry, expires)
            if lease.served >= lease.count:
                self._retire(demand)
            if (
                demand.refill is None
                and demand.spare is None
                and (demand.lease is None or 2 * lease.served >= lease.count)
                and demand.rate > 0
            ):  # a campaign asked for again: the next lease comes before this one runs out
                self._refill(demand, candidate, epoch, now, ttl, self._target(demand))
            return Serve(f"{lease.lease_id}.{n}", expires)

    def _retire(self, demand: Demand) -> None:
        lease, demand.lease, demand.spare = demand.lease, demand.spare, None
        if lease is not None and not lease.closed:
            self.closing.append(lease)

    # -- grants ----------------------------------------------------------------------

    def _args(
        self,
        candidate: Candidate,
        epoch: Epoch,
        lease_id: str,
        want: int,
        score: int,
        closed: bool,
        now: float,
    ) -> tuple[list[str], list[Any]]:
        k = Keys(candidate.campaign_id, self.shards)
        keys = [
            k.reserved,
            k.billed,
            k.epoch(epoch.number),
            k.served,
            lease_key(candidate.campaign_id, lease_id, self.shards),
        ]
        args: list[Any] = [
            candidate.price,
            min(candidate.balance, SAFE_INTEGER),
            min(candidate.max_spend_in(epoch.number), SAFE_INTEGER),
            epoch.seconds_left + EPOCH_KEY_MARGIN,
            want,
            LEASE_SHARE,
            1 if candidate.bid_model == CPM else 0,
            epoch.number,
            score,
            member(lease_id),
            1 if closed else 0,
            max(1, score - int(now)) + SERVE_MARGIN,
        ]
        return keys, args

    async def _one(
        self, demand: Demand, candidate: Candidate, epoch: Epoch, now: float, ttl: int
    ) -> Serve | None:
        """One serve with a lease of its own, closed at once: its score is its token's
        expiry, as a single reservation's."""
        lease_id = uuid.uuid4().hex
        expires = int(now) + ttl
        keys, args = self._args(candidate, epoch, lease_id, 1, expires, True, now)
        if int(await self._grant(keys=keys, args=args)) <= 0:
            self._refuse(demand, candidate, epoch)
            return None
        return Serve(f"{lease_id}.0", expires)

    def _refill(
        self,
        demand: Demand,
        candidate: Candidate,
        epoch: Epoch,
        now: float,
        ttl: int,
        want: int,
    ) -> None:
        demand.refill = asyncio.ensure_future(self._lease(demand, candidate, epoch, now, ttl, want))
        demand.refill.add_done_callback(lambda f: self._refilled(demand, f))

    def _refilled(self, demand: Demand, future: asyncio.Future[bool]) -> None:
        if demand.refill is future:
            demand.refill = None
        if not future.cancelled() and future.exception() is not None and not demand.waiting:
            log.warning("ads: a lease refill failed: %s", future.exception())

    async def _lease(
        self,
        demand: Demand,
        candidate: Candidate,
        epoch: Epoch,
        now: float,
        ttl: int,
        want: int,
    ) -> bool:
        lease_id = uuid.uuid4().hex
        ends = now + self.lease_seconds
        score = math.ceil(ends) + ttl
        keys, args = self._args(candidate, epoch, lease_id, want, score, False, now)
        try:
            count = int(await self._grant(keys=keys, args=args))
        finally:  # done: the next request may ask again (before any callback runs)
            if demand.refill is asyncio.current_task():
                demand.refill = None
        if count <= 0:
            self._refuse(demand, candidate, epoch)
            return False
        lease = Lease(
            lease_id,
            candidate.campaign_id,
            epoch.number,
            candidate.price,
            candidate.bid_model,
            count,
            ends,
        )
        if demand.lease is None:
            demand.lease = lease
        else:
            if demand.spare is not None:
                self.closing.append(demand.spare)
            demand.spare = lease
        return True

    def _refuse(self, demand: Demand, candidate: Candidate, epoch: Epoch) -> None:
        key = (epoch.number, candidate.balance, candidate.price)
        demand.refused = (key, time.monotonic() + NO_BUDGET_SECONDS)

    # -- the background -------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Shutdown: no more grants; every lease closed (its unused part given back) and
        the frequency counts pushed."""
        if self._task is not None:
            self._stopping = True  # not a cancel: a round trip cut mid-way would be retried
            await asyncio.wait([self._task], timeout=2.0)
            if not self._task.done():
                self._task.cancel()
            self._task = None
        pending = [d.refill for d in self.demand.values() if d.refill is not None]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for demand in self.demand.values():
            self._retire(demand)
            self._retire(demand)
        try:
            await self.close_leases()
            await self.frequency.reconcile()
        except Exception as exc:  # Redis unreachable: the release job gives them back later
            log.warning("ads: could not give back %d lease(s): %s", len(self.closing), exc)

    async def _run(self) -> None:
        reconciled = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(TICK)
            try:
                self.expire()
                await self.close_leases()
                if time.monotonic() - reconciled >= RECONCILE_SECONDS:
                    reconciled = time.monotonic()
                    await self.frequency.reconcile()
                if self._failing:
                    self._failing = False
                    log.info("ads: lease upkeep reaches Redis again")
            except Exception as exc:  # Redis away: try again next tick, say so once
                if not self._failing:
                    self._failing = True
                    log.warning("ads: lease upkeep failed, retrying: %s", exc)

    def expire(self) -> None:
        """Retire leases whose time is up, renewing those of a campaign still asked for;
        forget campaigns idle for a while."""
        now, idle = self.clock(), time.monotonic() - IDLE_SECONDS
        for campaign_id, demand in list(self.demand.items()):
            ended = False
            for _ in range(2):
                if demand.lease is not None and now >= demand.lease.ends_at:
                    self._retire(demand)
                    ended = True
            if demand.spare is not None and now >= demand.spare.ends_at:
                self.closing.append(demand.spare)
                demand.spare = None
                ended = True
            if ended and not self._stopping:
                self._renew(campaign_id, demand, now)
            if (
                demand.lease is None
                and demand.spare is None
                and demand.refill is None
                and demand.touched < idle
            ):
                del self.demand[campaign_id]

    def _renew(self, campaign_id: int, demand: Demand, now: float) -> None:
        """A lease whose time ran out, granted again in the background when the campaign
        is still asked for (at least one request expected in the new lease's time), so
        that its next request does not wait for a grant; sized by the rate as it is now,
        for the campaign and epoch as the catalog has them now."""
        if demand.lease is not None or demand.spare is not None or demand.refill is not None:
            return
        if demand.refused is not None and time.monotonic() < demand.refused[1]:
            return
        if demand.touched < time.monotonic() - IDLE_SECONDS:
            return  # about to be forgotten
        rate = self._rate_at(demand, int(time.monotonic() / WINDOW))
        if rate * self.lease_seconds < 1 or not demand.ttl:
            return
        current = self.current(campaign_id, now)
        if current is None:
            return
        candidate, epoch = current
        self._refill(demand, candidate, epoch, now, demand.ttl, self._target(demand, rate))

    async def close_leases(self) -> int:
        """Close the retired leases in one round trip; the amount given back."""
        batch, self.closing = self.closing, []
        if not batch:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for lease in batch:
                k = Keys(lease.campaign_id, self.shards)
                score = lease.last_expiry or int(lease.ends_at)
                keys = [
                    k.reserved,
                    k.epoch(lease.epoch),
                    k.served,
                    lease_key(lease.campaign_id, lease.lease_id, self.shards),
                ]
                pipe.eval(CLOSE, len(keys), *keys, member(lease.lease_id), lease.served, score)
            results = await pipe.execute()
        except BaseException:
            self.closing = batch + self.closing  # next time
            raise
        return sum(int(r) for r in results)


class Frequency:
    """The frequency cap counted per worker: every serve counts here at once and is pushed
    to the campaign's per-visitor hash of the day (`Keys.views`) every reconcile, which
    answers the total of every worker; visitors near the cap are pulled too. (A push cut
    half-way is pushed again in full: counted twice, it can only serve less.)"""

    def __init__(self, redis: Any, shards: int) -> None:
        self.redis = redis
        self.shards = shards
        self.day = ""
        self.counts: dict[tuple[int, str], list[int]] = {}  # [known total, not pushed yet]
        self.asked: set[tuple[int, str]] = set()
        self.old: list[tuple[str, dict[tuple[int, str], list[int]]]] = []

    def _roll(self, day: str) -> None:
        if day != self.day:
            if self.counts:
                self.old.append((self.day, self.counts))
            self.day, self.counts, self.asked = day, {}, set()

    def allows(self, campaign_id: int, visitor: str, cap: int, day: str) -> bool:
        self._roll(day)
        key = (campaign_id, visitor)
        entry = self.counts.get(key)
        if entry is None:
            return True
        seen = entry[0] + entry[1]
        if 2 * seen >= cap and len(self.asked) < PULL_LIMIT:
            self.asked.add(key)  # near the cap: what the other workers served matters now
        return seen < cap

    def add(self, campaign_id: int, visitor: str, day: str, serves: int = 1) -> None:
        """Count a serve (−1: take back one counted before a grant that found no room)."""
        self._roll(day)
        entry = self.counts.get((campaign_id, visitor))
        if entry is None:
            if len(self.counts) >= MAX_VISITORS:
                self._prune()
            entry = self.counts[(campaign_id, visitor)] = [0, 0]
        entry[1] += serves

    def _prune(self) -> None:
        for key in [k for k, e in self.counts.items() if not e[1]][: MAX_VISITORS // 4]:
            del self.counts[key]

    async def reconcile(self) -> None:
        jobs = [*self.old, (self.day, self.counts)]
        self.old = []
        asked, self.asked = self.asked, set()
        pushes: list[tuple[int, dict[tuple[int, str], list[int]], tuple[int, str], int]] = []
        pulls: list[tuple[int, tuple[int, str]]] = []
        pipe: list[tuple[str, tuple[Any, ...]]] = []
        sent = 0
        for day, counts in jobs:
            expiring: set[str] = set()
            for key, entry in counts.items():
                if entry[1]:
                    views = Keys(key[0], self.shards).views(day)
                    pipe.append(("hincrby", (views, key[1], entry[1])))
                    pushes.append((sent, counts, key, entry[1]))
                    sent += 1
                    expiring.add(views)
            for views in expiring:
                pipe.append(("expire", (views, VIEWS_TTL)))
                sent += 1
        for key in asked:
            known = self.counts.get(key)
            if known is None or not known[1]:
                pipe.append(("hget", (Keys(key[0], self.shards).views(self.day), key[1])))
                pulls.append((sent, key))
                sent += 1
        if not sent:
            return
        try:
            replies = await self._execute(pipe)
        except BaseException:
            self.old = [(d, c) for d, c in jobs if c is not self.counts] + self.old
            raise
        for i, counts, key, pushed in pushes:
            entry = counts[key]
            entry[0], entry[1] = int(replies[i]), entry[1] - pushed
        for i, key in pulls:
            total = int(replies[i] or 0)
            known = self.counts.get(key)
            if known is None:
                if total:
                    self.counts[key] = [total, 0]
            else:
                known[0] = max(known[0], total)

    async def _execute(self, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """The commands in round trips of `CHUNK`: the event loop serves requests between
        them instead of packing thousands of commands at once."""
        replies: list[Any] = []
        for start in range(0, len(commands), CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for name, args in commands[start : start + CHUNK]:
                getattr(pipe, name)(*args)
            replies.extend(await pipe.execute())
        return replies
