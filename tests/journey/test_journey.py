"""The whole story once, headless, on the running stack, as its people live it: an advertiser
signs in and deposits (two campaigns registered and funded by its own wallet through the
API's transactions); a publisher registers on-chain with a payment wallet of its own and
proves its domain by the well-known file on its web server; people's browsers are served
ads while agents are asked to pay, and one agent pays with the official x402 client;
impressions and clicks arrive, some of them invalid (a bot, a click too fast, a
duplicate); the epoch settles and the publisher claims. Every balance is then read from
the chain and checked to the atomic unit against what the events were worth, worked out
here from the bids and the contract's 85/15 split, not read from the system under test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from fastapi.testclient import TestClient
from x402 import x402Client
from x402.http.clients.httpx import x402_httpx_transport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import client as exact_client
from x402.mechanisms.evm.exact import register_exact_evm_client

from api.main import create_app
from api.publishers.domains import SafeFetcher
from tests.api.conftest import Wallet
from tests.api.test_creatives import png
from tests.settlement.conftest import api_on_chain_clock
from tests.settlement.world import BOT, BROWSER, end_epoch, rows, settle, start_epoch, until
from tests.support.anvil import CHALLENGE_PERIOD, free_port
from tests.support.stack import Stack
from tests.support.test_stack import sign_in

USDC = 10**6
ETH = 10**18
BPS = 10_000
CATEGORY = "automotive"  # the slot's and the campaigns': few other tests' campaigns compete
# bids whose sums do not divide evenly, so the rounding is checked too
CPM_BID = 2_500_001  # per thousand impressions: settlement charges Σ bids // 1000
CPC_BID = 123_457  # per click
BUDGET = 5 * USDC
AGENT_PRICE = 1_234  # what the slot asks an agent, in atomic units
SITE_HOST = "127.0.0.2"  # the publisher's web server: stands for an address on the internet
AGENTS = [
    BOT,
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2;"
    " +https://openai.com/gptbot)",
    "python-httpx/0.28.1",
]
PAYING_AGENT = "ClaudeBot/1.0 (+claudebot@anthropic.com)"


# --- people and their wallets ---------------------------------------------------------------


def fresh_account(stack: Stack, eth: int = 0, usdc: int = 0) -> LocalAccount:
    """A new key nobody else uses, with `eth` wei for gas and `usdc` test USDC."""
    account: LocalAccount = Account.create()
    if eth:
        stack.anvil.call("anvil_setBalance", account.address, hex(eth))
    if usdc:
        stack.chain.mint_usdc(account.address, usdc)
    return account


def send(stack: Stack, account: LocalAccount, tx: dict[str, Any]) -> dict[str, Any]:
    """Sign one of the API's transactions with the person's own key, as a wallet would."""
    w3 = stack.chain.w3
    value = tx.get("value", 0)
    params: dict[str, Any] = {
        "from": account.address,
        "to": to_checksum_address(tx["to"]),
        "data": tx["data"],
        "value": int(value, 16) if isinstance(value, str) else int(value),
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": stack.chain.chain_id,
    }
    params["gas"] = w3.eth.estimate_gas(params)  # type: ignore[arg-type]
    params["gasPrice"] = w3.eth.gas_price
    signed = account.sign_transaction(params)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.02))
    assert receipt["status"] == 1, tx.get("description")
    return receipt


def usdc(stack: Stack, address: str) -> int:
    return stack.chain.usdc_balance(address)


def escrow_balance(stack: Stack, campaign_id: int) -> int:
    return int(stack.chain.call("PaymentEscrow", "get_balance", campaign_id, stack.chain.usdc))


# --- the advertiser -------------------------------------------------------------------------


def deposit(api: httpx.Client, stack: Stack, account: LocalAccount) -> dict[str, int]:
    """The advertiser's profile and two campaigns (CPM and CPC) for automotive sites in the
    US, each with a creative, registered and funded with BUDGET from its own wallet; their
    on-chain ids by bid model."""
    headers = sign_in(api, Wallet(account), stack)
    profile = api.post(
        "/api/v1/advertisers",
        json={"company_name": "Journey Motors", "website_url": "https://motors.example"},
        headers=headers,
    )
    assert profile.status_code == 201, profile.text
    paths = {}
    for model, bid in (("cpm", CPM_BID), ("cpc", CPC_BID)):
        draft = {
            "name": f"Journey {model}",
            "bid_model": model,
            "bid": bid,
            "total_budget": BUDGET,
            "max_spend_per_epoch": BUDGET,
            "format": "banner",
            "landing_url": "https://motors.example/landing",
            "targeting": {"geo": ["US"], "categories": [CATEGORY], "quality_min": 30},
        }
        created = api.post("/api/v1/campaigns", json=draft, headers=headers)
        assert created.status_code == 201, created.text
        path = f"/api/v1/campaigns/{created.json()['id']}"
        upload = api.post(
            f"{path}/creatives", files={"file": ("ad.png", png(300, 250))}, headers=headers
        )
        assert upload.status_code == 201, upload.text
        send(stack, account, api.post(f"{path}/registration-tx", headers=headers).json())
        paths[model] = path
    stack.index_here()
    ids = {
        model: int(
            until(
                f"the API links the {model} campaign to its on-chain id",
                lambda path=path: api.get(path, headers=headers).json()["onchain_id"],
            )
        )
        for model, path in paths.items()
    }
    for path in paths.values():
        funding = api.post(f"{path}/funding-txs", json={"amount": BUDGET}, headers=headers)
        assert funding.status_code == 200, funding.text
        for tx in funding.json():
            send(stack, account, tx)
    stack.index_here()
    for campaign_id in ids.values():
        assert escrow_balance(stack, campaign_id) == BUDGET
    return ids


# --- the publisher --------------------------------------------------------------------------


class Site(BaseHTTPRequestHandler):
    """The publisher's web server: serves the verification file it was told to put up."""

    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"not here")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def web_server() -> Iterator[int]:
    port = free_port()
    server = ThreadingHTTPServer((SITE_HOST, port), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


class SiteOnTestPort(SafeFetcher):
    """The API's fetcher with its guard intact, except that the publisher's made-up domain
    resolves to the local web server (which listens on a test port, not 80/443)."""

    def __init__(self, domain: str, port: int) -> None:
        super().__init__(
            resolver=lambda host: [SITE_HOST] if host == domain else [],
            allowed=lambda address: str(address) == SITE_HOST,
        )
        self.domain, self.port = domain, port

    def get(self, url: str) -> str:
        return super().get(url.replace(f"{self.domain}/", f"{self.domain}:{self.port}/"))


def register_publisher(
    api: httpx.Client, stack: Stack, account: LocalAccount, pub_id: str, payee: str
) -> tuple[dict[str, str], str]:
    """Profile, one slot, the on-chain registration (paying `payee`) from the publisher's
    own wallet; its sign-in headers and slot id."""
    headers = sign_in(api, Wallet(account), stack)
    created = api.post(
        "/api/v1/publishers",
        json={"website_url": f"https://{pub_id}.example", "category": CATEGORY},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    slot = {
        "name": "Top",
        "format": "banner",
        "width": 300,
        "height": 250,
        "agent_price": AGENT_PRICE,
    }
    made = api.post("/api/v1/publishers/me/slots", json=slot, headers=headers)
    assert made.status_code == 201, made.text
    tx = api.post(
        "/api/v1/publishers/me/registration-tx",
        json={"pub_id": pub_id, "payment_wallet": payee},
        headers=headers,
    )
    assert tx.status_code == 200, tx.text
    send(stack, account, tx.json())
    stack.chain.set_quality_score(account.address, 60)  # the oracle scores the new site
    stack.index_here()
    return headers, made.json()["slot_id"]


def verify_domain(
    stack: Stack, headers: dict[str, str], domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verify route checks the well-known file on the publisher's server and the oracle
    records the domain on-chain. The route runs in an API in this process (the stack's own
    refuses, rightly, to fetch a loopback address) whose fetcher resolves the domain to the
    local server; everything else is the real route on the stack's database and chain."""
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(stack.deployments_dir))
    with web_server() as port, TestClient(create_app(stack.settings)) as api:
        api.app.state.domain_fetcher = SiteOnTestPort(domain, port)  # type: ignore[attr-defined]
        guide = api.get("/api/v1/publishers/me/domain", headers=headers)
        assert guide.status_code == 200, guide.text
        assert guide.json()["domain"] == domain
        method = {"method": "well_known"}
        # before the file is up, the check fails and says what to put where
        missing = api.post("/api/v1/publishers/me/domain/verify", json=method, headers=headers)
        assert missing.status_code == 422, missing.text
        assert missing.json()["error"]["code"] == "verification_failed"
        Site.files = {"/.well-known/buzzer.txt": f"{guide.json()['token']}\n".encode()}
        verified = api.post("/api/v1/publishers/me/domain/verify", json=method, headers=headers)
        assert verified.status_code == 200, verified.text
    assert verified.json()["domain_hash"] == "0x" + keccak(text=domain).hex()
    stack.index_here()
    with httpx.Client(base_url=stack.api_url, timeout=30) as stack_api:
        me = stack_api.get("/api/v1/publishers/me", headers=headers).json()
    assert me["onchain"]["domain_hash"] == verified.json()["domain_hash"]


# --- traffic --------------------------------------------------------------------------------


# five people's browsers (one visitor each: the visitor key is the IP and the user agent)
PEOPLE = {
    1: BROWSER,
    2: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    3: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    4: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Mobile Safari/537.36",
    5: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
}


def visitor(n: int) -> str:
    return PEOPLE[n]


def ads_for(
    api: httpx.Client, query: dict[str, str], user_agent: str, campaigns: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """One page view: the slot's ads for this visitor, until both campaigns are among them
    (another campaign may rank first); each ad by bid model."""

    def served() -> dict[str, dict[str, Any]] | None:
        reply = api.get("/x402/ad", params={**query, "n": "5"}, headers={"User-Agent": user_agent})
        if reply.status_code != 200:
            return None
        ads = reply.json()["ads"]
        ours = {m: a for m in campaigns for a in ads if a["campaign_id"] == campaigns[m]}
        return ours if len(ours) == len(campaigns) else None

    found: dict[str, dict[str, Any]] = until(f"both campaigns serve to {user_agent}", served)
    return found


def impression(api: httpx.Client, ad: dict[str, Any], user_agent: str) -> None:
    reply = api.get(ad["impression_url"], headers={"User-Agent": user_agent})
    assert reply.status_code < 300, reply.text


def click(api: httpx.Client, ad: dict[str, Any], user_agent: str) -> None:
    reply = api.get(ad["click_url"], headers={"User-Agent": user_agent}, follow_redirects=False)
    assert reply.status_code == 302, reply.text  # on to the landing page, billed or not


def agent_pays(stack: Stack, query: dict[str, str]) -> dict[str, Any]:
    """An agent funded with a little USDC asks for the slot, is quoted a price, and pays it
    with the official x402 client; the quote and the paid answer."""
    agent = fresh_account(stack, usdc=10 * AGENT_PRICE)
    headers = {"User-Agent": PAYING_AGENT}
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        quote = api.get("/x402/ad", params=query, headers=headers)
    assert quote.status_code == 402, quote.text
    network = f"eip155:{stack.chain.chain_id}"
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(agent), networks=network)
    # the local test token is not one the client knows (real USDC on Base needs no line)
    client.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": network,
                    "asset": stack.chain.usdc,
                    "max_amount_per_payment": str(2 * AGENT_PRICE),
                }
            ]
        }
    )

    async def fetch() -> httpx.Response:
        transport = x402_httpx_transport(client, httpx.AsyncHTTPTransport())
        async with httpx.AsyncClient(
            transport=transport, base_url=stack.api_url, timeout=30
        ) as http:
            return await http.get("/x402/ad", params=query, headers=headers)

    before = usdc(stack, agent.address)
    # the client dates its authorization by its own clock; the chain's runs ahead once
    # earlier tests moved it, so the agent signs on the chain's time (as a real agent's
    # clock agrees with Base's)
    chain_now = max(time.time(), stack.chain.timestamp())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exact_client, "time", SimpleNamespace(time=lambda: chain_now))
        paid = asyncio.run(fetch())
    assert paid.status_code == 200, paid.text
    return {
        "quote": quote.json(),
        "paid": paid.json(),
        "agent": agent.address,
        "agent_spent": before - usdc(stack, agent.address),
    }


