"""What goes wrong, in a real browser: a session that expires while the user types, and a
transaction that reverts on-chain. Each says clearly what happened and loses nothing typed.
(A wallet on the wrong chain and a rejected signature are in test_wallet.py.)"""

from __future__ import annotations

import secrets
import time

import jwt
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from tests.support.stack import JWT_SECRET
from tests.web.browser import TestWallet, new_account
from tests.web.conftest import Web


def expired_session(web: Web, wallet: str) -> str:
    """A session token of `wallet` that expired a minute ago, signed by the stack's key."""
    settings = web.stack.settings
    now = int(time.time())
    claims = {
        "sub": wallet.lower(),
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now - 60,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def profile_of(web: Web, wallet: str) -> tuple[str, str] | None:
    engine = create_engine(web.stack.database_url)
    try:
        with engine.connect() as db:
            row = db.execute(
                text("SELECT website_url, email FROM publisher_profiles WHERE wallet = :w"),
                {"w": wallet.lower()},
            ).first()
    finally:
        engine.dispose()
    return None if row is None else (row[0], row[1])


def test_an_expired_session_keeps_what_was_typed(web: Web) -> None:
    web.allow_console(r"status of 401")  # the refused request, logged by Chromium
    opened = web.open()
    page = opened.page
    web.sign_in(opened, "/publisher/onboarding")
    page.get_by_label("Website").fill("https://kept.example")
    page.get_by_label("Contact email (optional)").fill("ops@kept.example")
    # the session runs out while the form is open
    page.context.add_cookies(
        [
            {
                "name": "buzzer_session",
                "value": expired_session(web, opened.wallet.address),
                "url": web.stack.api_url,
            }
        ]
    )
    page.get_by_role("button", name="Create profile").click()
    alert = page.locator("[data-form-message]").first
    expect(alert).to_contain_text("Your session has expired")
    expect(page.get_by_label("Website")).to_have_value("https://kept.example")
    expect(page.get_by_label("Contact email (optional)")).to_have_value("ops@kept.example")
    assert profile_of(web, opened.wallet.address) is None
    web.shot(page, "session-expired")

    page.get_by_role("button", name="Sign in again").click()
    expect(alert).to_contain_text("Signed in again")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("heading", name="Register on-chain")).to_be_visible()
    assert profile_of(web, opened.wallet.address) == (
        "https://kept.example/",
        "ops@kept.example",
    )


def test_a_reverted_transaction_says_why_and_keeps_the_form(web: Web, indexer: None) -> None:
    stack = web.stack
    opened = web.open(send_anyway=True)  # the user confirms the wallet's "may fail" warning
    page = opened.page
    web.sign_in(opened, "/publisher/onboarding")
    page.get_by_label("Website").fill(f"https://race-{secrets.token_hex(3)}.example")
    page.get_by_role("button", name="Create profile").click()
    pub_id = f"race-{secrets.token_hex(4)}"
    page.get_by_label("Publisher id").fill(pub_id)

    # between the server building the transaction and the wallet sending it, another
    # wallet takes the id on-chain
    rival = TestWallet(stack.anvil.url, new_account(), stack.anvil.chain_id, stack.anvil.chain_id)
    web.fund(rival.address)
    data = stack.chain.abis.calldata("PublisherRegistry", "register", pub_id, rival.address)
    to = stack.chain.addresses["PublisherRegistry"]
    opened.wallet.before_send = lambda: rival.request(
        "eth_sendTransaction", [{"from": rival.address, "to": to, "data": data}]
    )

    page.get_by_role("button", name="Register with my wallet").click()
    alert = page.locator("[data-form-message]").first
    expect(alert).to_contain_text("Reverted in block", timeout=30_000)
    expect(alert).to_contain_text("registry: pub_id taken")
    expect(alert).to_contain_text("Nothing changed on-chain; only the gas was spent")
    expect(page.get_by_label("Publisher id")).to_have_value(pub_id)
    web.shot(page, "reverted")
    assert not stack.chain.call("PublisherRegistry", "is_registered", opened.wallet.address)

    # another id goes through, and the page moves on once the indexer has seen it
    page.get_by_label("Publisher id").fill(pub_id + "-2")
    opened.wallet.send_anyway = False
    page.get_by_role("button", name="Register with my wallet").click()
    expect(page.get_by_role("heading", name="Register on-chain")).to_be_hidden(timeout=30_000)
    assert stack.chain.call("PublisherRegistry", "is_registered", opened.wallet.address)
