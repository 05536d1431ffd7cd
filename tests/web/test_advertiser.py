"""The advertiser's pages in a real browser with a real wallet (flow 1): a fresh wallet
connects, signs in, onboards, builds a campaign with a creative (a validation error shows next
to its field and nothing typed is lost), registers and funds it on-chain; the campaign page
then reads active, servable and funded, and the escrow holds the amount to the atomic unit;
billing requests a withdrawal (its unlock time shown) and cancels it. Every page is checked
with axe, the builder and the campaign page at 375 px too; another wallet gets a 404 for the
campaign."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.stack import Stack
from tests.web.browser import axe_violations
from tests.web.conftest import Web

USDC = 10**6
FUNDED = 37_250_000  # 37.25 USDC: the amount typed into the fund form, to the atomic unit


def png(tmp_path: Path, width: int = 300, height: int = 250) -> Path:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (91, 33, 182)).save(out, "PNG")
    path = tmp_path / f"banner-{width}x{height}.png"
    path.write_bytes(out.getvalue())
    return path


def clean(page: Page, label: str, web: Web) -> None:
    """No serious or critical accessibility violation; a screenshot for the record."""
    assert axe_violations(page) == [], label
    web.shot(page, label)


def fits(page: Page) -> None:
    """At 375 px wide the page does not scroll sideways."""
    page.set_viewport_size({"width": 375, "height": 800})
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"{page.url} is {width} px wide at 375 px"
    page.set_viewport_size({"width": 1280, "height": 900})


def escrow_balance(stack: Stack, onchain_id: int) -> int:
    return int(stack.chain.call("PaymentEscrow", "get_balance", onchain_id, stack.chain.usdc))


def test_an_advertiser_builds_registers_and_funds_a_campaign(
    web: Web, stack: Stack, indexer: None, tmp_path: Path
) -> None:
    web.allow_console(r"status of 4(09|22)")  # the validation error the test provokes
    opened = web.open(usdc=100 * USDC)
    page = opened.page

    page.goto("/advertiser")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/advertiser"))
    web.sign_in(opened, "/advertiser")
    expect(page).to_have_url(re.compile(r"/advertiser/onboarding$"))
    expect(page.get_by_role("heading", name="Become an advertiser")).to_be_visible()
    clean(page, "onboarding", web)
    page.get_by_label("Company name").fill("Shoes & Co")
    page.get_by_label("Website").fill("https://shoes.example")
    page.get_by_role("button", name="Create advertiser profile").click()

    expect(page).to_have_url(re.compile(r"/advertiser/campaigns/new$"))
    clean(page, "builder", web)
    fits(page)
    page.get_by_label("Campaign name").fill("Spring shoes")
    page.get_by_label("Landing page").fill("not a web address")
    page.get_by_label("Countries").fill("us, de")
    page.get_by_label("Mobile").check()
    page.get_by_label("Image or video").set_input_files(png(tmp_path))
    expect(page.get_by_role("img", name="Preview of the creative")).to_be_visible()
    page.get_by_label("Bid (USDC)").fill("2.5")
    page.get_by_label("Max spend per epoch (USDC)").fill("10")
    page.get_by_label("Total budget (USDC)").fill("12.345678.9")
    page.get_by_role("button", name="Create campaign").click()
    # checked in the page: an amount that is not one
    expect(page.locator("[data-error-for=total_budget]")).to_contain_text("an amount like 12.50")
    page.get_by_label("Total budget (USDC)").fill("37.25")
    page.get_by_role("button", name="Create campaign").click()
    # checked by the API: the landing page, shown next to its field
    landing_error = page.locator("[data-error-for=landing_url]")
    expect(landing_error).not_to_be_empty()
    expect(page.get_by_label("Landing page")).to_have_attribute("aria-invalid", "true")
    for label, typed in [
        ("Campaign name", "Spring shoes"),
        ("Landing page", "not a web address"),
        ("Countries", "us, de"),
        ("Bid (USDC)", "2.5"),
        ("Total budget (USDC)", "37.25"),
    ]:
        expect(page.get_by_label(label)).to_have_value(typed)
    expect(page.get_by_label("Mobile")).to_be_checked()
    expect(page.locator("[data-show=creative]")).to_have_text(re.compile(r"banner-300x250"))
    web.shot(page, "builder-errors")
    page.get_by_label("Landing page").fill("https://shoes.example/spring")
    page.get_by_role("button", name="Create campaign").click()

    expect(page).to_have_url(re.compile(r"/advertiser/campaigns/[0-9a-f-]{36}$"))
    campaign_url = page.url
    expect(page.get_by_role("heading", name="Spring shoes")).to_be_visible()
    expect(page.locator("[data-reason]")).to_contain_text("not registered on-chain")
    expect(page.get_by_role("img", name=re.compile("Creative 1"))).to_be_visible()
    clean(page, "draft", web)
    page.get_by_role("button", name="Register on-chain").click()
    expect(page.get_by_text("Registered as campaign #")).to_be_visible(timeout=40_000)
    expect(page.locator("[data-reason]")).to_contain_text("escrow balance is empty")

    page.get_by_label("Amount (USDC)").fill("37.25")
    page.get_by_role("button", name="Fund", exact=True).click()
    expect(page.locator("[data-stat=escrow]")).to_have_text("37.25", timeout=40_000)
    expect(page.locator("[data-status]")).to_have_text("Active")
    expect(page.locator("[data-servable]")).to_have_text("Servable")
    expect(page.locator("[data-reason]")).to_have_count(0)
    clean(page, "funded", web)
    fits(page)

    onchain_id = int(page.locator("[data-onchain-id]").inner_text())
    assert escrow_balance(stack, onchain_id) == FUNDED

    for path, heading in [
        ("/advertiser", "Shoes & Co"),
        ("/advertiser/campaigns", "Campaigns"),
        ("/advertiser/analytics", "Analytics"),
        ("/advertiser/billing", "Billing"),
        ("/advertiser/settings", "Settings"),
    ]:
        page.goto(path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        clean(page, path.strip("/").replace("/", "-"), web)
    page.goto("/advertiser/billing")
    expect(page.get_by_text("In escrow: 37.25 USDC")).to_be_visible()
    page.get_by_label("Amount to withdraw (USDC)").fill("1.5")
    page.get_by_role("button", name="Request withdrawal").click()
    expect(page.locator("[data-withdraw]")).to_contain_text("Requested 1.50 USDC; unlocks at")
    web.shot(page, "withdraw-requested")
    page.get_by_role("button", name="Cancel the request").click()
    expect(page.get_by_role("button", name="Request withdrawal")).to_be_visible()
    page.goto("/advertiser/campaigns")
    row = page.get_by_role("row", name=re.compile("Spring shoes"))
    expect(row).to_contain_text("Servable")  # serving again once the request is cancelled

    assert someone_else_sees(stack, campaign_url) == 404


def someone_else_sees(stack: Stack, url: str) -> int:
    """The status another signed-in wallet (with its own advertiser profile) gets."""
    other = Account.create()
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        message = client.get("/web/sign-in/message", params={"address": other.address}).json()
        signature = other.sign_message(encode_defunct(text=message["message"])).signature
        opened = client.post(
            "/web/session",
            json={"message": message["message"], "signature": "0x" + bytes(signature).hex()},
        )
        assert opened.status_code == 200, opened.text
        csrf = {"X-CSRF-Token": opened.json()["csrf_token"]}
        client.post(
            "/api/v1/advertisers",
            json={"company_name": "Other", "website_url": "https://other.example"},
            headers=csrf,
        ).raise_for_status()
        return client.get(url.removeprefix(stack.api_url)).status_code
