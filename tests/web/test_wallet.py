"""Wallet sign-in in a real browser: connect, sign the SIWE message, land on the dashboard
chooser signed in through the session cookie; sign out; and the ways it goes wrong."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.web.browser import TestWallet, axe_violations, new_account
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


def test_a_wallet_on_another_chain_is_asked_to_switch(web: Web) -> None:
    opened = web.open(chain_id=1)
    page = opened.page
    page.goto("/sign-in")
    page.get_by_role("button", name="Connect wallet").last.click()
    alert = page.locator("[data-sign-in-message]")
    expect(alert).to_contain_text("Your wallet is on chain 1")
    expect(alert).to_contain_text(f"chain {web.stack.anvil.chain_id}")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_hidden()
    web.shot(page, "wrong-chain")
    page.get_by_role("button", name="Switch to").click()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="What brings you here?")).to_be_visible()
    assert opened.wallet.chain_id == web.stack.anvil.chain_id


def test_a_rejected_signature_says_so_and_signing_again_works(web: Web) -> None:
    opened = web.open(reject_signatures=True)
    page = opened.page
    page.goto("/sign-in?next=/app")
    page.get_by_role("button", name="Connect wallet").last.click()
    page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.locator("[data-sign-in-message]")
    expect(alert).to_have_text(
        "You rejected the request in your wallet. Nothing was signed or sent."
    )
    web.shot(page, "rejected")
    assert "buzzer_session" not in {c["name"] for c in page.context.cookies()}
    opened.wallet.reject_signatures = False
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="What brings you here?")).to_be_visible()


def test_with_several_wallets_the_user_chooses_one(web: Web) -> None:
    first = web.open()
    page = first.page
    second = TestWallet(
        web.stack.anvil.url,
        new_account(),
        web.stack.anvil.chain_id,
        real_chain_id=web.stack.anvil.chain_id,
    )
    second.install(page, name="Other Wallet", uuid="000000000002", legacy=False)
    page.goto("/sign-in")
    expect(page.get_by_text("Several wallets are installed")).to_be_visible()
    page.get_by_role("button", name="Other Wallet").click()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("[data-wallet-address]")).to_contain_text(second.address[:6])
    assert "personal_sign" in second.calls and "personal_sign" not in first.wallet.calls


def test_sign_in_chooser_and_not_found_pages_are_accessible_and_fit_a_phone(web: Web) -> None:
    web.allow_console(r"status of 404")  # the missing page, on purpose
    opened = web.open(width=375)
    page = opened.page
    page.goto("/sign-in")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert axe_violations(page) == []
    web.sign_in(opened, "/app")
    expect(page.get_by_role("heading", name="What brings you here?")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert axe_violations(page) == []
    web.shot(page, "chooser-375")
    page.goto("/advertiser/campaigns/00000000-0000-0000-0000-000000000000")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert axe_violations(page) == []
