"""Publishers and advertisers on the session stack, made the way people make them: profiles,
slots and campaigns through the API, registration and funding sent from their own wallets;
and visitors who see and click ads through the API on the chain's clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from api.settlement.service import Settlement
from migrations import libpq_url
from tests.api.conftest import Wallet
from tests.api.test_creatives import png
from tests.support.chain import dev_account
from tests.support.stack import Stack
from tests.support.test_stack import sign_in

USDC = 10**6
P1, P2, CPM_ADVERTISER, PAYEE_1, CPC_ADVERTISER, PAYEE_2B = 25, 26, 27, 28, 29, 24
CPM_BID = 3 * USDC  # per thousand impressions: 3,000 per impression
CPC_BID = 300_000  # per click; the same eCPM as the CPM campaign at the 1% prior CTR
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SLOT = {"name": "Top", "format": "banner", "width": 300, "height": 250, "agent_price": 1_000}


def until(what: str, probe: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def rows(stack: Stack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(stack.database_url)) as conn:
        return conn.execute(sql, args).fetchall()


def send(stack: Stack, wallet: Wallet, tx: dict[str, Any]) -> dict[str, Any]:
    tx_hash = stack.anvil.call(
        "eth_sendTransaction",
        {"from": wallet.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]},
    )
    stack.chain.mine(1)
    receipt = stack.anvil.call("eth_getTransactionReceipt", tx_hash)
    assert receipt is not None and int(receipt["status"], 16) == 1, (tx["description"], receipt)
    return receipt  # type: ignore[no-any-return]


@dataclass
class Publisher:
    index: int
    pub_id: str
    payee: int
    slot_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def wallet(self) -> str:
        return dev_account(self.index).address.lower()


@dataclass
class Campaign:
    advertiser: int
    campaign_id: int  # on-chain
    path: str
    headers: dict[str, str]
    bid_model: str
    bid: int


def open_publisher(
    api: httpx.Client, stack: Stack, index: int, pub_id: str, payee: int
) -> Publisher:
    wallet = Wallet(dev_account(index))
    headers = sign_in(api, wallet, stack)
    created = api.post(
        "/api/v1/publishers",
        json={"website_url": f"https://{pub_id}.example", "category": "news"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=headers)
    assert slot.status_code == 201, slot.text
    stack.chain.register_publisher(index, pub_id, payment_wallet=payee)
    stack.chain.set_quality_score(index, 60)
    return Publisher(index, pub_id, payee, slot.json()["slot_id"], headers)


def open_campaign(
    api: httpx.Client,
    stack: Stack,
    advertiser: int,
    *,
    bid_model: str,
    bid: int,
    funds: int,
    max_spend_per_epoch: int = 50 * USDC,
) -> Campaign:
    wallet = Wallet(dev_account(advertiser))
    headers = sign_in(api, wallet, stack)
    profile = api.post(
        "/api/v1/advertisers",
        json={"company_name": f"Advertiser {advertiser}", "website_url": "https://ads.example"},
        headers=headers,
    )
    assert profile.status_code in (201, 409), profile.text
    draft = {
        "name": f"{bid_model} campaign",
        "bid_model": bid_model,
        "bid": bid,
        "total_budget": funds,
        "max_spend_per_epoch": max_spend_per_epoch,
        "format": "banner",
        "landing_url": "https://ads.example/landing",
        "targeting": {"geo": ["US"], "categories": ["news"], "quality_min": 30},
    }
    created = api.post("/api/v1/campaigns", json=draft, headers=headers)
    assert created.status_code == 201, created.text
    path = f"/api/v1/campaigns/{created.json()['id']}"
    upload = api.post(
        f"{path}/creatives", files={"file": ("ad.png", png(300, 250))}, headers=headers
    )
    assert upload.status_code == 201, upload.text
    send(stack, wallet, api.post(f"{path}/registration-tx", headers=headers).json())
    stack.index_here()
    # the API links the draft to its on-chain id when it reloads the catalog
    until(
        "the API sees the registration", lambda: api.get(path, headers=headers).json()["onchain_id"]
    )
    stack.chain.mint_usdc(advertiser, funds)
    funding = api.post(f"{path}/funding-txs", json={"amount": funds}, headers=headers)
    assert funding.status_code == 200, funding.text
    for tx in funding.json():
        send(stack, wallet, tx)
    stack.index_here()
    onchain = api.get(path, headers=headers).json()["onchain_id"]
    return Campaign(advertiser, int(onchain), path, headers, bid_model, bid)


@dataclass
class Visit:
    """One ad served to one visitor, and what the visitor did with it."""

    ad: dict[str, Any]
    user_agent: str


def serve(
    api: httpx.Client, publisher: Publisher, campaign_id: int, user_agent: str = BROWSER
) -> Visit:
    """Ask the slot for ads until `campaign_id`'s is served (the ranking may pick another)."""
    query = {"pub_id": publisher.pub_id, "slot_id": publisher.slot_id, "format": "banner"}
    query["geo"] = "US"

    def served() -> dict[str, Any] | None:
        reply = api.get("/x402/ad", params=query, headers={"User-Agent": user_agent})
        if reply.status_code != 200:
            return None
        ad = reply.json()
        return ad if ad["campaign_id"] == campaign_id else None

    return Visit(
        until(f"campaign {campaign_id} is served on {publisher.pub_id}", served), user_agent
    )


