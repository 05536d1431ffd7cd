"""Publisher accounts: profile CRUD with clear errors, and on-chain registration through a
transaction the API builds, the wallet sends, and the indexer reports back."""

from __future__ import annotations

import pytest
from eth_abi import decode

from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account


def test_profile_create_read_update(api, wallet):
    headers = auth(api, wallet)

    created = api.post(
        "/api/v1/publishers",
        json={"website_url": "https://news.example", "email": "ops@news.example"},
        headers=headers,
    )

    assert created.status_code == 201, created.text
    assert created.json() == {
        "wallet": wallet.address.lower(),
        "website_url": "https://news.example/",
        "email": "ops@news.example",
        "category": None,
        "push_payouts": False,  # earnings wait to be claimed unless the publisher opts in
        "push_threshold": 0,
        "onchain": {
            "registered": False,
            "pub_id": None,
            "payment_wallet": None,
            "quality_score": None,
            "domain_hash": None,
            "suspended": False,
        },
    }
    updated = api.patch(
        "/api/v1/publishers/me", json={"email": None, "category": "news"}, headers=headers
    )
    assert (updated.json()["email"], updated.json()["category"]) == (None, "news")
    assert api.get("/api/v1/publishers/me", headers=headers).json()["email"] is None
    again = api.post(
        "/api/v1/publishers", json={"website_url": "https://x.example"}, headers=headers
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_exists"


@pytest.mark.parametrize(
    "body",
    [
        {"website_url": "ftp://news.example"},
        {"website_url": "not a url"},
        {"website_url": "https://news.example", "email": "not-an-email"},
        {"website_url": "https://news.example", "category": "gossip"},
        {},
    ],
    ids=["scheme", "garbage-url", "email", "category", "missing"],
)
def test_bad_profiles_are_refused_and_change_nothing(api, wallet, body):
    headers = auth(api, wallet)
    reply = api.post("/api/v1/publishers", json=body, headers=headers)
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "validation_error"
    assert api.get("/api/v1/publishers/me", headers=headers).status_code == 404


def test_routes_need_a_session_and_show_only_the_callers_profile(api, wallet):
    assert api.get("/api/v1/publishers/me").status_code == 401
    assert (
        api.post("/api/v1/publishers", json={"website_url": "https://a.example"}).status_code == 401
    )
    api.post(
        "/api/v1/publishers", json={"website_url": "https://a.example"}, headers=auth(api, wallet)
    )
    other = Wallet()
    mine = api.get("/api/v1/publishers/me", headers=auth(api, other))
    assert mine.status_code == 404  # B sees no profile, never A's
    patched = api.patch(
        "/api/v1/publishers/me", json={"website_url": "https://b.example"}, headers=auth(api, other)
    )
    assert patched.status_code == 404
    assert api.get("/api/v1/publishers/me", headers=auth(api, wallet)).json()["website_url"] == (
        "https://a.example/"
    )


def test_onchain_registration_round_trip(api, chain, database_url, deployment):
    publisher = Wallet(dev_account(5))
    headers = auth(api, publisher)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)

    tx = api.post(
        "/api/v1/publishers/me/registration-tx", json={"pub_id": "a-example"}, headers=headers
    )

    assert tx.status_code == 200, tx.text
    body = tx.json()
    assert body["to"] == deployment["contracts"]["PublisherRegistry"]
    assert body["chainId"] == 1337
    pub_id, payment_wallet = decode(["string", "address"], bytes.fromhex(body["data"][10:]))
    assert (pub_id, payment_wallet.lower()) == ("a-example", publisher.address.lower())
    chain.rpc.call(
        "eth_sendTransaction",
        {"from": publisher.address, "to": body["to"], "data": body["data"], "value": body["value"]},
    )
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)

    onchain = api.get("/api/v1/publishers/me", headers=headers).json()["onchain"]
    assert onchain["registered"] is True
    assert onchain["pub_id"] == "a-example"
    again = api.post(
        "/api/v1/publishers/me/registration-tx", json={"pub_id": "other"}, headers=headers
    )
    assert again.status_code == 409


@pytest.mark.parametrize("pub_id", ["A", "has space", "UPPER", "-lead", "x" * 65])
def test_registration_rejects_bad_pub_ids(api, wallet, pub_id):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    reply = api.post(
        "/api/v1/publishers/me/registration-tx", json={"pub_id": pub_id}, headers=headers
    )
    assert reply.status_code == 422
