"""The matching engine: every filter, ranking by eCPM, fair rotation among equals, and a
budget that concurrent requests can never overspend, neither the escrow balance nor the
campaign's max per escrow epoch (reservations in a real Redis)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import redis as redis_lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.ads.matching import (
    CPC,
    CPM,
    AdRequest,
    Budgets,
    Candidate,
    Creative,
    Epoch,
    EpochClock,
    Index,
    ample_budget,
    choose,
    eligible,
)
from api.campaigns.targeting import CATEGORIES
from api.tracking.stream import DEFAULT_SHARDS, Keys

NOW = 1_800_000_000.0
EPOCH = Epoch(7, 3_600)
DAY = "20261126"
BANNER = (Creative("bafkreibanner", "image/png", 300, 250),)
NATIVE = (Creative("bafkreinative", "image/png", 1200, 628),)


def keys(campaign_id: int) -> Keys:
    """The campaign's budget keys in Redis, as the ad server uses them."""
    return Keys(campaign_id, DEFAULT_SHARDS)


def campaign(campaign_id: int, **overrides) -> Candidate:
    fields = {
        "campaign_id": campaign_id,
        "advertiser": "0x" + "aa" * 20,
        "token": "0x" + "bb" * 20,
        "bid_model": CPM,
        "bid": 2_000_000,
        "format": "banner",
        "landing_url": "https://shop.example/",
        "geo": frozenset(),
        "devices": frozenset(),
        "categories": frozenset(),
        "quality_min": 0,
        "balance": 10**12,
        "max_spend": ((0, 10**15),),
        "starts_at": None,
        "ends_at": None,
        "creatives": BANNER,
    }
    return Candidate(**{**fields, **overrides})


def ask(**overrides) -> AdRequest:
    fields = {
        "format": "banner",
        "width": 300,
        "height": 250,
        "geo": "US",
        "device": "mobile",
        "category": "news",
        "quality": 50,
        "now": NOW,
        "verified": True,
    }
    return AdRequest(**{**fields, **overrides})


def served(candidates, request=None, take=lambda c: True, n=1, rng=None) -> list[int]:
    chosen = choose(Index.build(candidates), request or ask(), take, n, rng)
    return [c.campaign_id for c in chosen]


@pytest.mark.parametrize(
    ("targeting", "request_change", "serves"),
    [
        ({"geo": frozenset({"US"})}, {}, True),
        ({"geo": frozenset({"DE", "FR"})}, {}, False),
        ({"geo": frozenset({"DE"})}, {"geo": None}, False),
        ({"devices": frozenset({"mobile"})}, {}, True),
        ({"devices": frozenset({"desktop"})}, {}, False),
        ({"categories": frozenset({"news"})}, {}, True),
        ({"categories": frozenset({"crypto"})}, {}, False),
        ({"categories": frozenset({"news"})}, {"category": None}, False),
        ({"quality_min": 50}, {}, True),
        ({"quality_min": 51}, {}, False),
        ({"starts_at": NOW + 1}, {}, False),
        ({"starts_at": NOW - 1, "ends_at": NOW + 1}, {}, True),
        ({"ends_at": NOW}, {}, False),
        ({}, {"width": 728, "height": 90}, False),
        ({"format": "native", "creatives": NATIVE}, {}, False),
        (
            {"format": "native", "creatives": NATIVE},
            {"format": "native", "width": 1, "height": 1},
            True,
        ),
    ],
    ids=[
        "geo-match",
        "geo-miss",
        "geo-unknown",
        "device-match",
        "device-miss",
        "category-match",
        "category-miss",
        "category-unknown",
        "quality-equal",
        "quality-below",
        "not-started",
        "in-flight",
        "ended",
        "banner-size",
        "format",
        "native-any-size",
    ],
)
def test_each_filter(targeting, request_change, serves):
    assert served([campaign(1, **targeting)], ask(**request_change)) == ([1] if serves else [])