def events_of(stack: Stack, serve_ids: list[str]) -> list[tuple[str, str, bool, str | None]]:
    return [
        (serve_id, kind, verified, reason)
        for serve_id, kind, verified, reason in rows(
            stack,
            "SELECT serve_id, kind, verified, reason FROM ad_events WHERE serve_id = ANY(%s)",
            serve_ids,
        )
    ]


def settle_until_claimable(
    stack: Stack, settings: Any, api: httpx.Client, headers: dict[str, str]
) -> None:
    """Settle, let the root mature, index; again while a root another test posted is still
    pending (only one is pending at a time) until the publisher's share is claimable."""
    for _ in range(4):
        settle(stack, settings)
        stack.chain.increase_time(CHALLENGE_PERIOD + 1)
        stack.index_here()
        reply = api.get("/api/v1/publishers/me/earnings", headers=headers)
        assert reply.status_code == 200, reply.text
        if any(t["claimable"] > 0 for t in reply.json()["tokens"]):
            return
    raise AssertionError(f"the publisher's share never became claimable: {reply.json()}")


# --- the journey ----------------------------------------------------------------------------


def test_deposit_serve_pay_track_settle_claim_to_the_atomic_unit(
    stack: Stack, settlement_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = stack.chain
    usdc_token = chain.usdc
    advertiser = fresh_account(stack, eth=ETH, usdc=2 * BUDGET)
    publisher = fresh_account(stack, eth=ETH)
    payee = Account.create().address  # the publisher's payment wallet: receives, never sends
    treasury = to_checksum_address(chain.call("PaymentEscrow", "treasury"))
    fee_bps = int(chain.call("PaymentEscrow", "fee_bps"))
    assert fee_bps == 1_500

    # 1. the advertiser deposits: two campaigns funded from its own wallet
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        campaigns = deposit(api, stack, advertiser)
        assert usdc(stack, advertiser.address) == 0  # all of it went into escrow
        escrow_before = {m: escrow_balance(stack, c) for m, c in campaigns.items()}

        # 2. the publisher registers on-chain and proves its domain
        pub_id = f"journey-{publisher.address[2:10].lower()}"
        domain = f"{pub_id}.example"
        headers, slot_id = register_publisher(api, stack, publisher, pub_id, payee)
    verify_domain(stack, headers, domain, monkeypatch)
    query = {"pub_id": pub_id, "slot_id": slot_id, "format": "banner", "geo": "US"}

    # 3. agents are asked to pay (people get ads, below); one agent pays by x402
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        for agent in AGENTS:

            def quoted(agent: str = agent) -> httpx.Response | None:
                reply = api.get("/x402/ad", params=query, headers={"User-Agent": agent})
                return reply if reply.status_code == 402 else None

            # (the API's catalog hears of the new registration within a moment)
            asked = until(f"{agent!r} is asked to pay", quoted)
            assert "PAYMENT-REQUIRED" in asked.headers
            body = asked.json()
            assert (body["amount"], body["payment_address"].lower()) == (
                AGENT_PRICE,
                payee.lower(),
            )
    payee_before_x402 = usdc(stack, payee)
    x402 = agent_pays(stack, query)
    assert x402["quote"]["amount"] == AGENT_PRICE
    assert x402["paid"]["amount"] == AGENT_PRICE
    assert x402["paid"]["payer"].lower() == x402["agent"].lower()
    assert x402["agent_spent"] == AGENT_PRICE
    assert usdc(stack, payee) - payee_before_x402 == AGENT_PRICE
    payee_before_claim = usdc(stack, payee)
    treasury_before = usdc(stack, treasury)
    first_block = chain.block_number() + 1

    # 4. people's browsers in one epoch on the chain's clock: impressions and clicks,
    #    some of them invalid
    epoch = start_epoch(stack)
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        views = {n: ads_for(api, query, visitor(n), campaigns) for n in range(1, 5)}
        for n in (1, 2, 3):
            impression(api, views[n]["cpm"], visitor(n))  # billed: 3 CPM impressions
            impression(api, views[n]["cpc"], visitor(n))
        impression(api, views[4]["cpm"], BOT)  # a bot fires a person's impression: bot
        impression(api, views[4]["cpc"], visitor(4))
        impression(api, views[1]["cpm"], visitor(1))  # again: duplicate
        click(api, views[4]["cpc"], BOT)  # bot
        fast = ads_for(api, query, visitor(5), campaigns)
        impression(api, fast["cpc"], visitor(5))
        click(api, fast["cpc"], visitor(5))  # at once after its impression: too_fast
        time.sleep(stack.settings.min_click_ms / 1000 + 0.1)
        click(api, views[1]["cpc"], visitor(1))  # billed: 2 CPC clicks
        click(api, views[2]["cpc"], visitor(2))
        click(api, views[1]["cpc"], visitor(1))  # again: duplicate
    serve_ids = [ad["ad_id"] for view in [*views.values(), fast] for ad in view.values()]
    until(
        "the writer stores all 15 events",
        lambda: len(events_of(stack, serve_ids)) >= 15,
    )
    invalid = sorted(
        (kind, reason) for _, kind, verified, reason in events_of(stack, serve_ids) if not verified
    )
    assert invalid == [
        ("click", "bot"),
        ("click", "duplicate"),
        ("click", "too_fast"),
        ("impression", "bot"),
        ("impression", "duplicate"),
    ]
    end_epoch(stack, epoch)

    # 5. the epoch settles; the publisher claims into its payment wallet
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        settle_until_claimable(stack, settlement_settings, api, headers)
        txs = api.post("/api/v1/publishers/me/claim-txs", headers=headers)
        assert txs.status_code == 200, txs.text
        for tx in txs.json():
            send(stack, publisher, tx)

    # 6. every balance, on-chain, against what the valid events were worth
    spend = {"cpm": 3 * CPM_BID // 1000, "cpc": 2 * CPC_BID}
    share = {m: s * (BPS - fee_bps) // BPS for m, s in spend.items()}
    for model, campaign_id in campaigns.items():
        assert escrow_before[model] - escrow_balance(stack, campaign_id) == spend[model], model
        assert (
            chain.call("PaymentEscrow", "get_total_spent", campaign_id, usdc_token) == spend[model]
        )
    assert usdc(stack, payee) - payee_before_claim == sum(share.values())
    # the treasury takes the rest of ours, and whatever other campaigns settled with it
    spent = [
        e.args
        for e in chain.logs(first_block)
        if e.key == "PaymentEscrow.Spent" and e.args["token"].lower() == usdc_token.lower()
    ]
    ours = {e["campaign_id"]: e for e in spent if e["campaign_id"] in campaigns.values()}
    assert {c: (e["charged"], e["fee"]) for c, e in ours.items()} == {
        campaigns[m]: (spend[m], spend[m] - share[m]) for m in campaigns
    }
    others = sum(e["fee"] for e in spent if e["campaign_id"] not in campaigns.values())
    assert usdc(stack, treasury) - treasury_before - others == sum(
        spend[m] - share[m] for m in campaigns
    )
    # the agent's payment was its own: not counted in the claim, nor taken from escrow
    assert usdc(stack, payee) == AGENT_PRICE + sum(share.values())
    assert usdc(stack, x402["agent"]) == 9 * AGENT_PRICE
