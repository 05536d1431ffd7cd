"""Budget leases and local frequency counts (`api.ads.leases`) on the real Redis, through
`GET /x402/ad` and `/track/impression` of real apps: two workers (two apps sharing Redis, on
one event loop) under 400 concurrent requests never serve past a small budget, every
impression tracked right after its ad is billed, a busy campaign is served without a round
trip per request, shutdown gives back what a worker's leases did not serve, and a crashed
worker's leases come back when their last token expires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.ads.catalog import Snapshot
from api.ads.leases import LEASE_SECONDS, Demand, Leases
from api.core.settings import Settings
from api.main import create_app
from api.tracking import jobs
from api.tracking.stream import DEFAULT_SHARDS, Keys
from tests.api.conftest import SECRET  # noqa: F401 (fixture used by name)
from tests.tracking.conftest import (  # noqa: F401 (settings: a fixture used by name)
    BROWSER,
    CPM_ID,
    CPM_PRICE,
    SLOT,
    campaign,
    catalog_data,
    settings,
)
from tests.tracking.test_budget import network  # noqa: F401 (fixture used by name)

QUERY = {"pub_id": "news-example", "slot_id": SLOT, "format": "banner"}


class Worker:
    """One API worker: an app with its lifespan (lease manager included) and a client."""

    def __init__(self, settings: Settings, data: dict[str, Any]) -> None:
        self.app = create_app(settings)
        self.data = data
        self._life: Any = None

    async def __aenter__(self) -> Worker:
        self._life = self.app.router.lifespan_context(self.app)
        await self._life.__aenter__()
        self.app.state.serving.catalog.snapshot = Snapshot.of(self.data)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._life.__aexit__(None, None, None)

    def client(self, ip: str = "203.0.113.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 50_000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    async def ad(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        reply = await client.get("/x402/ad", params=QUERY, headers={"User-Agent": BROWSER})
        assert reply.status_code in (200, 204), reply.text
        return reply.json() if reply.status_code == 200 else None

    async def impress(self, client: httpx.AsyncClient, ad: dict[str, Any]) -> None:
        token = ad["impression_url"].split("token=", 1)[1]
        reply = await client.post(
            "/track/impression", params={"token": token}, headers={"User-Agent": BROWSER}
        )
        assert reply.status_code == 204


@pytest.fixture
def cache(settings: Settings) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def money(cache: redis_lib.Redis, campaign_id: int = CPM_ID) -> dict[str, int]:
    k = Keys(campaign_id, DEFAULT_SHARDS)
    epochs = cache.keys(k.epoch(0).rsplit(":", 1)[0] + ":*")
    return {
        "reserved": int(cache.get(k.reserved) or 0),
        "billed": int(cache.get(k.billed) or 0),
        "epoch": sum(int(cache.get(e) or 0) for e in epochs),
    }


def test_two_workers_under_400_concurrent_requests_serve_no_more_than_the_budget(settings, cache):
    """Budget over-delivery is 0: a campaign with room for 50 impressions, 400 requests at
    once split over two workers, each impression sent right after its ad. At most 50 ads,
    each of them billed (none `not_served` by a race), free budget never below 0, and
    nothing reserved once both workers stopped."""
    budget = 50
    data = catalog_data(campaign(CPM_ID, balance=budget * CPM_PRICE))
    lows: list[int] = []

    async def run() -> list[dict[str, Any]]:
        async with Worker(settings, data) as one, Worker(settings, data) as two:
            clients = [one.client(), two.client()]
            gate = asyncio.Semaphore(100)

            async def visit(i: int) -> dict[str, Any] | None:
                worker, client = (one, clients[0]) if i % 2 else (two, clients[1])
                async with gate:
                    ad = await worker.ad(client)
                    if ad is not None:
                        await worker.impress(client, ad)
                    m = money(cache)
                    lows.append(budget * CPM_PRICE - m["reserved"] - m["billed"])
                    return ad

            served = await asyncio.gather(*(visit(i) for i in range(400)))
            for client in clients:
                await client.aclose()
        return [ad for ad in served if ad is not None]

    served = asyncio.run(run())
    over = len(served) - budget
    print(f"\nbudget of {budget} impressions, 400 concurrent requests on 2 workers:"
          f" {len(served)} served, over-delivery {max(0, over)}")  # fmt: skip
    assert len(served) == budget  # the budget is used up and never exceeded
    assert len({ad["ad_id"] for ad in served}) == budget
    assert min(lows) >= 0
    assert money(cache) == {
        "reserved": 0,
        "billed": budget * CPM_PRICE,
        "epoch": budget * CPM_PRICE,
    }


def test_the_frequency_cap_counted_per_worker_stays_within_its_bound(settings, cache):
    """One visitor, cap 3, 400 concurrent requests over two workers: each worker stops at
    the cap on its own count, so at most W · cap = 6 before the counts meet (over-delivery
    ≤ (W − 1) · cap); once reconciled, neither serves that visitor again."""
    cap, workers = 3, 2
    capped = settings.model_copy(update={"frequency_cap": cap})
    data = catalog_data(campaign(CPM_ID))

    async def run() -> tuple[int, int]:
        async with Worker(capped, data) as one, Worker(capped, data) as two:
            pairs = [(one, one.client()), (two, two.client())]
            burst = await asyncio.gather(*(pairs[i % 2][0].ad(pairs[i % 2][1]) for i in range(400)))
            await asyncio.sleep(1.2)  # a reconcile or two
            later = [await w.ad(c) for w, c in pairs for _ in range(3)]
            for _, client in pairs:
                await client.aclose()
        return sum(ad is not None for ad in burst), sum(ad is not None for ad in later)

    burst, later = asyncio.run(run())
    print(f"\nfrequency cap {cap}, 400 concurrent requests by one visitor on {workers} workers:"
          f" {burst} served (bound {cap} + {(workers - 1) * cap})")  # fmt: skip
    assert cap <= burst <= workers * cap
    assert later == 0


async def _busy(worker: Worker, client: httpx.AsyncClient, seconds: float) -> list[dict[str, Any]]:
    """Ads for `seconds` of steady traffic: long enough for a whole window of its rate."""
    ads = []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        ad = await worker.ad(client)
        assert ad is not None
        ads.append(ad)
    return ads


def test_a_busy_campaign_is_served_without_a_round_trip_per_request(settings, cache):
    data = catalog_data(campaign(CPM_ID))

    async def run() -> tuple[int, int]:
        async with Worker(settings, data) as worker:
            client = worker.client()
            await _busy(worker, client, 2.2)
            before = cache.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            ads = await asyncio.gather(*(worker.ad(client) for _ in range(300)))
            after = cache.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            await client.aclose()
        return sum(ad is not None for ad in ads), after - before

    served, scripts = asyncio.run(run())
    assert served == 300
    assert scripts <= 5  # lease grants and closes, not one reservation per ad


def test_shutdown_gives_back_what_the_leases_did_not_serve(settings, cache):
    """A busy worker holds more than it served; stopping it leaves reserved at what its
    served, not yet impressed ads hold."""
    data = catalog_data(campaign(CPM_ID))

    async def run() -> tuple[int, dict[str, int]]:
        async with Worker(settings, data) as worker:
            client = worker.client()
            ads = await _busy(worker, client, 2.2)
            for ad in ads[:5]:
                await worker.impress(client, ad)
            held = money(cache)
            await client.aclose()
        return len(ads), held

    served, held = asyncio.run(run())
    assert held["reserved"] > (served - 5) * CPM_PRICE  # a lease's unused part
    assert money(cache) == {
        "reserved": (served - 5) * CPM_PRICE,
        "billed": 5 * CPM_PRICE,
        "epoch": served * CPM_PRICE,
    }


def test_a_crashed_workers_leases_come_back_when_their_last_token_expires(settings, cache):
    """A worker dies holding a lease (never closed, what it served unknown): it counts as
    fully served, its tokens still bill, and the release job gives the rest back once the
    last token it could have issued has expired, not before."""
    data = catalog_data(campaign(CPM_ID))

    async def run() -> tuple[list[dict[str, Any]], int]:
        async with Worker(settings, data) as worker:
            client = worker.client()
            ads = await _busy(worker, client, 2.2)
            leases = worker.app.state.serving.leases
            open_leases = [
                lease for d in leases.demand.values() for lease in (d.lease, d.spare) if lease
            ]
            unused = sum(lease.count - lease.served for lease in open_leases) * CPM_PRICE
            leases.demand.clear()  # the process is gone: nothing closes its leases
            leases.closing.clear()
            for ad in ads[:3]:  # its ads are still shown and tracked
                await worker.impress(client, ad)
            await client.aclose()
        return ads, unused

    _, unused = asyncio.run(run())
    ended = time.time()
    ttl = settings.ad_token_ttl_seconds
    assert unused > 0
    assert money(cache)["billed"] == 3 * CPM_PRICE

    # every token served so far has expired; the dead worker could still have served more
    # from its lease until the lease's end: that part is held
    jobs.release(cache, DEFAULT_SHARDS, now=ended + ttl + jobs.GRACE_SECONDS)
    assert money(cache)["reserved"] >= unused
    last_token = ended + LEASE_SECONDS + ttl + jobs.GRACE_SECONDS + 1
    count, amount = jobs.release(cache, DEFAULT_SHARDS, now=last_token)
    assert count >= 1 and amount >= unused
    assert money(cache) == {"reserved": 0, "billed": 3 * CPM_PRICE, "epoch": 3 * CPM_PRICE}


# -- the accounting of leases, as a property ------------------------------------------------

lease_ops = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 12)),
        st.tuples(st.just("serve"), st.integers(1, 8)),
        st.tuples(st.just("impress"), st.integers(0, 60)),
        st.tuples(st.just("close"), st.just(0)),
    ),
    max_size=30,
)


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(slack=st.integers(1, 40), ops=lease_ops)
def test_leases_keep_every_unit_of_budget_accounted_for(network, slack, ops):
    """Leases of any size, served from in any amount, their ads impressed in any order and
    more than once, closed at any point, then the worker stops and the release job runs
    past every token: billed + reserved never exceeds the balance, each served ad bills its
    price once, and in the end nothing is reserved and the epoch's spend is what was billed."""
    balance = slack * CPM_PRICE
    net = network({**campaign(CPM_ID), "balance": balance})
    ad = net.candidate(CPM_ID)
    leases = Leases(net.cache, DEFAULT_SHARDS)
    demand = leases.demand.setdefault(CPM_ID, Demand())
    ttl = net.ttl
    tokens_served: list[str] = []
    impressed: set[int] = set()
    for op, arg in ops:
        now = time.time()
        if op == "grant" and demand.lease is None:
            net.run(leases._lease(demand, ad, net.epoch(), now, ttl, arg))
        elif op == "serve":
            for _ in range(arg):
                serve = leases.take(ad, net.epoch(), now, ttl)
                if serve is None:
                    break
                tokens_served.append(net.sign(ad, serve))
        elif op == "impress" and tokens_served:
            i = arg % len(tokens_served)
            verdict, billed = net.run(net.track("impression", tokens_served[i]))
            assert billed == (i not in impressed), verdict
            impressed.add(i)
        elif op == "close":
            leases._retire(demand)
            net.run(leases.close_leases())
        m = net.money(CPM_ID)
        assert m["reserved"] >= 0 and m["reserved"] + m["billed"] <= balance
        assert m["billed"] == len(impressed) * CPM_PRICE
        assert m["reserved"] >= (len(tokens_served) - len(impressed)) * CPM_PRICE
    net.run(leases.stop())
    assert net.money(CPM_ID)["reserved"] == (len(tokens_served) - len(impressed)) * CPM_PRICE
    jobs.release(net.sync, DEFAULT_SHARDS, now=time.time() + LEASE_SECONDS + ttl + 10**3)
    billed = len(impressed) * CPM_PRICE
    assert net.money(CPM_ID) == {"reserved": 0, "billed": billed, "epoch": billed}


