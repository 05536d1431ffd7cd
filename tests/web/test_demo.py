"""Browser flow 2: the demo publisher page shows a real ad. A publisher with a slot and an
advertiser with a funded campaign are set up on the shared stack through the API, from
fresh wallets; a visitor opens `/demo?slot=…` in Chromium: the slot's own integration
snippet fetches the ad from `/x402/ad`, the impression it sends is stored, and a click goes
through `/track/click/…` to the campaign's landing page and is stored too."""

from __future__ import annotations

import io
import secrets
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from api.web.landing import SAMPLE_SLOT, sample_snippet
from tests.api.conftest import Wallet
from tests.settlement.world import rows, until
from tests.support.stack import Stack
from tests.support.test_stack import sign_in
from tests.web.browser import TestWallet, axe_violations, new_account
from tests.web.conftest import Web
from tests.web.test_landing import horizontal_overflow

USDC = 10**6
SLOT = {"name": "Sidebar", "format": "banner", "width": 300, "height": 250}
# well above what other tests on the shared stack bid, so the slot serves this campaign
BID = 40 * USDC


def creative(headline: str) -> bytes:
    """A 300×250 banner with a headline on it."""
    image = Image.new("RGB", (300, 250), (91, 33, 182))
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 288, 238), outline=(255, 255, 255), width=3)
    draw.text((30, 100), headline, fill=(255, 255, 255))
    draw.text((30, 130), "Shop the harbour collection", fill=(237, 233, 254))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def send(stack: Stack, account: LocalAccount, tx: dict[str, Any]) -> None:
    """Send a transaction the API built from `account`'s own wallet; wait until mined."""
    chain_id = stack.anvil.chain_id
    wallet = TestWallet(stack.anvil.url, account, chain_id, real_chain_id=chain_id)
    request = {"from": account.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]}
    tx_hash, _ = wallet.request("eth_sendTransaction", [request])
    receipt = until(
        tx["description"], lambda: stack.anvil.call("eth_getTransactionReceipt", tx_hash), 20
    )
    assert int(receipt["status"], 16) == 1, (tx["description"], receipt)


def open_publisher(api: httpx.Client, web: Web) -> tuple[str, str, dict[str, str]]:
    """A registered publisher with one banner slot: (pub_id, slot_id, auth headers)."""
    account = new_account()
    web.fund(account.address)
    headers = sign_in(api, Wallet(account), web.stack)
    pub_id = f"gazette-{secrets.token_hex(4)}"
    profile = {"website_url": f"https://{pub_id}.example", "category": "news"}
    assert api.post("/api/v1/publishers", json=profile, headers=headers).status_code == 201
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=headers)
    assert slot.status_code == 201, slot.text
    tx = api.post("/api/v1/publishers/me/registration-tx", json={"pub_id": pub_id}, headers=headers)
    assert tx.status_code == 200, tx.text
    send(web.stack, account, tx.json())
    return pub_id, slot.json()["slot_id"], headers


def open_campaign(api: httpx.Client, web: Web, landing_url: str) -> tuple[int, str]:
    """A funded, active CPM campaign for every country, category and device: (on-chain id,
    its creative's URL)."""
    account = new_account()
    funds = 100 * USDC
    web.fund(account.address, usdc=funds)
    headers = sign_in(api, Wallet(account), web.stack)
    company = {"company_name": "Harbour Outfitters", "website_url": "https://outfitters.example"}
    assert api.post("/api/v1/advertisers", json=company, headers=headers).status_code == 201
    draft = {
        "name": "Harbour collection",
        "bid_model": "cpm",
        "bid": BID,
        "total_budget": funds,
        "max_spend_per_epoch": funds,
        "format": "banner",
        "landing_url": landing_url,
    }
    created = api.post("/api/v1/campaigns", json=draft, headers=headers)
    assert created.status_code == 201, created.text
    path = f"/api/v1/campaigns/{created.json()['id']}"
    image = creative("Harbour Outfitters")
    upload = api.post(f"{path}/creatives", files={"file": ("ad.png", image)}, headers=headers)
    assert upload.status_code == 201, upload.text
    send(web.stack, account, api.post(f"{path}/registration-tx", headers=headers).json())
    web.stack.index_here()
    until("the API sees the registration", lambda: onchain_id(api, path, headers))
    funding = api.post(f"{path}/funding-txs", json={"amount": funds}, headers=headers)
    assert funding.status_code == 200, funding.text
    for tx in funding.json():
        send(web.stack, account, tx)
    web.stack.index_here()
    return int(onchain_id(api, path, headers)), upload.json()["url"]


