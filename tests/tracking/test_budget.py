"""The budget model on a real Redis: free budget = balance − billed − reserved never goes
negative, whatever serving, tracking and the release job do at the same time; a verified
impression turns its reservation into billed spend exactly once; a reservation whose token
expired unused is given back, once."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as redis_lib
import redis.asyncio
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.ads import tokens
from api.ads.catalog import Catalog, Snapshot
from api.ads.matching import Budgets, Candidate, Epoch, Serve
from api.tracking import jobs
from api.tracking.intake import Intake, Visit
from api.tracking.stream import DEFAULT_SHARDS, Keys
from tests.tracking.conftest import (
    BROWSER,
    CPM_ID,
    CPM_PRICE,
    PERSON_IP,
    PUBLISHER,
    SECRET,
    SLOT,
    TOKEN,
    campaign,
    catalog_data,
    impress,
    impression_token,
)

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DAY = "20261206"


class Network:
    """Serving (`Budgets`, as `/x402/ad` calls it) and tracking (`Intake`, as `/track/…`
    calls it) of one campaign, on one event loop, against the real Redis."""

    def __init__(self, settings: Any, data: dict[str, Any]) -> None:
        self.sync = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
        self.catalog = Catalog(None, self.sync, settings.chain_id)
        self.catalog.snapshot = Snapshot.of(data)
        self.loop = asyncio.new_event_loop()
        self.cache = redis.asyncio.Redis.from_url(settings.redis_url, decode_responses=True)
        self.intake = Intake(settings, self.cache, self.catalog)
        self.budgets = Budgets(self.cache, DEFAULT_SHARDS)
        self.ttl = settings.ad_token_ttl_seconds

    def candidate(self, campaign_id: int) -> Candidate:
        found = self.intake.campaign(campaign_id)
        assert found is not None
        return found

    def epoch(self) -> Epoch:
        clock = self.catalog.current().clock
        assert clock is not None
        return clock.at(time.time())

    async def serve(self, ad: Candidate, ttl: int | None = None) -> str | None:
        """Reserve like `_fill` does; the impression token of the serve if taken."""
        serve = Serve.new(self.ttl if ttl is None else ttl)
        if not await self.budgets.reserve_async(ad, self.epoch(), DAY, serve=serve):
            return None
        return self.sign(ad, serve)

    def sign(self, ad: Candidate, serve: Serve) -> str:
        """The impression token `_ad` signs for `serve` of `ad`."""
        claims = {
            "serve_id": serve.serve_id,
            "campaign_id": ad.campaign_id,
            "slot_id": SLOT,
            "publisher": PUBLISHER,
            "visitor": "v",
            "bid_model": ad.bid_model,
            "price": ad.price,
            "bid": ad.bid,
            "token": TOKEN,
            "issued_at": int(time.time()),
            "expires_at": serve.expires_at,
        }
        return tokens.sign(SECRET, "imp", claims)

    async def track(self, kind: str, token: str, user_agent: str = BROWSER) -> tuple[str, bool]:
        if kind == "click":
            try:
                claims = tokens.verify(SECRET, token, "imp").__dict__
            except tokens.Expired as exc:
                claims = exc.event.__dict__
            token = tokens.sign(SECRET, "click", {k: v for k, v in claims.items() if k != "kind"})
        outcome = await self.intake.record(kind, token, Visit(PERSON_IP, user_agent))
        assert outcome.recorded
        return outcome.verdict, outcome.billed

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def money(self, campaign_id: int) -> dict[str, int]:
        k = Keys(campaign_id, DEFAULT_SHARDS)
        return {
            "reserved": int(self.sync.get(k.reserved) or 0),
            "billed": int(self.sync.get(k.billed) or 0),
            "epoch": int(self.sync.get(k.epoch(self.epoch().number)) or 0),
        }

    def close(self) -> None:
        self.run(self.cache.aclose())
        self.loop.close()
        self.sync.close()


@pytest.fixture
def network(settings) -> Iterator[Any]:
    made: list[Network] = []

    def make(*campaigns: dict[str, Any]) -> Network:
        net = Network(settings, catalog_data(*campaigns))
        net.sync.flushdb()
        made.append(net)
        return net

    yield make
    for net in made:
        net.sync.flushdb()
        net.close()


def test_a_verified_impression_moves_its_reservation_to_billed_once(site):
    token = impression_token(site.ad())
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": 0, "served": 1}
    for _ in range(5):
        impress(site.browser, token)
    assert site.money(CPM_ID) == {"reserved": 0, "billed": CPM_PRICE, "served": 0}
    jobs.release(site.redis, DEFAULT_SHARDS, now=time.time() + 10**6)  # nothing left to release
    assert site.money(CPM_ID) == {"reserved": 0, "billed": CPM_PRICE, "served": 0}


def test_an_unused_reservation_is_released_when_its_token_expires(site, settings):
    site.ad()
    served = site.ad()
    impress(site.browser, impression_token(served))
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": CPM_PRICE, "served": 1}
    k = Keys(CPM_ID, DEFAULT_SHARDS)
    (epoch_key,) = site.redis.keys(k.epoch(0).rsplit(":", 1)[0] + ":*")
    assert int(site.redis.get(epoch_key)) == 2 * CPM_PRICE

    assert jobs.release(site.redis, DEFAULT_SHARDS) == (0, 0)  # not expired yet
    later = time.time() + settings.ad_token_ttl_seconds + jobs.GRACE_SECONDS + 1
    assert jobs.release(site.redis, DEFAULT_SHARDS, now=later) == (1, CPM_PRICE)
    assert site.money(CPM_ID) == {"reserved": 0, "billed": CPM_PRICE, "served": 0}
    assert int(site.redis.get(epoch_key)) == CPM_PRICE  # the epoch's max has room again
    assert jobs.release(site.redis, DEFAULT_SHARDS, now=later) == (0, 0)  # once only


def test_the_release_job_runs_from_settings(site, settings):
    site.ad()
    jobs.release_expired(settings)  # nothing due: no change
    assert site.money(CPM_ID)["reserved"] == CPM_PRICE


def test_released_budget_serves_again(network):
    net = network(campaign(CPM_ID, balance=2 * CPM_PRICE))
    ad = net.candidate(CPM_ID)
    assert [net.run(net.serve(ad)) is not None for _ in range(3)] == [True, True, False]
    jobs.release(net.sync, DEFAULT_SHARDS, now=time.time() + 10**6)
    assert net.run(net.serve(ad)) is not None


def test_free_budget_never_goes_negative_under_concurrent_serving_and_tracking(network):
    """Hundreds of serves, impressions (some repeated, some by bots), clicks and release
    runs at once; the sums add up to the money model at the end and free budget is never
    below zero in between."""
    price, room = CPM_PRICE, 40
    net = network(
        campaign(CPM_ID, balance=room * price),
        campaign(CPM_ID + 8, bid_model="cpc", bid=7_000, balance=25 * 7_000),
    )
    cpm, cpc = net.candidate(CPM_ID), net.candidate(CPM_ID + 8)
    rng = random.Random(3)
    lows: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for ad in (cpm, cpc):
                k = Keys(ad.campaign_id, DEFAULT_SHARDS)
                reserved, billed = net.sync.mget(k.reserved, k.billed)
                lows.append(ad.balance - int(reserved or 0) - int(billed or 0))

    def release_often() -> None:  # the job, releasing the short-lived serves as they expire
        while not stop.is_set():
            jobs.release(net.sync, DEFAULT_SHARDS, now=time.time() + jobs.GRACE_SECONDS)

    verified: dict[int, int] = {CPM_ID: 0, CPM_ID + 8: 0}

    async def visitor(ad: Candidate) -> None:
        token = await net.serve(ad, ttl=rng.choice([1, 900]))
        if token is None:
            return
        await asyncio.sleep(rng.random() / 100)
        user_agent = GOOGLEBOT if rng.random() < 0.1 else BROWSER
        for _ in range(rng.choice([0, 1, 1, 2])):
            _, billed = await net.track("impression", token, user_agent)
            verified[ad.campaign_id] += billed
        for _ in range(rng.choice([0, 1, 2]) if ad.bid_model == "cpc" else 0):
            _, billed = await net.track("click", token, user_agent)
            verified[ad.campaign_id] += billed

    async def crowd() -> None:
        gate = asyncio.Semaphore(64)  # connections the client's pool holds

        async def one(i: int) -> None:
            async with gate:
                await visitor(cpm if i % 2 else cpc)

        await asyncio.gather(*(one(i) for i in range(400)))

    threads = [threading.Thread(target=watch), threading.Thread(target=release_often)]
    for thread in threads:
        thread.start()
    try:
        net.run(crowd())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    jobs.release(net.sync, DEFAULT_SHARDS, now=time.time() + 10**6)

    assert lows and min(lows) >= 0
    cpm_money, cpc_money = net.money(CPM_ID), net.money(CPM_ID + 8)
    assert cpm_money == {
        "reserved": 0,
        "billed": verified[CPM_ID] * price,
        "epoch": cpm_money["billed"],
    }
    assert 0 < cpm_money["billed"] <= room * price
    assert cpc_money["reserved"] == 0 and cpc_money["billed"] == verified[CPM_ID + 8] * 7_000
    assert 0 < cpc_money["billed"] <= cpc.balance


@dataclass
class Model:
    """What the money model says the keys hold."""

    balance: int
    max_spend: int
    price: int
    cpm: bool
    reserved: int = 0
    billed: int = 0
    epoch: int = 0
    live: set[int] = field(default_factory=set)  # served, reservation live (CPM)
    served: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)  # impression token used
    clicked: set[int] = field(default_factory=set)
    released: set[int] = field(default_factory=set)  # its serve record is gone

    def fits(self) -> bool:
        return (
            self.reserved + self.billed + self.price <= self.balance
            and self.epoch + self.price <= self.max_spend
        )


operations = st.lists(
    st.one_of(
        st.just(("serve", 0, False)),
        st.tuples(st.just("impression"), st.integers(0, 12), st.booleans()),
        st.tuples(st.just("click"), st.integers(0, 12), st.just(False)),
        st.just(("release", 0, False)),
    ),
    max_size=40,
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cpm=st.booleans(),
    bid=st.integers(1, 3_000_000),
    slack=st.integers(0, 6),
    epoch_slack=st.integers(0, 8),
    ops=operations,
)
def test_every_money_path_keeps_to_the_model(network, cpm, bid, slack, epoch_slack, ops):
    ad_data = campaign(CPM_ID, bid_model="cpm" if cpm else "cpc", bid=bid)
    price = -(-bid // 1000) if cpm else bid
    model = Model(price * slack, price * epoch_slack, price, cpm)
    net = network({**ad_data, "balance": model.balance, "max_spend": [[0, model.max_spend]]})
    ad = net.candidate(CPM_ID)
    served: list[str] = []
    for op, i, bot in ops:
        if op == "serve":
            fits = model.fits()
            token = net.run(net.serve(ad))
            assert (token is not None) == fits
            if token is not None:
                served.append(token)
                model.served.add(len(served) - 1)
                if cpm:
                    model.live.add(len(served) - 1)
                    model.reserved += price
                    model.epoch += price
        elif op == "release":
            jobs.release(net.sync, DEFAULT_SHARDS, now=time.time() + 10**6)
            model.reserved -= price * len(model.live)
            model.epoch -= price * len(model.live)
            model.released |= model.live
            model.live.clear()
        elif i < len(served):
            verdict, billed = net.run(net.track(op, served[i], GOOGLEBOT if bot else BROWSER))
            if op == "impression":
                first = i not in model.seen
                model.seen.add(i)
                should_bill = first and not bot and i in model.live
                if should_bill:
                    model.live.discard(i)
                    model.reserved -= price
                    model.billed += price
                expected = "duplicate" if not first else "bot" if bot else ""
                if first and not bot and cpm and not should_bill:
                    expected = "not_served"
            else:
                first = i not in model.clicked
                model.clicked.add(i)
                should_bill = first and not cpm and i in model.seen and model.fits()
                if not first:
                    expected = "duplicate"
                elif i in model.released:
                    expected = "not_served"
                else:
                    expected = "" if i in model.seen else "click_without_impression"
                if expected:
                    should_bill = False
                elif should_bill:
                    model.billed += price
                    model.epoch += price
            assert (verdict, billed) == (expected, should_bill), (op, i, bot)
        money = net.money(CPM_ID)
        assert money == {"reserved": model.reserved, "billed": model.billed, "epoch": model.epoch}
        assert model.balance - money["reserved"] - money["billed"] >= 0
        assert money["epoch"] <= model.max_spend