def render(api: httpx.Client, visit: Visit) -> None:
    reply = api.get(visit.ad["impression_url"], headers={"User-Agent": visit.user_agent})
    assert reply.status_code == 200


def click(api: httpx.Client, visit: Visit) -> None:
    reply = api.get(
        visit.ad["click_url"], headers={"User-Agent": visit.user_agent}, follow_redirects=False
    )
    assert reply.status_code == 302


def stored(stack: Stack, serve_ids: list[str], count: int) -> None:
    """Wait until the writer has stored `count` events of these serves."""
    until(
        f"the writer stores {count} events",
        lambda: (
            rows(stack, "SELECT count(*) FROM ad_events WHERE serve_id = ANY(%s)", serve_ids)[0][0]
            >= count
        ),
    )


FINALITY = 65


def share(charged: int) -> tuple[int, int]:
    publisher = charged * 8_500 // 10_000
    return publisher, charged - publisher


def wallet(index: int) -> str:
    return dev_account(index).address.lower()


def settle(stack: Stack, settings: Any, rounds: int = 8) -> list[str]:
    """Run settlement and the indexer in turns until settlement has nothing left to do now
    (in production both run continuously)."""
    done: list[str] = []
    for _ in range(rounds):
        stack.chain.mine(FINALITY)  # anvil calls a block finalized 64 blocks later
        stack.index_here()
        report = Settlement(settings).run()
        done += report.done
        if not report.done:
            done += [f"waiting: {line}" for line in report.waiting]
            return done
    pytest.fail(f"settlement kept finding work: {done}")


def start_epoch(stack: Stack) -> int:
    """Move the chain to just after the start of the next epoch; return its number."""
    current = stack.chain.current_epoch()
    stack.chain.end_epoch(current)
    stack.chain.increase_time(5)
    return current + 1


def end_epoch(stack: Stack, epoch: int) -> None:
    stack.chain.end_epoch(epoch)
    stack.chain.increase_time(1)


def claim(api: httpx.Client, stack: Stack, publisher: Publisher) -> list[dict[str, Any]]:
    txs = api.post("/api/v1/publishers/me/claim-txs", headers=publisher.headers)
    assert txs.status_code == 200, txs.text
    return [send(stack, _wallet_of(publisher), tx) for tx in txs.json()]


def _wallet_of(publisher: Publisher) -> Wallet:
    return Wallet(dev_account(publisher.index))


def visitor(n: int) -> str:
    return f"{BROWSER} visitor/{n}"  # a different visitor each: the frequency cap is per visitor
