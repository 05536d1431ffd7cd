"""The matching engine: which funded campaign fills a slot.

Candidates are held per process in an index keyed by (format, size): a banner is served only
a creative of the slot's exact size, native and video any. Each bucket is sorted by eCPM,
so a request walks campaigns best-first and stops at the first tier that passes every
filter: geo, device, category, the publisher's quality, the flight dates, the frequency cap
and a free budget. Equal eCPMs rotate uniformly at random.

Money is integer atomic units. A CPM campaign's impression costs ⌈bid / 1000⌉ and is
reserved in Redis before the ad is returned (see `Budgets`), so concurrent requests never
reserve more than the escrow balance or the daily budget. A CPC campaign is served while its
free budget covers one click; the click reserves the bid when it is tracked."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from heapq import merge
from typing import Any

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
    daily_budget: int | None
    starts_at: float | None
    ends_at: float | None
    creatives: tuple[Creative, ...]
    clicks: int = 0
    impressions: int = 0

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


Tier = tuple[int, list[Candidate]]  # campaigns of one eCPM


@dataclass
class Index:
    """Candidates bucketed by (format, size, geo, device), each bucket a list of tiers of
    equal eCPM, best first; a campaign that targets no geo (or no device) sits under `*`
    and is found from every request."""

    buckets: dict[tuple[str, str, str, str], list[Tier]] = field(default_factory=dict)

    @classmethod
    def build(cls, candidates: Iterable[Candidate]) -> Index:
        grouped: dict[tuple[str, str, str, str], dict[int, list[Candidate]]] = defaultdict(dict)
        for candidate in candidates:
            ecpm = candidate.ecpm
            sizes = {_size_key(candidate.format, c.width, c.height) for c in candidate.creatives}
            for size in sizes:
                for geo in candidate.geo or {ANY}:
                    for device in candidate.devices or {ANY}:
                        tiers = grouped[(candidate.format, size, geo, device)]
                        tiers.setdefault(ecpm, []).append(candidate)
        buckets = {
            key: sorted(tiers.items(), key=lambda tier: -tier[0]) for key, tiers in grouped.items()
        }
        return cls(buckets)

    def tiers(self, request: AdRequest) -> Iterator[Tier]:
        """The tiers the request's format, size, geo and device can reach, best first;
        equal tiers of different buckets come out as one."""
        size = _size_key(request.format, request.width, request.height)
        geos = (ANY,) if request.geo is None else (ANY, request.geo)
        devices = (ANY,) if request.device is None else (ANY, request.device)
        lists = [
            bucket
            for geo in geos
            for device in devices
            if (bucket := self.buckets.get((request.format, size, geo, device)))
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


def _size_key(format_: str, width: int | None, height: int | None) -> str:
    return f"{width}x{height}" if format_ == "banner" else ANY


def eligible(candidate: Candidate, request: AdRequest) -> bool:
    """Targeting, quality and flight: everything but budget and frequency."""
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


# One round trip per campaign considered. KEYS: reserved spend, today's spend, the
# visitor's views today (a hash by campaign). ARGV: price, balance, daily budget (-1: none),
# ttl, campaign, frequency cap (0: none), 1 to reserve (CPM) or 0 to only check (CPC).
# Answers 1 (taken), 0 (balance), -1 (daily budget), -2 (frequency cap).
RESERVE = """
local price = tonumber(ARGV[1])
local cap = tonumber(ARGV[6])
if cap > 0 and tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0') >= cap then return -2 end
local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
if reserved + price > tonumber(ARGV[2]) then return 0 end
local ttl = tonumber(ARGV[4])
if ARGV[7] == '1' then
  local daily = tonumber(ARGV[3])
  if daily >= 0 then
    local today = tonumber(redis.call('GET', KEYS[2]) or '0')
    if today + price > daily then return -1 end
    redis.call('INCRBY', KEYS[2], price)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  redis.call('INCRBY', KEYS[1], price)
end
if cap > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return 1
"""


def reserved_key(campaign_id: int) -> str:
    """Spend reserved by served events and not settled yet; settlement takes off what it
    moved out of escrow."""
    return f"buzzer:ads:reserved:{campaign_id}"


def daily_key(campaign_id: int, day: str) -> str:
    return f"buzzer:ads:daily:{campaign_id}:{day}"


def views_key(visitor: str, day: str) -> str:
    return f"buzzer:ads:views:{visitor}:{day}"


class Budgets:
    """Free budget = escrow balance − reserved; daily spend within the daily budget; and
    the frequency cap, all checked and recorded in one atomic step per campaign. `redis`
    is a client of redis-py, blocking or asyncio (then use `reserve_async`)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._script = redis.register_script(RESERVE)

    async def reserve_async(
        self, candidate: Candidate, day: str, visitor: str | None = None, cap: int = 0
    ) -> bool:
        keys, args = self._call(candidate, day, visitor, cap)
        return int(await self._script(keys=keys, args=args)) == 1

    def reserve(
        self, candidate: Candidate, day: str, visitor: str | None = None, cap: int = 0
    ) -> bool:
        """Take `candidate` for one serve: a CPM impression reserves its price; a CPC
        campaign is only checked to afford one click (the click reserves it)."""
        keys, args = self._call(candidate, day, visitor, cap)
        return int(self._script(keys=keys, args=args)) == 1

    @staticmethod
    def _call(
        candidate: Candidate, day: str, visitor: str | None, cap: int
    ) -> tuple[list[str], list[int]]:
        balance = min(candidate.balance, SAFE_INTEGER)
        daily = -1 if candidate.daily_budget is None else min(candidate.daily_budget, SAFE_INTEGER)
        keys = [
            reserved_key(candidate.campaign_id),
            daily_key(candidate.campaign_id, day),
            views_key(visitor or "-", day),
        ]
        args = [
            candidate.price,
            balance,
            daily,
            2 * 86_400,
            candidate.campaign_id,
            cap if visitor else 0,
            1 if candidate.bid_model == CPM else 0,
        ]
        return keys, args


AMPLE = 1_000  # without Redis, serve only campaigns with this many events of budget left


def ample_budget(candidate: Candidate) -> bool:
    """The conservative rule when nothing can be reserved: far from exhausted."""
    return candidate.balance >= AMPLE * candidate.price