# -- grants off the request path ----------------------------------------------------------


def test_a_campaign_asked_for_again_is_next_served_from_a_lease_granted_before(
    network, monkeypatch
):
    """A campaign asked for about once every three seconds: its request takes a serve of
    its own (a grant while it waits) and a standby lease of one serve is granted behind
    it, so the next request is served from memory; what the standby did not serve is
    given back at shutdown."""
    monkeypatch.setattr("api.ads.leases.WINDOW", 3600.0)  # the rate set below holds
    net = network(campaign(CPM_ID))
    ad = net.candidate(CPM_ID)
    leases = Leases(net.cache, DEFAULT_SHARDS)

    async def run() -> list[Any]:
        epoch, now = net.epoch(), time.time()
        assert leases.take(ad, epoch, now, net.ttl) is None  # nothing held yet
        demand = leases.demand[CPM_ID]
        demand.rate = 0.3  # asked for in past windows: a serve per three seconds
        first = await leases.fill(ad, epoch, now, net.ttl)
        assert demand.refill is not None  # the standby, granted after the answer
        await asyncio.wait([demand.refill])
        second = leases.take(ad, epoch, now, net.ttl)  # no await: from memory
        assert demand.refill is not None  # and the next standby behind it
        await asyncio.wait([demand.refill])
        await leases.stop()
        return [first, second]

    served = net.run(run())
    assert all(serve is not None for serve in served)
    assert net.money(CPM_ID) == {"reserved": 2 * CPM_PRICE, "billed": 0, "epoch": 2 * CPM_PRICE}