def test_highest_ecpm_wins_and_cpc_is_ranked_by_expected_ctr():
    cpm_low = campaign(1, bid=1_000_000)
    cpm_high = campaign(2, bid=3_000_000)
    cpc = campaign(3, bid_model=CPC, bid=200_000)  # 1 % prior CTR → eCPM 2,000,000
    assert cpc.ecpm == 2_000_000
    assert served([cpm_low, cpm_high, cpc], n=3) == [2, 3, 1]
    proven = replace(cpc, clicks=90, impressions=2_000)  # (90+10)/(2000+1000) → eCPM 6.67 M
    assert served([cpm_low, cpm_high, proven]) == [3]


def test_a_campaign_that_cannot_be_taken_gives_way_to_the_next():
    assert served([campaign(1, bid=9), campaign(2, bid=5)], take=lambda c: c.campaign_id != 1) == [
        2
    ]


def test_equal_bids_rotate_fairly():
    rng = random.Random(7)
    pool = [campaign(i) for i in range(1, 5)] + [campaign(9, bid=1)]
    counts = Counter(served(pool, rng=rng)[0] for _ in range(8_000))
    assert set(counts) == {1, 2, 3, 4}  # the lower bid never shows while equals can
    for campaign_id in (1, 2, 3, 4):
        assert abs(counts[campaign_id] - 2_000) <= 200, counts


@pytest.fixture
def budgets(redis_url):
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield Budgets(client)
    client.flushdb()


def test_concurrent_requests_stop_exactly_at_the_budget(budgets):
    ad = campaign(int(uuid.uuid4().int % 10**9), bid=2_000_000, balance=50 * 2_000)
    index = Index.build([ad])

    def one(_: int) -> int:
        return len(choose(index, ask(), lambda c: budgets.reserve(c, EPOCH, DAY)))

    with ThreadPoolExecutor(max_workers=16) as pool:
        served_count = sum(pool.map(one, range(400)))

    assert served_count == 50
    assert int(budgets.redis.get(keys(ad.campaign_id).reserved)) == ad.balance


def test_the_epoch_clock_counts_from_genesis():
    clock = EpochClock(genesis=1_000, length=3_600)
    assert clock.at(999) == Epoch(0, 1)
    assert clock.at(1_000) == Epoch(1, 3_600)
    assert clock.at(4_599.5) == Epoch(1, 1)
    assert clock.at(4_600) == Epoch(2, 3_600)


def test_the_max_per_epoch_stops_a_campaign_until_the_next_epoch(budgets):
    clock = EpochClock(genesis=int(NOW) - 10 * 3_600, length=3_600)
    ad = campaign(77, bid=1_000_000, max_spend=((0, 3_000),), balance=10**9)  # 1,000 each
    now = clock.at(NOW)
    wins = [budgets.reserve(ad, now, DAY) for _ in range(5)]
    assert wins == [True, True, True, False, False]
    assert int(budgets.redis.get(keys(77).epoch(now.number))) == 3_000
    assert 0 < budgets.redis.ttl(keys(77).epoch(now.number)) <= now.seconds_left + 3_600

    next_epoch = clock.at(NOW + now.seconds_left)
    assert next_epoch.number == now.number + 1
    assert [budgets.reserve(ad, next_epoch, DAY) for _ in range(4)] == [True] * 3 + [False]
    assert int(budgets.redis.get(keys(77).reserved)) == 6_000  # both epochs' serves await billing


def test_a_new_max_applies_from_its_epoch_on(budgets):
    """A change set in epoch 7 takes effect in epoch 8; epoch 7 keeps the max it began with."""
    ad = campaign(79, bid=1_000_000, max_spend=((0, 2_000), (8, 4_000)), balance=10**9)
    assert [budgets.reserve(ad, Epoch(7, 60), DAY) for _ in range(3)] == [True, True, False]
    assert [budgets.reserve(ad, Epoch(8, 60), DAY) for _ in range(5)] == [True] * 4 + [False]


