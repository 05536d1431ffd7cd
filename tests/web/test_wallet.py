"""Wallet sign-in in a real browser: connect, sign the SIWE message, land on the dashboard
chooser signed in through the session cookie; sign out; and the ways it goes wrong."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.web.conftest import Web


def test_connect_sign_in_and_out(web: Web) -> None:
    opened = web.open()
    page = opened.page
    page.goto("/")
    page.get_by_role("link", name="Connect wallet").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_role("button", name="Connect wallet").last.click()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="What brings you here?")).to_be_visible()
    short = opened.wallet.address[:6]
    expect(page.locator("[data-wallet-address]")).to_contain_text(short)
    web.shot(page, "signed-in")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["buzzer_session"]["httpOnly"] is True
    assert cookies["buzzer_session"]["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Connect wallet")).to_be_visible()
    assert "buzzer_session" not in {c["name"] for c in page.context.cookies()}
