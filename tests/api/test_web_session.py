"""The dashboards' session: a wallet signs in from a page into an HttpOnly, SameSite cookie;
every API route accepts it, and any state-changing request on it must carry the session's
CSRF token, so another site's form or script cannot act for the wallet. And the status of a
transaction a page sent: pending, mined, seen by the indexer, or reverted with its reason."""

from __future__ import annotations

import time
from typing import Any

import jwt
from eth_account import Account
from sqlalchemy import create_engine, text

from api.core.chain import call_data
from chain.contracts import load_deployment
from tests.api.conftest import SECRET, Wallet, auth

PROFILE = {"website_url": "https://cookie.example", "category": "news"}


def open_session(client: Any, wallet: Wallet) -> str:
    """Sign in as a page does; the CSRF token (the cookie is now in the client's jar)."""
    draft = client.get("/web/sign-in/message", params={"address": wallet.address})
    assert draft.status_code == 200, draft.text
    message = draft.json()["message"]
    reply = client.post(
        "/web/session", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["csrf_token"]
    return token


def test_signing_in_sets_an_httponly_samesite_cookie_every_route_accepts(client):
    wallet = Wallet()
    draft = client.get("/web/sign-in/message", params={"address": wallet.address.lower()})
    message = draft.json()["message"]
    assert message.startswith("buzzer.test wants you to sign in with your Ethereum account:")
    assert wallet.address in message and "Chain ID: 1337" in message
    reply = client.post(
        "/web/session", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 200, reply.text
    cookie = reply.headers["set-cookie"].lower()
    assert "buzzer_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert reply.json()["wallet"] == wallet.address
    assert client.get("/api/v1/auth/me").json() == {"wallet": wallet.address}


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(api):
    csrf = open_session(api, Wallet())
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": ""}):
        refused = api.post("/api/v1/publishers", json=PROFILE, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "csrf_failed"
    assert api.get("/api/v1/publishers/me").status_code == 404  # nothing was created
    created = api.post("/api/v1/publishers", json=PROFILE, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text


def test_one_sessions_csrf_token_does_not_work_for_another(api):
    first = open_session(api, Wallet())
    open_session(api, Wallet())  # the jar now holds the second session's cookie
    refused = api.post("/api/v1/publishers", json=PROFILE, headers={"X-CSRF-Token": first})
    assert refused.status_code == 403


def test_bearer_clients_need_no_csrf_token(api):
    headers = auth(api, Wallet())
    assert api.post("/api/v1/publishers", json=PROFILE, headers=headers).status_code == 201


def test_an_expired_or_forged_cookie_is_not_a_session(client):
    wallet = Wallet()
    now = int(time.time())
    settings = client.app.state.settings
    claims = {
        "sub": wallet.address.lower(),
        "iat": now - 100,
        "nbf": now - 100,
        "exp": now - 10,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    client.cookies.set("buzzer_session", jwt.encode(claims, SECRET, algorithm="HS256"))
    expired = client.get("/api/v1/auth/me")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
    claims["exp"] = now + 600
    client.cookies.set("buzzer_session", jwt.encode(claims, "another-secret-" + "y" * 40))
    assert client.get("/api/v1/auth/me").json()["error"]["code"] == "invalid_token"
    # a page treats either as signed out
    page = client.get("/app", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/sign-in?next=/app"


def test_a_refused_signature_sets_no_cookie(client):
    wallet = Wallet()
    message = client.get("/web/sign-in/message", params={"address": wallet.address}).json()[
        "message"
    ]
    forged = Wallet().sign(message)
    reply = client.post("/web/session", json={"message": message, "signature": forged})
    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_sign_in_message_needs_an_address(client):
    reply = client.get("/web/sign-in/message", params={"address": "0x1234"})
    assert reply.status_code == 422
    assert client.get("/web/sign-in/message").status_code == 422


def test_signing_out_ends_the_session_wherever_its_token_went(client):
    csrf = open_session(client, Wallet())
    token = client.cookies["buzzer_session"]
    assert client.post("/web/sign-out").status_code == 403  # not from our page: still in
    assert client.get("/api/v1/auth/me").status_code == 200
    reply = client.post("/web/sign-out", headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 204
    assert (
        'buzzer_session=""' in reply.headers["set-cookie"]
        or "max-age=0" in reply.headers["set-cookie"].lower()
    )
    assert client.get("/api/v1/auth/me").status_code == 401
    # a copy of the token, as a cookie or a bearer token, is refused too
    client.cookies.set("buzzer_session", token)
    assert client.get("/api/v1/auth/me").json()["error"]["code"] == "session_ended"
    client.cookies.clear()
    copied = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert copied.json()["error"]["code"] == "session_ended"
    client.cookies.set("buzzer_session", token)
    assert client.get("/app", follow_redirects=False).status_code == 303


def test_sign_in_only_returns_to_a_page_of_this_site(client):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"):
        page = client.get("/sign-in", params={"next": target})
        assert page.status_code == 200
        assert 'data-next="/app"' in page.text, target
    assert (
        'data-next="/publisher/earnings"'
        in client.get("/sign-in", params={"next": "/publisher/earnings"}).text
    )


# --- transaction status --------------------------------------------------------------------


def send(anvil: Any, tx: dict[str, Any]) -> str:
    tx_hash: str = anvil.call("eth_sendTransaction", tx)
    return tx_hash


def test_transaction_status_from_mined_to_indexed(api, anvil, database_url):
    headers = auth(api, Wallet())
    sender = anvil.call("eth_accounts")[0]
    tx_hash = send(anvil, {"from": sender, "to": Account.create().address, "value": "0x1"})
    status = api.get(f"/api/v1/tx/{tx_hash}", headers=headers).json()
    assert status["state"] == "mined" and status["block"] > 0
    with create_engine(database_url).begin() as db:  # the indexer commits past that block
        db.execute(
            text(
                "INSERT INTO indexer_checkpoints (chain_id, block_number, block_hash, "
                "block_timestamp, finalized_block, head_block) VALUES (1337, :b, '0x', 0, 0, :b)"
            ),
            {"b": status["block"]},
        )
    assert api.get(f"/api/v1/tx/{tx_hash}", headers=headers).json()["state"] == "indexed"


def test_a_reverted_transaction_reports_the_contracts_reason(api, anvil, deployments_dir):
    headers = auth(api, Wallet())
    registry = load_deployment(1337).address("PublisherRegistry")
    sender = anvil.call("eth_accounts")[7]
    # update_payment_wallet(address) from a wallet that never registered; gas given, so the
    # node mines it instead of refusing at estimation (as a wallet's "send anyway" does)
    data = call_data("PublisherRegistry", "update_payment_wallet", Account.create().address)
    tx_hash = send(anvil, {"from": sender, "to": registry, "data": data, "gas": hex(200_000)})
    status = api.get(f"/api/v1/tx/{tx_hash}", headers=headers).json()
    assert status["state"] == "reverted"
    assert status["reason"] == "registry: not registered"


def test_transaction_status_of_an_unknown_or_malformed_hash(api):
    headers = auth(api, Wallet())
    unknown = api.get("/api/v1/tx/0x" + "ab" * 32, headers=headers)
    assert unknown.status_code == 200 and unknown.json()["state"] == "unknown"
    assert api.get("/api/v1/tx/0x1234", headers=headers).status_code == 422
    assert api.get("/api/v1/tx/0x" + "ab" * 32).status_code == 401


def test_pages_cannot_be_framed_by_another_site(client):
    page = client.get("/sign-in")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_dashboard_link_goes_to_what_the_wallet_is(api):
    csrf = {"X-CSRF-Token": open_session(api, Wallet())}
    chooser = api.get("/app", follow_redirects=False)
    assert chooser.status_code == 200 and "What brings you here?" in chooser.text
    company = {"company_name": "Shoes", "website_url": "https://shoes.example"}
    assert api.post("/api/v1/advertisers", json=company, headers=csrf).status_code == 201
    assert api.get("/app", follow_redirects=False).headers["location"] == "/advertiser"
    assert api.post("/api/v1/publishers", json=PROFILE, headers=csrf).status_code == 201
    assert api.get("/app", follow_redirects=False).headers["location"] == "/publisher"
