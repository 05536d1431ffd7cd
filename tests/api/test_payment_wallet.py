"""A publisher moves its payments to another wallet through a transaction the API builds and
its own wallet sends; per-epoch earnings list what each settled epoch allocated to it."""

from __future__ import annotations

import pytest
from eth_abi import decode
from sqlalchemy import create_engine, text

from migrations import sqlalchemy_url
from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

NEW_WALLET = "0x" + "ab" * 20


def registered(api, chain, database_url, index: int = 5) -> dict[str, str]:
    publisher = Wallet(dev_account(index))
    headers = auth(api, publisher)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    chain.register_publisher(index, "a-example")
    index_to_head(chain.rpc_url, database_url)
    return headers


def test_payment_wallet_moves_on_chain(api, chain, database_url, deployment):
    headers = registered(api, chain, database_url)

    tx = api.post(
        "/api/v1/publishers/me/payment-wallet-tx",
        json={"payment_wallet": NEW_WALLET},
        headers=headers,
    )

    assert tx.status_code == 200, tx.text
    body = tx.json()
    assert body["to"] == deployment["contracts"]["PublisherRegistry"]
    (new_wallet,) = decode(["address"], bytes.fromhex(body["data"][10:]))
    assert new_wallet.lower() == NEW_WALLET
    chain.rpc.call(
        "eth_sendTransaction",
        {"from": dev_account(5).address, "to": body["to"], "data": body["data"]},
    )
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)
    onchain = api.get("/api/v1/publishers/me", headers=headers).json()["onchain"]
    assert onchain["payment_wallet"] == NEW_WALLET
    again = api.post(
        "/api/v1/publishers/me/payment-wallet-tx",
        json={"payment_wallet": NEW_WALLET},
        headers=headers,
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "unchanged")


@pytest.mark.parametrize(
    "address",
    ["0x1234", "not an address", "0x" + "0" * 40, "0x" + "g" * 40, None],
    ids=["short", "garbage", "zero", "not-hex", "missing"],
)
def test_bad_payment_wallets_are_refused_next_to_the_field(api, wallet, address):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    reply = api.post(
        "/api/v1/publishers/me/payment-wallet-tx",
        json={} if address is None else {"payment_wallet": address},
        headers=headers,
    )
    assert reply.status_code == 422
    fields = [p["field"] for p in reply.json()["error"]["details"]["problems"]]
    assert fields == ["body.payment_wallet"]


def test_payment_wallet_needs_the_registration_first(api, wallet):
    headers = auth(api, wallet)
    reply = api.post(
        "/api/v1/publishers/me/payment-wallet-tx",
        json={"payment_wallet": NEW_WALLET},
        headers=headers,
    )
    assert reply.status_code == 404  # no profile yet
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    reply = api.post(
        "/api/v1/publishers/me/payment-wallet-tx",
        json={"payment_wallet": NEW_WALLET},
        headers=headers,
    )
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "not_registered"
    assert "register the wallet on-chain first" in reply.json()["error"]["message"]


def test_push_payouts_switch_on_with_a_threshold(api, wallet):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    reply = api.patch(
        "/api/v1/publishers/me",
        json={"push_payouts": True, "push_threshold": 2_500_000},
        headers=headers,
    )
    assert (reply.json()["push_payouts"], reply.json()["push_threshold"]) == (True, 2_500_000)
    bad = api.patch("/api/v1/publishers/me", json={"push_threshold": -1}, headers=headers)
    assert bad.status_code == 422
    assert api.get("/api/v1/publishers/me", headers=headers).json()["push_threshold"] == 2_500_000


def test_epoch_earnings_list_each_allocation_newest_first(api, wallet, database_url):
    headers = auth(api, wallet)
    assert api.get("/api/v1/publishers/me/earnings/epochs", headers=headers).status_code == 404
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    assert api.get("/api/v1/publishers/me/earnings/epochs", headers=headers).json() == []
    me, token, chain_id = wallet.address.lower(), "0x" + "cd" * 20, 1337
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as db:
        for epoch, state, root_id in ((7, "allocated", 3), (8, "spent", None)):
            db.execute(
                text(
                    "INSERT INTO settlement_epochs (chain_id, epoch, state, starts_at, ends_at,"
                    " block_number, block_hash, end_block, events, inputs_hash, note, root_id)"
                    " VALUES (:c, :e, :s, 0, 1, 1, '0x', 1, 0, '', '', :r)"
                ),
                {"c": chain_id, "e": epoch, "s": state, "r": root_id},
            )
        for epoch, campaign, account, amount in (
            (7, 1, me, 1_000),
            (7, 2, me, 500),
            (7, 1, "0x" + "ee" * 20, 9_999),  # another publisher's
            (8, 1, me, None),
        ):
            db.execute(
                text(
                    "INSERT INTO settlement_allocations (chain_id, epoch, campaign_id, account,"
                    " token, events, weight, amount) VALUES (:c, :e, :k, :a, :t, 2, 1, :m)"
                ),
                {"c": chain_id, "e": epoch, "k": campaign, "a": account, "t": token, "m": amount},
            )
    engine.dispose()

    rows = api.get("/api/v1/publishers/me/earnings/epochs", headers=headers).json()

    assert [(r["epoch"], r["amount"], r["events"], r["state"], r["root_id"]) for r in rows] == [
        (8, None, 2, "spent", None),
        (7, 1_500, 4, "allocated", 3),
    ]
