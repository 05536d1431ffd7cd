"""A publisher's earnings and claims: empty before settlement, pending during the challenge
period, claimable after it, claimed once the wallet signs the claim the API builds; once a
correction matures, only its proof is offered."""

from __future__ import annotations

import json

import pytest
from eth_abi import decode
from sqlalchemy import create_engine, text
from web3.exceptions import ContractLogicError

from api.settlement.merkle import Leaf
from migrations import sqlalchemy_url
from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.chain import dev_account

USDC = 10**6
PUBLISHER, OTHER, ADVERTISER = 9, 10, 6


def store_proofs(database_url: str, chain, root_id: int, tree) -> None:
    """What settlement keeps after posting a root: every leaf with its proof."""
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as db:
        for leaf in tree.leaves:
            db.execute(
                text(
                    "INSERT INTO payout_proofs"
                    " (chain_id, root_id, account, token, cumulative, proof) VALUES"
                    " (:chain, :root_id, :account, :token, :cumulative, CAST(:proof AS jsonb))"
                ),
                {
                    "chain": chain.chain_id,
                    "root_id": root_id,
                    "account": leaf.account.lower(),
                    "token": leaf.token.lower(),
                    "cumulative": leaf.cumulative_amount,
                    "proof": json.dumps(
                        ["0x" + p.hex() for p in tree.proof(leaf.account, leaf.token)]
                    ),
                },
            )
    engine.dispose()


def settle(chain, database_url, amounts: dict[int, int]):
    """Post the next root paying `amounts`, keep its proofs, index; return the tree."""
    tree = chain.payout_tree(
        Leaf(chain.account(who), chain.usdc, amount) for who, amount in amounts.items()
    )
    chain.post_root(tree)
    store_proofs(database_url, chain, chain.call("PublisherPayout", "latest_root_id"), tree)
    index_to_head(chain.rpc_url, database_url)
    return tree


def mature(chain, database_url) -> None:
    chain.increase_time(CHALLENGE_PERIOD)
    index_to_head(chain.rpc_url, database_url)


def claimed_cumulative(tx) -> int:
    """The cumulative amount a `claim(account, token, cumulative, proof)` transaction names."""
    data = bytes.fromhex(tx["data"].removeprefix("0x"))
    _, _, cumulative, _ = decode(["address", "address", "uint256", "bytes32[]"], data[4:])
    return int(cumulative)


def send(chain, wallet, tx) -> None:
    chain.rpc.call(
        "eth_sendTransaction", {"from": wallet.address, "to": tx["to"], "data": tx["data"]}
    )
    chain.mine(1)


def test_earnings_from_pending_to_claimed(api, chain, database_url):
    publisher = Wallet(dev_account(PUBLISHER))
    headers = auth(api, publisher)
    api.post("/api/v1/publishers", json={"website_url": "https://news.example"}, headers=headers)
    chain.register_publisher(PUBLISHER, "news-example")
    campaign = chain.register_campaign(ADVERTISER)
    chain.mint_usdc(ADVERTISER, 100 * USDC)
    chain.deposit(ADVERTISER, campaign, 100 * USDC)
    chain.end_epoch(chain.current_epoch())
    # funds the payout with 17 USDC
    chain.spend_batch(chain.current_epoch() - 1, [campaign], [20 * USDC])
    index_to_head(chain.rpc_url, database_url)

    assert api.get("/api/v1/publishers/me/earnings", headers=headers).json() == {"tokens": []}
    none = api.post("/api/v1/publishers/me/claim-txs", headers=headers)
    assert none.status_code == 409 and none.json()["error"]["code"] == "nothing_to_claim"

    settle(chain, database_url, {PUBLISHER: 5 * USDC, OTHER: 3 * USDC})
    (pending,) = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"]
    assert (pending["earned"], pending["pending"], pending["claimable"]) == (5 * USDC, 5 * USDC, 0)
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 409

    mature(chain, database_url)
    ready = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (ready["claimable"], ready["pending"], ready["claimable_root_id"]) == (5 * USDC, 0, 1)

    before = chain.usdc_balance(PUBLISHER)
    (tx,) = api.post("/api/v1/publishers/me/claim-txs", headers=headers).json()
    send(chain, publisher, tx)
    index_to_head(chain.rpc_url, database_url)
    assert chain.usdc_balance(PUBLISHER) - before == 5 * USDC
    claimed = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (claimed["claimed"], claimed["claimable"]) == (5 * USDC, 0)
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 409

    second = settle(chain, database_url, {PUBLISHER: 7 * USDC, OTHER: 3 * USDC})
    later = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"][0]
    assert (later["earned"], later["claimed"], later["pending"], later["latest_root_id"]) == (
        7 * USDC,
        5 * USDC,
        2 * USDC,
        2,
    )
    mature(chain, database_url)
    (offered,) = api.post("/api/v1/publishers/me/claim-txs", headers=headers).json()
    assert claimed_cumulative(offered) == 7 * USDC

    # a correction lowers the publisher to 6 before the 7 is claimed: while it is pending the
    # current root still pays 2; once it matures only its proof is offered, and the old one
    # is refused on-chain
    settle(chain, database_url, {PUBLISHER: 6 * USDC, OTHER: 3 * USDC, ADVERTISER: 1 * USDC})
    (during,) = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"]
    assert (during["earned"], during["claimable"], during["claimable_root_id"]) == (
        6 * USDC,
        2 * USDC,
        2,
    )
    mature(chain, database_url)
    (corrected,) = api.get("/api/v1/publishers/me/earnings", headers=headers).json()["tokens"]
    assert (corrected["claimable"], corrected["pending"], corrected["claimable_root_id"]) == (
        1 * USDC,
        0,
        3,
    )
    (tx,) = api.post("/api/v1/publishers/me/claim-txs", headers=headers).json()
    assert claimed_cumulative(tx) == 6 * USDC
    with pytest.raises(ContractLogicError, match="invalid proof"):
        chain.claim(second, PUBLISHER, "usdc")
    before = chain.usdc_balance(PUBLISHER)
    send(chain, publisher, tx)
    assert chain.usdc_balance(PUBLISHER) - before == 1 * USDC


def test_earnings_need_a_publisher_profile(api, wallet):
    headers = auth(api, wallet)
    assert api.get("/api/v1/publishers/me/earnings", headers=headers).status_code == 404
    assert api.post("/api/v1/publishers/me/claim-txs", headers=headers).status_code == 404
    assert api.get("/api/v1/publishers/me/earnings").status_code == 401
