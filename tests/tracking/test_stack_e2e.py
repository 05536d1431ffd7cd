"""End to end on the session stack (anvil, Postgres, Redis, the API under uvicorn and a
tracking writer, each its own process, as `make run` starts them): a person is served an
ad of a campaign funded on-chain, the page renders it (the impression pixel) and the person
clicks. The advertiser's free budget moves from reserved to billed, the writer stores both
events as verified, the publisher's daily traffic counts them, a replayed pixel is stored as
a duplicate and bills nothing, and the campaign's analytics show all of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from api.tracking.stream import Keys
from migrations import libpq_url
from tests.ads.test_endpoint import BROWSER, CAMPAIGN, SLOT, USDC
from tests.api.conftest import Wallet
from tests.api.test_creatives import png
from tests.support.chain import dev_account
from tests.support.stack import Stack
from tests.support.test_stack import sign_in

PUBLISHER, ADVERTISER, PAYEE = 22, 23, 24
WAIT = 30.0


def until(what: str, probe: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def send(stack: Stack, wallet: Wallet, tx: dict[str, Any]) -> None:
    tx_hash = stack.anvil.call(
        "eth_sendTransaction",
        {"from": wallet.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]},
    )
    stack.chain.mine(1)
    receipt = stack.anvil.call("eth_getTransactionReceipt", tx_hash)
    assert receipt is not None and int(receipt["status"], 16) == 1, (tx["description"], receipt)


def rows(stack: Stack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(stack.database_url)) as conn:
        return conn.execute(sql, args).fetchall()


def test_serve_render_click_bills_once_and_is_counted(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        publisher = Wallet(dev_account(PUBLISHER))
        p = sign_in(api, publisher, stack)
        api.post(
            "/api/v1/publishers",
            json={"website_url": "https://e2e.example", "category": "news"},
            headers=p,
        ).raise_for_status()
        slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=p).json()
        stack.chain.register_publisher(PUBLISHER, "e2e-news", payment_wallet=PAYEE)
        stack.chain.set_quality_score(PUBLISHER, 60)

        advertiser = Wallet(dev_account(ADVERTISER))
        a = sign_in(api, advertiser, stack)
        api.post(
            "/api/v1/advertisers",
            json={"company_name": "Shoes", "website_url": "https://shoes.example"},
            headers=a,
        ).raise_for_status()
        campaign = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=a).json()
        path = f"/api/v1/campaigns/{campaign['id']}"
        upload = api.post(
            f"{path}/creatives", files={"file": ("shoe.png", png(300, 250))}, headers=a
        )
        assert upload.status_code == 201, upload.text
        send(stack, advertiser, api.post(f"{path}/registration-tx", headers=a).json())
        stack.index()
        stack.chain.mint_usdc(ADVERTISER, 100 * USDC)
        funding = api.post(f"{path}/funding-txs", json={"amount": 100 * USDC}, headers=a)
        assert funding.status_code == 200, funding.text
        for tx in funding.json():
            send(stack, advertiser, tx)
        stack.index()
        campaign_id = api.get(path, headers=a).json()["onchain_id"]

        query = {"pub_id": "e2e-news", "slot_id": slot["slot_id"], "format": "banner", "geo": "US"}
        browser = {"User-Agent": BROWSER}

        def served() -> dict[str, Any] | None:
            reply = api.get("/x402/ad", params=query, headers=browser)
            return reply.json() if reply.status_code == 200 else None

        ad = until("the API serves the funded campaign", served)
        assert ad["campaign_id"] == campaign_id
        assert ad["impression_url"].startswith(stack.api_url + "/track/impression?token=")
        price = -(-CAMPAIGN["bid"] // 1000)  # a CPM impression's price, rounded up
        keys = Keys(campaign_id, stack.settings.tracking_shards)
        with stack.cache() as cache:
            assert int(cache.get(keys.reserved) or 0) == price  # the serve reserved it
            assert int(cache.get(keys.billed) or 0) == 0

            pixel = api.get(ad["impression_url"], headers=browser)
            assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
            assert "no-store" in pixel.headers["cache-control"]
            assert int(cache.get(keys.reserved) or 0) == 0  # the render turned it into spend
            assert int(cache.get(keys.billed) or 0) == price

            time.sleep(stack.settings.min_click_ms / 1000 + 0.1)  # a person's pace
            click = api.get(ad["click_url"], headers=browser, follow_redirects=False)
            assert click.status_code == 302
            assert click.headers["location"] == CAMPAIGN["landing_url"]

            replay = api.get(ad["impression_url"], headers=browser)
            assert replay.status_code == 200  # a pixel never tells whether it counted
            assert int(cache.get(keys.billed) or 0) == price  # billed once

        serve_id = ad["ad_id"]
        stored = until(
            "the writer stores the three events",
            lambda: (
                found
                if len(
                    found := rows(
                        stack,
                        "SELECT kind, verified, reason, price FROM ad_events"
                        " WHERE serve_id = %s ORDER BY occurred_at",
                        serve_id,
                    )
                )
                == 3
                else None
            ),
        )
        assert [(kind, verified, reason) for kind, verified, reason, _ in stored] == [
            ("impression", True, None),
            ("click", True, None),
            ("impression", False, "duplicate"),
        ]
        assert stored[0][3] == price

        day = datetime.now(UTC).date()
        traffic = rows(
            stack,
            "SELECT events, verified FROM publisher_traffic_daily WHERE wallet = %s AND day = %s",
            publisher.address.lower(),
            day,
        )
        assert traffic == [(3, 2)]

        report = api.get(
            f"/api/v1/analytics/campaigns/{campaign_id}",
            params={"from": day.isoformat(), "to": day.isoformat(), "group": "day"},
            headers=a,
        )
        assert report.status_code == 200, report.text
        totals = report.json()["totals"]
        assert (totals["impressions"], totals["verified_impressions"]) == (2, 1)
        assert (totals["clicks"], totals["verified_clicks"]) == (1, 1)
        assert int(totals["spend"]) == price
        assert totals["ivt_by_reason"]["duplicate"]["events"] == 1
