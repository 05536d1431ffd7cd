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


@dataclass
class Index:
    """Candidates bucketed by (format, size, geo, device), each bucket best-first; a campaign
    that targets no geo (or no device) sits under `*` and is found from every request."""

    buckets: dict[tuple[str, str, str, str], list[Candidate]] = field(default_factory=dict)
    size: int = 0

    @classmethod
    def build(cls, candidates: Iterable[Candidate]) -> Index:
        buckets: dict[tuple[str, str, str, str], list[Candidate]] = defaultdict(list)
        count = 0
        for candidate in candidates:
            count += 1
            sizes = {_size_key(candidate.format, c.width, c.height) for c in candidate.creatives}
            for size in sizes:
                for geo in candidate.geo or {ANY}:
                    for device in candidate.devices or {ANY}:
                        buckets[(candidate.format, size, geo, device)].append(candidate)
        for bucket in buckets.values():
            bucket.sort(key=lambda c: -c.ecpm)
        return cls(dict(buckets), count)

    def walk(self, request: AdRequest) -> Iterator[Candidate]:
        """Every candidate the request's format, size, geo and device can reach, best-first."""
        size = _size_key(request.format, request.width, request.height)
        geos = {ANY} if request.geo is None else {ANY, request.geo}
        devices = {ANY} if request.device is None else {ANY, request.device}
        lists = [
            bucket
            for geo in geos
            for device in devices
            if (bucket := self.buckets.get((request.format, size, geo, device)))
        ]
        yield from merge(*lists, key=lambda c: -c.ecpm)


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


def choose(
    index: Index, request: AdRequest, take: Take, n: int = 1, rng: random.Random | None = None
) -> list[Candidate]:
    """Up to `n` campaigns for the request, best eCPM first. `take` is asked for each
    eligible campaign in turn (within a tier of equal eCPM, in random order) and says whether
    it could be served: frequency cap and budget reservation happen there."""
    rng = rng or random.Random()
    chosen: list[Candidate] = []
    seen: set[int] = set()
    tier: list[Candidate] = []
    tier_ecpm: int | None = None

    def settle_tier() -> None:
        rng.shuffle(tier)
        for candidate in tier:
            if len(chosen) < n and take(candidate):
                chosen.append(candidate)
        tier.clear()

    for candidate in index.walk(request):
        if candidate.campaign_id in seen or not eligible(candidate, request):
            continue
        seen.add(candidate.campaign_id)
        if candidate.ecpm != tier_ecpm:
            settle_tier()
            if len(chosen) >= n:
                return chosen
            tier_ecpm = candidate.ecpm
        tier.append(candidate)
    settle_tier()
    return chosen


# KEYS: reserved spend, today's spend. ARGV: price, balance, daily budget (-1: none), ttl.
# Reserves the price only if it fits both; answers 1 (reserved), 0 (balance), -1 (daily).
RESERVE = """
local price = tonumber(ARGV[1])
local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
if reserved + price > tonumber(ARGV[2]) then return 0 end
local daily = tonumber(ARGV[3])
if daily >= 0 then
  local today = tonumber(redis.call('GET', KEYS[2]) or '0')
  if today + price > daily then return -1 end
  redis.call('INCRBY', KEYS[2], price)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
redis.call('INCRBY', KEYS[1], price)
return 1
"""


def reserved_key(campaign_id: int) -> str:
    """Spend reserved by served events and not settled yet; settlement takes off what it
    moved out of escrow."""
    return f"buzzer:ads:reserved:{campaign_id}"


def daily_key(campaign_id: int, day: str) -> str:
    return f"buzzer:ads:daily:{campaign_id}:{day}"


class Budgets:
    """Free budget = escrow balance − reserved; daily spend within the daily budget."""

    def __init__(self, redis: object) -> None:
        self.redis = redis
        self._script = redis.register_script(RESERVE)  # type: ignore[attr-defined]

    def reserve(self, candidate: Candidate, day: str) -> bool:
        """Reserve one impression of a CPM campaign; for CPC only check a click would fit."""
        balance = min(candidate.balance, SAFE_INTEGER)
        if candidate.bid_model == CPC:
            reserved = int(self.redis.get(reserved_key(candidate.campaign_id)) or 0)  # type: ignore[attr-defined]
            return balance - reserved >= candidate.price
        daily = -1 if candidate.daily_budget is None else min(candidate.daily_budget, SAFE_INTEGER)
        keys = [reserved_key(candidate.campaign_id), daily_key(candidate.campaign_id, day)]
        return int(self._script(keys=keys, args=[candidate.price, balance, daily, 2 * 86_400])) == 1

    def release(self, candidate: Candidate, day: str) -> None:
        """Give back a reservation whose ad was not served after all."""
        if candidate.bid_model == CPM:
            pipe = self.redis.pipeline()  # type: ignore[attr-defined]
            pipe.decrby(reserved_key(candidate.campaign_id), candidate.price)
            if candidate.daily_budget is not None:
                pipe.decrby(daily_key(candidate.campaign_id, day), candidate.price)
            pipe.execute()


AMPLE = 1_000  # without Redis, serve only campaigns with this many events of budget left


def ample_budget(candidate: Candidate, reserved: int) -> bool:
    """The conservative rule when nothing can be reserved: far from exhausted."""
    return candidate.balance - reserved >= AMPLE * candidate.price