def test_a_cpc_campaign_past_its_epoch_max_is_not_served(budgets):
    ad = campaign(80, bid_model=CPC, bid=500, max_spend=((0, 900),), balance=10**6)
    assert budgets.reserve(ad, EPOCH, DAY)
    budgets.redis.set(keys(80).epoch(EPOCH.number), 500)  # one click billed this epoch
    assert not budgets.reserve(ad, EPOCH, DAY)
    assert budgets.reserve(ad, Epoch(EPOCH.number + 1, 60), DAY)


def test_without_redis_only_campaigns_far_from_their_epoch_max_serve():
    price = 1_000
    roomy = campaign(81, bid=1_000 * price, max_spend=((0, 1_000 * price),))
    tight = campaign(82, bid=1_000 * price, max_spend=((0, 1_000 * price - 1),))
    assert ample_budget(roomy, EPOCH) and not ample_budget(tight, EPOCH)


def test_cpc_is_served_while_one_click_fits(budgets):
    ad = campaign(78, bid_model=CPC, bid=500, balance=1_200)
    assert budgets.reserve(ad, EPOCH, DAY)
    budgets.redis.set(keys(78).reserved, 800)
    assert not budgets.reserve(ad, EPOCH, DAY)
    assert budgets.redis.get(keys(78).reserved) == "800"  # serving a CPC ad reserves nothing


countries = st.sampled_from(["US", "DE", "FR", "JP"])
devices = st.sampled_from(["desktop", "mobile", "tablet"])
categories = st.sampled_from(sorted(CATEGORIES)[:4])
candidates = st.builds(
    lambda i, geo, dev, cat, q, bid, model, balance, max_spend: campaign(
        i,
        geo=frozenset(geo),
        devices=frozenset(dev),
        categories=frozenset(cat),
        quality_min=q,
        bid=bid,
        bid_model=model,
        balance=balance,
        max_spend=((0, max_spend),),
    ),
    st.integers(1, 10**6),
    st.sets(countries, max_size=2),
    st.sets(devices, max_size=2),
    st.sets(categories, max_size=2),
    st.integers(0, 100),
    st.integers(1, 5_000_000),
    st.sampled_from([CPM, CPC]),
    st.integers(0, 50_000),
    st.integers(1, 20_000),
)
requests = st.builds(
    lambda geo, dev, cat, q: ask(geo=geo, device=dev, category=cat, quality=q),
    st.none() | countries,
    st.none() | devices,
    st.none() | categories,
    st.integers(0, 100),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pool=st.lists(candidates, max_size=12, unique_by=lambda c: c.campaign_id),
    traffic=st.lists(requests, min_size=1, max_size=40),
)
def test_no_served_ad_breaks_its_targeting_or_budget(budgets, pool, traffic):
    budgets.redis.flushdb()
    index = Index.build(pool)
    spent: Counter[int] = Counter()
    for request in traffic:
        for chosen in choose(index, request, lambda c: budgets.reserve(c, EPOCH, DAY), n=2):
            assert eligible(chosen, request)
            if chosen.bid_model == CPM:
                spent[chosen.campaign_id] += chosen.price
    for ad in pool:
        assert spent[ad.campaign_id] <= ad.balance
        assert spent[ad.campaign_id] <= ad.max_spend_in(EPOCH.number)
        assert spent[ad.campaign_id] == int(budgets.redis.get(keys(ad.campaign_id).reserved) or 0)


def test_a_slot_on_an_unverified_site_gets_only_campaigns_that_opted_in():
    proven_only = campaign(1, bid=3_000_000)
    anywhere = campaign(2, bid=1_000_000, unverified_inventory=True)
    index = Index.build([proven_only, anywhere])

    assert served([proven_only, anywhere], ask(verified=True)) == [1]
    assert served([proven_only, anywhere], ask(verified=False)) == [2]
    assert served([proven_only], ask(verified=False)) == []
    # the opted-in campaigns are bucketed apart: such a request never walks the others
    bucket = index.unverified[("banner", "300x250", "*", "*")]
    assert [c.campaign_id for _, tier in bucket for c in tier] == [2]
