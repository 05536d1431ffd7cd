"""The publisher's dashboard in a real browser: a new wallet walks onboarding (profile, the
on-chain registration its wallet sends, a slot, the integration code) and every publisher
page is accessible and refuses someone else's site; then flow 3: a publisher whose ads were
served, tracked and settled in an epoch signs in, sees what it can claim, claims it with its
wallet, and its payment wallet's USDC balance rises by exactly the amount the page showed."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Locator, Page, expect

from tests.api.conftest import Wallet
from tests.api.test_creatives import png
from tests.settlement.conftest import (  # noqa: F401 (fixture used by name)
    api_on_chain_clock,
    settlement_settings,
)
from tests.settlement.world import (
    CPM_BID,
    SLOT,
    USDC,
    Publisher,
    end_epoch,
    render,
    serve,
    settle,
    start_epoch,
    stored,
    until,
    visitor,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.stack import Stack
from tests.support.test_stack import sign_in as api_sign_in
from tests.web.browser import TestWallet, axe_violations, new_account
from tests.web.conftest import Web

BUDGET = 5 * USDC
PAGES = [
    "/publisher",
    "/publisher/onboarding",
    "/publisher/sites",
    "/publisher/earnings",
    "/publisher/analytics",
    "/publisher/settings",
]


def index_until(stack: Stack, shown: Locator, timeout: float = 60.0) -> None:
    """Run the indexer (in production it runs on its own) until the page shows `shown`:
    transaction status waits for the indexer to have seen the block."""
    deadline = time.monotonic() + timeout
    while True:
        stack.index_here()
        try:
            expect(shown).to_be_visible(timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def accessible(page: Page) -> None:
    assert axe_violations(page) == [], page.url


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"{page.url} scrolls sideways: {width} px"


def wallet_of(stack: Stack, account: LocalAccount) -> TestWallet:
    chain_id = stack.anvil.chain_id
    return TestWallet(stack.anvil.url, account, chain_id, real_chain_id=chain_id)


def send(stack: Stack, account: LocalAccount, tx: dict[str, Any]) -> None:
    call = {"from": account.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]}
    tx_hash, _ = wallet_of(stack, account).request("eth_sendTransaction", [call])
    receipt = until(
        f"{tx['description']} is mined",
        lambda: stack.anvil.call("eth_getTransactionReceipt", tx_hash),
    )
    assert int(receipt["status"], 16) == 1, tx["description"]


def test_onboarding_then_every_page(web: Web) -> None:
    stack = web.stack
    web.allow_console(r"status of (422|404) ")  # the refusals this test provokes
    opened = web.open()
    page = opened.page
    web.sign_in(opened, "/publisher")
    # no profile yet: the dashboard starts with onboarding
    expect(page).to_have_url(re.compile(r"/publisher/onboarding$"))
    expect(page.locator("[data-step=connect]")).to_have_attribute("data-done", "")
    accessible(page)

    name = f"onboard-{secrets.token_hex(3)}"
    page.get_by_label("Website").fill("not a website")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator("[data-error-for=website_url]")).not_to_be_empty()
    page.get_by_label("Website").fill(f"https://{name}.example")
    page.get_by_label("Content category").select_option("news")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("heading", name="Register on-chain")).to_be_visible()
    expect(page.locator("[data-step=profile]")).to_have_attribute("data-done", "")
    expect(page.get_by_label("Publisher id")).to_have_value(f"{name}-example")
    accessible(page)
    web.shot(page, "onboarding-register")

    page.get_by_role("button", name="Register with my wallet").click()
    expect(page.locator("[data-form-message]")).to_contain_text("waiting")
    # the wallet sent it; once indexed the page moves on (sites are trusted on a local
    # chain, so the domain step is done at once) to the slot
    index_until(stack, page.get_by_role("heading", name="Create an ad slot"))
    expect(page.locator("[data-step=register]")).to_have_attribute("data-done", "")
    expect(page.locator("[data-step=verify]")).to_have_attribute("data-done", "")
    assert len(opened.wallet.sent) == 1
    accessible(page)

    page.get_by_role("button", name="Create slot").click()
    expect(page.get_by_role("button", name="Copy code")).to_be_visible()
    expect(page.locator("pre code")).to_contain_text(f'"pub_id": "{name}-example"')
    expect(page.locator("[data-first-ad]")).to_contain_text("Waiting for the first impression")
    accessible(page)
    web.shot(page, "onboarding-code")

    page.goto("/publisher")
    expect(page.get_by_text("Registered", exact=True)).to_be_visible()
    expect(page.locator("main")).to_contain_text(f"{name}-example")
    for path in PAGES[2:]:
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        accessible(page)

    # a site's page: verified, its slot with the code; someone else's site reads as missing
    page.goto("/publisher/sites")
    page.get_by_role("link", name=f"{name}.example").click()
    expect(page.get_by_text("Verified", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Top banner"))).to_be_visible()
    accessible(page)
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        other = api_sign_in(api, Wallet(), stack)
        api.post(
            "/api/v1/publishers", json={"website_url": "https://theirs.example"}, headers=other
        )
        (theirs,) = api.get("/api/v1/publishers/me/sites", headers=other).json()
    for site_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        reply = page.goto(f"/publisher/sites/{site_id}")
        assert reply is not None and reply.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("theirs.example")

    # settings: a bad payment wallet is refused next to its field
    page.goto("/publisher/settings")
    page.get_by_label("New payment wallet").fill("0x1234")
    page.get_by_role("button", name="Change payment wallet").click()
    expect(page.locator("[data-error-for=payment_wallet]")).not_to_be_empty()
    payee = new_account().address
    page.get_by_label("New payment wallet").fill(payee)
    page.get_by_role("button", name="Change payment wallet").click()
    index_until(stack, page.locator("[data-payment-wallet]", has_text=payee.lower()))
    assert len(opened.wallet.sent) == 2
    page.get_by_label("AI agent reading the page (USDC)").fill("0.002")
    page.get_by_role("button", name="Save prices").click()
    expect(page.get_by_text("Prices saved.")).to_be_visible()
    page.get_by_label("Push my payouts to me").check()
    page.get_by_label("Threshold (USDC)").fill("2.5")
    page.get_by_role("button", name="Save push payouts").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Threshold (USDC)")).to_have_value("2.50")
    expect(page.get_by_label("AI agent reading the page (USDC)")).to_have_value("0.002")
    accessible(page)

    # analytics: a range ending before it starts is explained next to the field
    page.goto("/publisher/analytics?from=2026-03-10&to=2026-03-01")
    expect(page.locator("#e-to")).to_contain_text("before")
    accessible(page)


def open_campaign(api: httpx.Client, stack: Stack, web: Web) -> int:
    """A CPM campaign of a fresh advertiser for news sites in the US, registered and funded
    with 5 USDC from its own wallet; its on-chain id."""
    account = new_account()
    web.fund(account.address, usdc=BUDGET)
    headers = api_sign_in(api, Wallet(account), stack)
    api.post(
        "/api/v1/advertisers",
        json={"company_name": "Claims Test", "website_url": "https://ads.example"},
        headers=headers,
    )
    draft = {
        "name": "Claims test",
        "bid_model": "cpm",
        "bid": CPM_BID,
        "total_budget": BUDGET,
        "max_spend_per_epoch": BUDGET,
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
    send(stack, account, api.post(f"{path}/registration-tx", headers=headers).json())
    stack.index_here()
    until("the API sees the campaign", lambda: api.get(path, headers=headers).json()["onchain_id"])
    funding = api.post(f"{path}/funding-txs", json={"amount": BUDGET}, headers=headers)
    assert funding.status_code == 200, funding.text
    for tx in funding.json():
        send(stack, account, tx)
    stack.index_here()
    return int(api.get(path, headers=headers).json()["onchain_id"])


def open_publisher(api: httpx.Client, stack: Stack, account: LocalAccount) -> Publisher:
    """A news publisher with one slot, registered on-chain by its own wallet and scored."""
    pub_id = f"claims-{secrets.token_hex(3)}"
    headers = api_sign_in(api, Wallet(account), stack)
    created = api.post(
        "/api/v1/publishers",
        json={"website_url": f"https://{pub_id}.example", "category": "news"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=headers)
    assert slot.status_code == 201, slot.text
    tx = api.post("/api/v1/publishers/me/registration-tx", json={"pub_id": pub_id}, headers=headers)
    send(stack, account, tx.json())
    stack.chain.set_quality_score(account.address, 60)
    stack.index_here()
    return Publisher(0, pub_id, 0, slot.json()["slot_id"], headers)


def test_publisher_claims_what_a_settled_epoch_earned(
    web: Web,
    settlement_settings: Any,  # noqa: F811
) -> None:
    stack = web.stack
    opened = web.open(width=375)
    account = opened.wallet.account
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        publisher = open_publisher(api, stack, account)
        campaign = open_campaign(api, stack, web)

    epoch = start_epoch(stack)
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        visits = [serve(api, publisher, campaign, visitor(500 + i)) for i in range(4)]
        for visit in visits:
            render(api, visit)
    stored(stack, [v.ad["ad_id"] for v in visits], 4)
    end_epoch(stack, epoch)
    settle_until_claimable(stack, settlement_settings, publisher)

    page = opened.page
    web.sign_in(opened, "/publisher/earnings")
    expect(page.get_by_role("heading", name="Earnings", exact=True)).to_be_visible()
    shown = page.locator("[data-claimable]").first
    expected = 4 * CPM_BID // 1000 * 8_500 // 10_000  # four impressions, the publishers' 85 %
    expect(shown).to_have_text(str(Decimal(expected) / USDC))
    expect(page.locator("table").nth(1)).to_contain_text(str(epoch))  # the epoch's row
    amount = int(Decimal(shown.inner_text()) * USDC)
    accessible(page)
    no_sideways_scroll(page)
    web.shot(page, "earnings-before-claim")

    before = stack.chain.usdc_balance(account.address)
    page.get_by_role("button", name="Claim").click()
    index_until(stack, page.locator("[data-claimed]"))
    expect(page.locator("[data-claimed]")).to_contain_text("Claim paid")
    assert stack.chain.usdc_balance(account.address) - before == amount
    expect(page.locator("[data-history]")).to_contain_text(shown_text(amount))
    expect(page.locator("[data-claimable]").first).to_have_text("0.00")
    accessible(page)
    no_sideways_scroll(page)
    web.shot(page, "earnings-claimed")

    page.goto("/publisher")
    expect(page.get_by_text("Registered", exact=True)).to_be_visible()
    accessible(page)
    no_sideways_scroll(page)
    page.goto("/publisher/onboarding")
    expect(page.locator("[data-first-ad]")).to_contain_text("first ad has been served")

    # analytics over the chain's days (its clock runs ahead of ours once tests move it)
    now = datetime.fromtimestamp(stack.chain.timestamp(), UTC)
    days = f"from={(now - timedelta(days=1)).date()}&to={now.date()}"
    page.goto(f"/publisher/analytics?{days}")
    expect(page.locator("[data-total=impressions]")).to_have_text("4")
    expect(page.get_by_role("img", name=re.compile("^Impressions"))).to_be_visible()
    accessible(page)
    web.shot(page, "analytics")


def settle_until_claimable(stack: Stack, settings: Any, publisher: Publisher) -> None:
    """Settle and let roots mature until the publisher's share is claimable: a root another
    test posted may still be in its challenge period, and only one is pending at a time."""
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        for _ in range(4):
            settle(stack, settings)
            stack.chain.increase_time(CHALLENGE_PERIOD + 1)
            stack.index_here()
            reply = api.get("/api/v1/publishers/me/earnings", headers=publisher.headers)
            assert reply.status_code == 200, reply.text
            if any(t["claimable"] > 0 for t in reply.json()["tokens"]):
                return
    raise AssertionError(f"the publisher's share never became claimable: {reply.json()}")


def shown_text(units: int) -> str:
    whole, frac = divmod(units, USDC)
    return f"{whole:,}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"
