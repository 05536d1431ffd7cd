"""The matching engine: which funded campaign fills a slot.

Candidates are held per process in an index keyed by (format, size): a banner is served only
a creative of the slot's exact size, native and video any. Each bucket is sorted by eCPM,
so a request walks campaigns best-first and stops at the first tier that passes every
filter: geo, device, category, the publisher's quality, the flight dates, the frequency cap
and a free budget. A slot whose site has not proved its domain is filled only by campaigns
that opted in to unverified inventory. Equal eCPMs rotate uniformly at random.

Money is integer atomic units. A CPM campaign's impression costs ⌈bid / 1000⌉ and is
reserved in Redis before the ad is returned (one at a time: `Budgets`; in blocks per worker,
as `/x402/ad` does: `api.ads.leases`), so concurrent requests never take more than the free
budget (escrow balance − billed − reserved), nor more in one escrow epoch than the
campaign's on-chain max spend for that epoch (the escrow would clip the rest).
A CPC campaign is served while its free budget and its epoch's allowance cover one click; the
click bills the bid when it is tracked, if it still fits."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from heapq import merge
from typing import Any

from api.tracking.stream import DEFAULT_SHARDS, Keys

CPM, CPC = "cpm", "cpc"
ANY = "*"
PRIOR_CTR_CLICKS = 10  # an unproven CPC campaign is ranked at a 1 % CTR: 10 clicks
PRIOR_CTR_VIEWS = 1_000  # in 1,000 impressions, before its own numbers count
SAFE_INTEGER = 2**53 - 1  # Redis' Lua compares doubles: above this, budgets are capped


@dataclass(frozen=True)
class Creative:
    cid: str
    content_type: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Epoch:
    """An escrow epoch as seen at one moment: its number and the seconds left in it."""

    number: int
    seconds_left: int


@dataclass(frozen=True)
class EpochClock:
    """The CampaignRegistry's spend clock: epoch e (e ≥ 1) is
    [genesis + (e − 1)·length, genesis + e·length); before genesis it is epoch 0."""

    genesis: int
    length: int

    def at(self, now: float) -> Epoch:
        if now < self.genesis:
            return Epoch(0, max(1, math.ceil(self.genesis - now)))
        number = int(now - self.genesis) // self.length + 1
        return Epoch(number, max(1, math.ceil(self.genesis + number * self.length - now)))


MaxSpend = tuple[tuple[int, int], ...]  # (first epoch, max) pairs, oldest first


def max_spend_in(schedule: MaxSpend, epoch: int) -> int:
    """The max in force in `epoch`: the newest change that took effect by then; 0 before
    the first (the chain's `max_spend_in_epoch`)."""
    in_force = 0
    for first, amount in schedule:
        if first > epoch:
            break
        in_force = amount
    return in_force


@dataclass(frozen=True)
class Candidate:
    """A campaign that may serve: active, funded, its metadata as signed on-chain."""

    campaign_id: int  # on-chain id
    advertiser: str
    token: str
    bid_model: str
    bid: int
    format: str
    landing_url: str
    geo: frozenset[str]
    devices: frozenset[str]
    categories: frozenset[str]
    quality_min: int
    balance: int
    max_spend: MaxSpend  # the on-chain max per epoch: what is in force and what is pending
    starts_at: float | None
    ends_at: float | None
    creatives: tuple[Creative, ...]
    clicks: int = 0  # verified, over the catalog's CTR window (see `api.ads.catalog`)
    impressions: int = 0
    unverified_inventory: bool = False  # may serve on slots of sites not verified

    @property
    def ecpm(self) -> int:
        """Expected earnings per 1,000 impressions, in atomic units."""
        if self.bid_model == CPM:
            return self.bid
        clicks = self.clicks + PRIOR_CTR_CLICKS
        views = self.impressions + PRIOR_CTR_VIEWS
        return self.bid * 1000 * clicks // views

    @property
    def price(self) -> int:
        """What one billable event reserves: an impression (CPM) or a click (CPC)."""
        return -(-self.bid // 1000) if self.bid_model == CPM else self.bid

    def max_spend_in(self, epoch: int) -> int:
        return max_spend_in(self.max_spend, epoch)

    def creative_for(self, width: int, height: int) -> Creative | None:
        for creative in self.creatives:
            if self.format != "banner" or (creative.width, creative.height) == (width, height):
                return creative
        return None


@dataclass(frozen=True)
class AdRequest:
    format: str
    width: int
    height: int
    geo: str | None
    device: str | None
    category: str | None
    quality: int
    now: float
    visitor: str | None = None
    verified: bool = False  # the slot's site proved its domain


MAX_MERGED = 4_096  # request shapes whose merged tiers an index keeps
Tier = tuple[int, list[Candidate]]  # campaigns of one eCPM


Buckets = dict[tuple[str, str, str, str], list[Tier]]


@dataclass
class Index:
    """Candidates bucketed by (format, size, geo, device), each bucket a list of tiers of
    equal eCPM, best first; a campaign that targets no geo (or no device) sits under `*`
    and is found from every request. A slot on a site that is not verified looks only in
    `unverified`: the few campaigns that opted in, so such a request never walks the rest."""

    buckets: Buckets = field(default_factory=dict)
    unverified: Buckets = field(default_factory=dict)
    # the tiers of each request shape, merged once per snapshot on first use
    merged: dict[tuple[bool, str, str, str | None, str | None], list[Tier]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def build(cls, candidates: Iterable[Candidate]) -> Index:
        every = list(candidates)
        return cls(_buckets(every), _buckets(c for c in every if c.unverified_inventory))

    def tiers(self, request: AdRequest) -> Iterator[Tier]:
        """The tiers the request's format, size, geo and device can reach, best first;
        equal tiers of different buckets come out as one."""
        size = _size_key(request.format, request.width, request.height)
        key = (request.verified, request.format, size, request.geo, request.device)
        found = self.merged.get(key)
        if found is None:
            if len(self.merged) >= MAX_MERGED:  # the geo can come from a header: stay bounded
                return self._merge(request, size)
            found = self.merged[key] = list(self._merge(request, size))
        return iter(found)

    def _merge(self, request: AdRequest, size: str) -> Iterator[Tier]:
        geos = (ANY,) if request.geo is None else (ANY, request.geo)
        devices = (ANY,) if request.device is None else (ANY, request.device)
        buckets = self.buckets if request.verified else self.unverified
        lists = [
            bucket
            for geo in geos
            for device in devices
            if (bucket := buckets.get((request.format, size, geo, device)))
        ]
        if len(lists) == 1:
            yield from lists[0]
            return
        current: Tier | None = None
        for ecpm, members in merge(*lists, key=lambda tier: -tier[0]):
            if current is not None and current[0] == ecpm:
                current = (ecpm, current[1] + members)
                continue
            if current is not None:
                yield current
            current = (ecpm, members)
        if current is not None:
            yield current


def _buckets(candidates: Iterable[Candidate]) -> Buckets:
    grouped: dict[tuple[str, str, str, str], dict[int, list[Candidate]]] = defaultdict(dict)
    for candidate in candidates:
        ecpm = candidate.ecpm
        sizes = {_size_key(candidate.format, c.width, c.height) for c in candidate.creatives}
        for size in sizes:
            for geo in candidate.geo or {ANY}:
                for device in candidate.devices or {ANY}:
                    tiers = grouped[(candidate.format, size, geo, device)]
                    tiers.setdefault(ecpm, []).append(candidate)
    return {key: sorted(tiers.items(), key=lambda tier: -tier[0]) for key, tiers in grouped.items()}


def _size_key(format_: str, width: int | None, height: int | None) -> str:
    return f"{width}x{height}" if format_ == "banner" else ANY


def eligible(candidate: Candidate, request: AdRequest) -> bool:
    """Inventory, targeting, quality and flight: everything but budget and frequency."""
    if not request.verified and not candidate.unverified_inventory:
        return False
    if candidate.geo and request.geo not in candidate.geo:
        return False
    if candidate.devices and request.device not in candidate.devices:
        return False
    if candidate.categories and request.category not in candidate.categories:
        return False
    if request.quality < candidate.quality_min:
        return False
    if candidate.starts_at is not None and request.now < candidate.starts_at:
        return False
    return candidate.ends_at is None or request.now < candidate.ends_at


Take = Callable[[Candidate], bool]


def ranked(
    index: Index, request: AdRequest, rng: random.Random | None = None
) -> Iterator[Candidate]:
    """Eligible campaigns in serving order: best eCPM first, and within a tier of equal
    eCPM drawn uniformly at random without replacement, so equal bids share the traffic
    evenly and a request usually checks only a few campaigns."""
    randbelow = (rng or _rng).randrange
    seen: set[int] = set()
    for _, members in index.tiers(request):
        pool = list(members)
        while pool:
            i = randbelow(len(pool))
            candidate = pool[i]
            pool[i] = pool[-1]
            pool.pop()
            if candidate.campaign_id not in seen:
                seen.add(candidate.campaign_id)
                if eligible(candidate, request):
                    yield candidate


def choose(
    index: Index, request: AdRequest, take: Take, n: int = 1, rng: random.Random | None = None
) -> list[Candidate]:
    """Up to `n` campaigns for the request, in `ranked` order, each accepted by `take`
    (frequency cap and budget reservation happen there)."""
    chosen: list[Candidate] = []
    for candidate in ranked(index, request, rng):
        if take(candidate):
            chosen.append(candidate)
            if len(chosen) >= n:
                break
    return chosen


_rng = random.Random()


# One round trip per campaign considered, every key under the campaign's hash tag (see
# `api.tracking.stream.Keys`). KEYS: reserved, billed, the epoch's spend, today's views (a
# hash by visitor), the live serves (zset by expiry), this serve's hash. ARGV: price,
# balance, the epoch's max, seconds the epoch key lives, seconds the views key lives,
# visitor, frequency cap (0: none), 1 to reserve (CPM) or 0 to only check (CPC), serve id,
# when its token expires (s), seconds the serve's hash lives, epoch number.
# Answers 1 (taken), 0 (free budget), -1 (the epoch's max), -2 (frequency cap).
RESERVE = """
local price = tonumber(ARGV[1])
local cap = tonumber(ARGV[7])
if cap > 0 and tonumber(redis.call('HGET', KEYS[4], ARGV[6]) or '0') >= cap then return -2 end
local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
local billed = tonumber(redis.call('GET', KEYS[2]) or '0')
if reserved + billed + price > tonumber(ARGV[2]) then return 0 end
local in_epoch = tonumber(redis.call('GET', KEYS[3]) or '0')
if in_epoch + price > tonumber(ARGV[3]) then return -1 end
local reserve = ARGV[8] == '1'
if reserve then
  redis.call('INCRBY', KEYS[3], price)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  redis.call('INCRBY', KEYS[1], price)
  redis.call('ZADD', KEYS[5], tonumber(ARGV[10]), ARGV[9])
end
redis.call('HSET', KEYS[6], 'price', reserve and price or 0, 'epoch', ARGV[12])
redis.call('EXPIRE', KEYS[6], tonumber(ARGV[11]))
if cap > 0 then
  redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
end
return 1
"""

EPOCH_KEY_MARGIN = 3_600  # an epoch's counter outlives the epoch by this much, then expires
VIEWS_TTL = 2 * 86_400
SERVE_MARGIN = 6 * 3_600  # a serve's record outlives its token: the release job reads it


class Budgets:
    """Free budget = escrow balance − billed − reserved; the epoch's spend (reserved and
    billed) within the max in force for that epoch; and the frequency cap, all checked and
    recorded in one atomic step per campaign. Every serve is recorded (`serve:<id>`: its
    price reserved and its epoch) so tracking can tell a served ad from an invented one; a
    CPM serve also reserves its price until its impression bills it or its token expires
    (`served`). `redis` is a client of redis-py, blocking or asyncio (then use
    `reserve_async`). `/x402/ad` reserves in blocks instead (`api.ads.leases`); intake and
    the release job honour both kinds of record."""

    def __init__(self, redis: Any, shards: int = DEFAULT_SHARDS) -> None:
        self.redis = redis
        self.shards = shards
        self._script = redis.register_script(RESERVE)

    def keys(self, campaign_id: int) -> Keys:
        return Keys(campaign_id, self.shards)

    async def reserve_async(
        self,
        candidate: Candidate,
        epoch: Epoch,
        day: str,
        visitor: str | None = None,
        cap: int = 0,
        serve: Serve | None = None,
    ) -> bool:
        keys, args = self._call(candidate, epoch, day, visitor, cap, serve or Serve.new(0))
        return int(await self._script(keys=keys, args=args)) == 1

    def reserve(
        self,
        candidate: Candidate,
        epoch: Epoch,
        day: str,
        visitor: str | None = None,
        cap: int = 0,
        serve: Serve | None = None,
    ) -> bool:
        """Take `candidate` for one serve in `epoch`: a CPM impression reserves its price
        until `serve.expires_at`; a CPC campaign is only checked to afford one click (the
        click bills it when it is tracked)."""
        keys, args = self._call(candidate, epoch, day, visitor, cap, serve or Serve.new(0))
        return int(self._script(keys=keys, args=args)) == 1

    def _call(
        self,
        candidate: Candidate,
        epoch: Epoch,
        day: str,
        visitor: str | None,
        cap: int,
        serve: Serve,
    ) -> tuple[list[str], list[int | str]]:
        k = self.keys(candidate.campaign_id)
        keys = [
            k.reserved,
            k.billed,
            k.epoch(epoch.number),
            k.views(day),
            k.served,
            k.serve(serve.serve_id),
        ]
        args: list[int | str] = [
            candidate.price,
            min(candidate.balance, SAFE_INTEGER),
            min(candidate.max_spend_in(epoch.number), SAFE_INTEGER),
            epoch.seconds_left + EPOCH_KEY_MARGIN,
            VIEWS_TTL,
            visitor or "-",
            cap if visitor else 0,
            1 if candidate.bid_model == CPM else 0,
            serve.serve_id,
            serve.expires_at,
            max(1, serve.expires_at - int(time.time())) + SERVE_MARGIN,
            epoch.number,
        ]
        return keys, args


@dataclass(frozen=True)
class Serve:
    """One serve: its id (the tokens' `serve_id`) and when its tokens expire (s)."""

    serve_id: str
    expires_at: int

    @classmethod
    def new(cls, ttl_seconds: int, now: float | None = None) -> Serve:
        return cls(uuid.uuid4().hex, int(now if now is not None else time.time()) + ttl_seconds)


AMPLE = 1_000  # without Redis, serve only campaigns with this many events of budget left


def ample_budget(candidate: Candidate, epoch: Epoch) -> bool:
    """The conservative rule when nothing can be reserved: far from exhausted, in the
    escrow and in the epoch's max."""
    enough = AMPLE * candidate.price
    return candidate.balance >= enough and candidate.max_spend_in(epoch.number) >= enough