def onchain_id(api: httpx.Client, path: str, headers: dict[str, str]) -> int | None:
    campaign_id: int | None = api.get(path, headers=headers).json()["onchain_id"]
    return campaign_id


def events(stack: Stack, serve_id: str, kind: str) -> list[tuple[Any, ...]]:
    return rows(
        stack,
        "SELECT verified, reason FROM ad_events WHERE serve_id = %s AND kind = %s",
        serve_id,
        kind,
    )


def show_ad(page: Page, slot_id: str, campaign_id: int) -> dict[str, Any]:
    """Open the demo page until the slot shows this campaign (the catalog learns of a new
    campaign within moments); the ad JSON the snippet was answered."""

    def served() -> dict[str, Any] | None:
        with page.expect_response(lambda r: "/x402/ad?" in r.url) as answer:
            page.goto(f"/demo?slot={slot_id}")
        response = answer.value
        if response.status != 200:
            return None
        ad: dict[str, Any] = response.json()
        return ad if ad["campaign_id"] == campaign_id else None

    return dict(until(f"the demo page shows campaign {campaign_id}", served, 30))


def test_demo_page_shows_the_ad_and_tracks_impression_and_click(web: Web) -> None:
    stack = web.stack
    landing = f"{stack.api_url}/about?from=ad"
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        pub_id, slot_id, publisher = open_publisher(api, web)
        campaign_id, creative_url = open_campaign(api, web, landing)
        integration = api.get(
            f"/api/v1/publishers/me/slots/{slot_id}/integration", headers=publisher
        ).json()

        # the ad servers learn of a new publisher within moments; until then the slot answers
        # 403 (the page would log it): wait for an agent's quote, which costs nothing
        until(
            "the ad servers know the publisher",
            lambda: (
                api.get(
                    "/x402/ad",
                    params={"pub_id": pub_id, "slot_id": slot_id, "format": "banner"},
                    headers={"User-Agent": "python-httpx/0.28 (agent)"},
                ).status_code
                != 403
            ),
            30,
        )

    visitor = web.open()
    page = visitor.page
    ad = show_ad(page, slot_id, campaign_id)
    # the page carries the slot's integration snippet exactly as the publisher copies it,
    # and the guide's preview is that same code for its sample slot
    assert integration["html"] in page.request.get(f"/demo?slot={slot_id}").text()
    sample = integration["html"].replace(slot_id, SAMPLE_SLOT["slot_id"])
    assert sample.replace(pub_id, SAMPLE_SLOT["pub_id"]) == sample_snippet(stack.api_url)
    banner = page.get_by_role("complementary", name="Advertisement")
    image = banner.get_by_role("img", name="Ad")
    expect(image).to_be_visible()
    expect(image).to_have_attribute("src", creative_url)
    assert ad["creative_url"] == creative_url
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) == 300
    expect(banner.get_by_role("link")).to_have_attribute("href", ad["click_url"])
    web.shot(page, "demo-ad-shown")
    assert axe_violations(page) == []
    page.set_viewport_size({"width": 375, "height": 900})
    assert horizontal_overflow(page) <= 0
    web.shot(page, "demo-ad-shown-375")

    stored = until("the impression is stored", lambda: events(stack, ad["ad_id"], "impression"))
    assert stored == [(True, None)], f"the impression was not verified: {stored}"

    with page.context.expect_page() as opened:
        image.click()
    landed = opened.value
    landed.wait_for_load_state()
    assert landed.url == landing
    expect(landed.get_by_role("heading", level=1, name="About Buzzer Network")).to_be_visible()
    web.shot(landed, "clicked-to-landing-page")
    clicks = until("the click is stored", lambda: events(stack, ad["ad_id"], "click"))
    assert clicks == [(True, None)], f"the click was not verified: {clicks}"


def test_demo_page_without_a_slot_says_how_to_get_one(web: Web) -> None:
    page = web.open(width=375).page
    page.goto("/demo")
    help_box = page.locator("[data-demo-help]")
    expect(help_box).to_contain_text("No ad slot chosen.")
    expect(help_box).to_contain_text("/demo?slot=<slot id>")
    assert horizontal_overflow(page) <= 0
    assert axe_violations(page) == []
    web.shot(page, "demo-no-slot")
    web.allow_console(r"status of 404 \(Not Found\)")  # the page of a missing slot is a 404
    reply = page.goto("/demo?slot=slot_doesnotexist")
    assert reply is not None and reply.status == 404
    expect(help_box).to_contain_text("There is no slot slot_doesnotexist.")
    web.shot(page, "demo-unknown-slot")
