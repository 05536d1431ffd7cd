"""The landing pages in a real browser: each renders at desktop and phone width without a
horizontal scroll and with no serious accessibility violation, and the ROI calculator works
out known figures (in integer atomic units, the escrow's 85/15 split)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.browser import axe_violations
from tests.web.conftest import Web

PAGES = {
    "/": "The ad network whose every payout you can prove.",
    "/publishers": "Earn 85% of every ad, and get paid by agents too.",
    "/advertisers": "Your budget stays yours until an ad is really seen.",
    "/about": "About Buzzer Network",
    "/guide": "Guide",
}


def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


def test_landing_pages_at_desktop_and_phone_width(web: Web) -> None:
    for width in (1280, 375):
        page = web.open(width=width).page
        for path, heading in PAGES.items():
            page.goto(path)
            expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
            if path == "/guide":  # the FAQ's answers count too
                for summary in page.locator("#faq summary").all():
                    summary.click()
            assert horizontal_overflow(page) <= 0, f"{path} scrolls sideways at {width} px"
            assert axe_violations(page) == [], f"{path} at {width} px"
            web.shot(page, f"{path.strip('/') or 'home'}-{width}")


def test_the_guide_explains_x402_and_links_the_api_reference(web: Web) -> None:
    page = web.open().page
    page.goto("/guide")
    x402 = page.locator("#x402")
    expect(x402).to_contain_text("PAYMENT-REQUIRED")
    expect(x402).to_contain_text("PAYMENT-SIGNATURE")
    expect(x402).to_contain_text("X-Buzzer-Receipt")
    expect(x402).to_contain_text(f"eip155:{web.stack.anvil.chain_id}")
    snippet = page.locator("[data-snippet]")
    expect(snippet).to_contain_text(f'"api": "{web.stack.api_url}"')
    expect(snippet).to_contain_text("navigator.sendBeacon(ad.impression_url)")
    faq = page.locator("#faq")
    page.get_by_text("What are the fees?").click()
    expect(faq).to_contain_text("15% of what campaigns are charged")
    # (not opened: Swagger UI loads its script from a CDN, out of reach of the tests)
    reference = page.get_by_role("main").get_by_role("link", name="API reference")
    expect(reference).to_have_attribute("href", "/docs")
    assert page.request.get("/docs").ok


def test_roi_calculator_works_out_known_figures(web: Web) -> None:
    page = web.open(width=375).page
    page.goto("/guide#roi")
    page.get_by_label("Monthly page views").fill("1,000,000")
    page.get_by_label("Fill rate (%)").fill("80")
    page.get_by_label("CPM bid (USDC per 1,000 impressions)").first.fill("2.50")
    out = page.locator("form[data-roi=publisher]")
    expect(out.locator("[data-out=impressions]")).to_have_text("800,000")
    expect(out.locator("[data-out=gross]")).to_have_text("2,000.00")
    expect(out.locator("[data-out=publisher]")).to_have_text("1,700.00")
    expect(out.locator("[data-out=network]")).to_have_text("300.00")
    # 333 impressions at 1.00 CPM: 0.333 charged, 0.28305 to the publisher (rounded down to
    # the atomic unit, as the escrow does), the rest to the network
    page.get_by_label("Monthly page views").fill("333")
    page.get_by_label("Fill rate (%)").fill("100")
    page.get_by_label("CPM bid (USDC per 1,000 impressions)").first.fill("1")
    expect(out.locator("[data-out=publisher]")).to_have_text("0.28305")
    expect(out.locator("[data-out=network]")).to_have_text("0.04995")
    page.get_by_label("Fill rate (%)").fill("120")
    expect(page.locator("[data-roi-error=fill]")).to_contain_text("from 0 to 100")
    expect(out.locator("[data-out=publisher]")).to_have_text("—")
    web.shot(page, "roi-publisher-invalid")

    ads = page.locator("form[data-roi=advertiser]")
    page.get_by_label("Budget (USDC)").fill("500")
    ads.get_by_label("CPM bid (USDC per 1,000 impressions)").fill("2.50")
    expect(ads.locator("[data-out=reach]")).to_have_text("200,000")
    expect(ads.locator("[data-out=to_publishers]")).to_have_text("425.00")
    expect(ads.locator("[data-out=fee]")).to_have_text("75.00")
    web.shot(page, "roi-advertiser")