def test_a_lease_whose_time_ran_out_is_renewed_while_its_campaign_is_asked_for(
    network, monkeypatch
):
    """A lease ends (its time is up) with serves left: a campaign still asked for gets a
    new lease in the background, for the campaign as the catalog has it now; one the
    catalog no longer has gets none. Either way the old lease's unused part goes back
    and, once the worker stops, only what was served stays reserved."""
    monkeypatch.setattr("api.ads.leases.WINDOW", 3600.0)
    net = network(campaign(CPM_ID))
    ad = net.candidate(CPM_ID)
    listed = {CPM_ID: ad}
    leases = Leases(
        net.cache,
        DEFAULT_SHARDS,
        lease_seconds=0.2,
        current=lambda campaign_id, now: (
            (listed[campaign_id], net.epoch()) if campaign_id in listed else None
        ),
    )

    async def run() -> tuple[str, str, bool]:
        leases.take(ad, net.epoch(), time.time(), net.ttl)
        demand = leases.demand[CPM_ID]
        demand.rate = 50.0  # ten expected in the next lease's time
        await leases._lease(demand, ad, net.epoch(), time.time(), net.ttl, 3)
        assert demand.lease is not None
        first = demand.lease.lease_id
        assert leases.take(ad, net.epoch(), time.time(), net.ttl) is not None
        await asyncio.sleep(0.25)
        leases.expire()  # time is up: renewed
        assert demand.refill is not None
        await asyncio.wait([demand.refill])
        assert demand.lease is not None
        renewed = demand.lease.lease_id
        assert leases.take(ad, net.epoch(), time.time(), net.ttl) is not None
        listed.clear()  # the campaign left the catalog
        await asyncio.sleep(0.25)
        leases.expire()
        gone = demand.lease.lease_id if demand.lease else None
        await leases.stop()
        return first, renewed, gone is None and demand.refill is None

    first, renewed, not_renewed = net.run(run())
    assert renewed != first
    assert not_renewed
    assert net.money(CPM_ID) == {"reserved": 2 * CPM_PRICE, "billed": 0, "epoch": 2 * CPM_PRICE}
