"""A publisher's earnings and claims: empty before settlement, pending during the challenge
period, claimable after it, claimed once the wallet signs the claim the API builds."""

from __future__ import annotations

import json

from sqlalchemy import create_engine, text

from api.settlement.merkle import Leaf
from migrations import sqlalchemy_url
from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.chain import dev_account

USDC = 10**6
PUBLISHER, OTHER, ADVERTISER = 9, 10, 6


def store_proofs(database_url: str, chain, epoch: int, tree) -> None:
    """What settlement keeps after posting a root: every leaf with its proof."""
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as db:
        for leaf in tree.leaves:
            db.execute(
                text(
                    "INSERT INTO payout_proofs (chain_id, epoch, account, token, cumulative, proof)"
                    " VALUES (:chain, :epoch, :account, :token, :cumulative, CAST(:proof AS jsonb))"
                ),
                {
                    "chain": chain.chain_id,
                    "epoch": epoch,
                    "account": leaf.account.lower(),
                    "token": leaf.token.lower(),
                    "cumulative": leaf.cumulative_amount,
                    "proof": json.dumps(
                        ["0x" + p.hex() for p in tree.proof(leaf.account, leaf.token)]
                    ),
                },
            )
    engine.dispose()


def settle(chain, database_url, epoch: int, amounts: dict[int, int]) -> None:
    tree = chain.payout_tree(
        Leaf(chain.account(who), chain.usdc, amount) for who, amount in amounts.items()
    )
    chain.post_root(epoch, tree)
    store_proofs(database_url, chain, epoch, tree)
    index_to_head(chain.rpc_url, database_url)


def test_earnings_from_pending_to_claimed(api, chain, database_url):
    publisher = Wallet(dev_account(PUBLISHER))
    headers = auth(api, publisher)
    api.post("/api/v1/publishers", json={"website_url": "https://news.example"}, headers=headers)
    chain.register_publisher(PUBLISHER, "news-example")
    campaign = chain.register_campaign(ADVERTISER)
    chain.mint_usdc(ADVERTISER, 100 * USDC)
    chain.deposit(ADVERTISER, campaign, 100 * USDC)
    chain.spend_batch(1, [campaign], [20 * USDC])  # funds the payout with 17 USDC
    index_to_head(chain.rpc_url, database_url)

    assert api.get("/api/v1/publishers/me/earnings", headers=headers).json() == {"tokens": []}
    none = api.post("/api/v1/publishers/me/claim-txs", headers=headers)
    assert none.status_code == 409 and none.json()["error"]["code"] == "nothing_to_claim"

    settle(chain, database_url, 1, {PUBLISHER: 5 * USDC, OTHER: 3 * USDC})
    (pending,) = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"]
    assert (pending["earned"], pending["pending"], pending["claimable"]) == (5 * USDC, 5 * USDC, 0)
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 409

    chain.increase_time(CHALLENGE_PERIOD + 1)
    index_to_head(chain.rpc_url, database_url)
    ready = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (ready["claimable"], ready["pending"], ready["claimable_epoch"]) == (5 * USDC, 0, 1)

    before = chain.usdc_balance(PUBLISHER)
    (tx,) = api.post("/api/v1/publishers/me/claim-txs", headers=headers).json()
    chain.rpc.call(
        "eth_sendTransaction", {"from": publisher.address, "to": tx["to"], "data": tx["data"]}
    )
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)
    assert chain.usdc_balance(PUBLISHER) - before == 5 * USDC
    claimed = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (claimed["claimed"], claimed["claimable"]) == (5 * USDC, 0)
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 409

    settle(chain, database_url, 2, {PUBLISHER: 7 * USDC, OTHER: 3 * USDC})
    later = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (later["earned"], later["claimed"], later["pending"], later["latest_epoch"]) == (
        7 * USDC,
        5 * USDC,
        2 * USDC,
        2,
    )


def test_earnings_need_a_publisher_profile(api, wallet):
    headers = auth(api, wallet)
    assert api.get("/api/v1/publishers/me/earnings", headers=headers).status_code == 404
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 404
    assert api.get("/api/v1/publishers/me/earnings").status_code == 401
