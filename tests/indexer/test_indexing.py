"""Every contract event reaches the raw table and its projection, exactly, and any way of
indexing the same chain (in one go, in pieces, rebuilt, re-indexed) gives the same tables."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from eth_utils import keccak

from api.settlement.merkle import Leaf
from indexer.runner import Indexer
from tests.indexer.helpers import index_to_head, projections, settings
from tests.support.tables import diff

USDC = 10**6
MAX_UINT = 2**256 - 1


@pytest.fixture(autouse=True)
def _deployments(monkeypatch, deployments_dir):
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def every_action(chain) -> dict[str, Any]:
    """One of every state change of the five contracts; returns what to look for."""
    publisher, payee, advertiser, payer = 5, 6, 8, 9
    spend_epoch = chain.call("PaymentEscrow", "latest_epoch") + 1
    root_epoch = chain.call("PublisherPayout", "latest_posted_epoch") + 1
    funded = chain.call("PublisherPayout", "total_funded", chain.usdc)
    chain.register_publisher(publisher, "pub-a", payee)
    chain.set_quality_score(publisher, 77)
    chain.set_domain_verified(publisher, "example.com")
    chain.set_suspended(publisher, True)
    chain.set_suspended(publisher, False)
    chain.update_payment_wallet(publisher, 7)
    huge_bid = chain.register_campaign(advertiser, "usdc", bid=MAX_UINT)
    campaign = chain.register_campaign(advertiser, "usdc", bid=3 * USDC)
    chain.update_campaign_status(advertiser, huge_bid, 2)
    chain.update_campaign_metadata(advertiser, huge_bid, 5 * USDC, b"\x22" * 32)
    chain.mint_usdc(advertiser, 1_000 * USDC)
    chain.deposit(advertiser, campaign, 500 * USDC)
    chain.request_withdraw(advertiser, campaign, 100 * USDC)
    chain.cancel_withdraw(advertiser, campaign)
    chain.request_withdraw(advertiser, campaign, 40 * USDC)
    chain.increase_time(61)
    chain.withdraw(advertiser, campaign)
    chain.spend_batch(spend_epoch, [campaign], [50 * USDC])
    share = 50 * USDC * 85 // 100
    # a tree holding every unallocated unit, so earlier activity's roots stay below it
    tree = chain.payout_tree([Leaf(chain.account(payee), chain.usdc, funded + share)])
    chain.post_root(root_epoch, tree)
    chain.increase_time(61)
    chain.claim(root_epoch, tree, payee, "usdc")
    second = [
        Leaf(chain.account(payee), chain.usdc, funded + share),
        Leaf(chain.account(payer), chain.usdc, 0),
    ]
    chain.post_root(root_epoch + 1, chain.payout_tree(second))
    chain.revoke_root(root_epoch + 1)
    chain.mint_usdc(payer, MAX_UINT - 10**30)  # a Transfer whose value needs all 256 bits
    chain.mint_usdc(payer, 5 * USDC)
    chain.x402_transfer(payer, chain.account(payee), 1_234_567)
    return {
        "publisher": chain.account(publisher).lower(),
        "payee": chain.account(payee).lower(),
        "new_wallet": chain.account(7).lower(),
        "advertiser": chain.account(advertiser).lower(),
        "payer": chain.account(payer).lower(),
        "campaign": campaign,
        "huge_bid": huge_bid,
        "share": share,
        "epoch": spend_epoch,
        "root": "0x" + tree.root.hex(),
    }


def test_every_event_lands_raw_and_in_its_projection(chain, database_url):
    facts = every_action(chain)

    checkpoint = index_to_head(chain.rpc_url, database_url)

    assert checkpoint.block_number == chain.block_number()
    on_chain = chain.logs()
    raw = rows(
        database_url,
        "SELECT contract, event, tx_hash, log_index, args, block_number FROM chain_events"
        " WHERE canonical ORDER BY block_number, log_index",
    )
    assert len(raw) == len(on_chain)
    for (contract, event, tx_hash, log_index, args, block), log in zip(raw, on_chain, strict=True):
        assert (contract, event, tx_hash, log_index, block) == (
            log.contract,
            log.name,
            log.transaction_hash.lower(),
            log.log_index,
            log.block_number,
        )
        for name, value in log.args.items():
            expected = value.lower() if isinstance(value, str) else value
            if isinstance(value, bytes):
                expected = "0x" + value.hex()
            if isinstance(value, list | tuple):
                expected = [v.lower() if isinstance(v, str) else v for v in value]
            assert args[name] == expected, f"{contract}.{event}.{name}"
    names = {(contract, event) for contract, event, *_ in raw}
    for expected in [
        ("PublisherRegistry", "PublisherRegistered"),
        ("PublisherRegistry", "QualityScoreSet"),
        ("PublisherRegistry", "DomainVerified"),
        ("PublisherRegistry", "PublisherSuspended"),
        ("PublisherRegistry", "PaymentWalletUpdated"),
        ("CampaignRegistry", "CampaignRegistered"),
        ("CampaignRegistry", "CampaignStatusUpdated"),
        ("CampaignRegistry", "CampaignMetadataUpdated"),
        ("PaymentEscrow", "Deposited"),
        ("PaymentEscrow", "WithdrawRequested"),
        ("PaymentEscrow", "WithdrawCancelled"),
        ("PaymentEscrow", "Withdrawn"),
        ("PaymentEscrow", "Spent"),
        ("PaymentEscrow", "EpochSpent"),
        ("PublisherPayout", "Funded"),
        ("PublisherPayout", "RootPosted"),
        ("PublisherPayout", "RootRevoked"),
        ("PublisherPayout", "Claimed"),
        ("TestUSDC", "AuthorizationUsed"),
        ("TestUSDC", "Transfer"),
    ]:
        assert expected in names, expected
    huge_mint = [a for c, e, _, _, a, _ in raw if e == "Transfer" and a["value"] > 2**255]
    assert [m["value"] for m in huge_mint] == [MAX_UINT - 10**30]

    assert rows(
        database_url,
        "SELECT pub_id, payment_wallet, quality_score, domain_hash, suspended"
        " FROM publishers_onchain WHERE wallet = %s",
        facts["publisher"],
    ) == [("pub-a", facts["new_wallet"], 77, "0x" + keccak(text="example.com").hex(), False)]
    campaigns = dict(
        rows(
            database_url, "SELECT campaign_id, (bid, status, metadata_hash) FROM campaigns_onchain"
        )
    )
    assert campaigns[facts["huge_bid"]] == (str(5 * USDC), "2", "0x" + "22" * 32)
    assert rows(
        database_url, "SELECT bid FROM campaigns_onchain WHERE campaign_id = %s", facts["campaign"]
    ) == [(3 * USDC,)]
    assert rows(
        database_url,
        "SELECT deposited, withdrawn, spent, balance, last_spent_epoch FROM escrow_balances"
        " WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(500 * USDC, 40 * USDC, 50 * USDC, 410 * USDC, 1)]
    assert rows(
        database_url,
        "SELECT amount, status, paid FROM withdraw_requests WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(40 * USDC, "withdrawn", 40 * USDC)]
    assert rows(database_url, "SELECT epoch, amount, publisher_share, fee FROM epoch_spends") == [
        (1, 50 * USDC, facts["share"], 50 * USDC - facts["share"])
    ]
    assert rows(database_url, "SELECT total_funded FROM payout_funding") == [(facts["share"],)]
    assert rows(
        database_url, "SELECT epoch, root, revoked, status FROM payout_root_status ORDER BY epoch"
    ) == [
        (1, facts["root"], False, "claimable"),
        (
            2,
            rows(database_url, "SELECT root FROM payout_roots WHERE epoch = 2")[0][0],
            True,
            "revoked",
        ),
    ]
    assert rows(database_url, "SELECT account, amount, cumulative_amount FROM payout_claims") == [
        (facts["payee"], facts["share"], facts["share"])
    ]
    assert rows(database_url, "SELECT payer, pay_to, amount FROM x402_payments_onchain") == [
        (facts["payer"], facts["payee"], 1_234_567)
    ]


def test_indexing_in_pieces_equals_one_rebuild(chain, database_url, make_database):
    chain.generate_activity(300, seed=1)
    index_to_head(chain.rpc_url, database_url, initial_range=7, max_range=13)
    every_action(chain)
    index_to_head(chain.rpc_url, database_url, initial_range=3, max_range=5)
    chain.generate_activity(200, seed=2)
    index_to_head(chain.rpc_url, database_url)

    rebuilt = make_database()
    index_to_head(chain.rpc_url, rebuilt, initial_range=100_000)

    assert diff(projections(database_url), projections(rebuilt)) == ""


def test_backfill_of_an_indexed_range_changes_nothing(chain, database_url, make_database):
    chain.generate_activity(300, seed=3)
    checkpoint = index_to_head(chain.rpc_url, database_url)
    before = projections(database_url)
    with psycopg.connect(database_url) as conn:  # lose some raw rows, as a bad import would
        conn.execute("DELETE FROM chain_events WHERE block_number % 3 = 0")

    indexer = Indexer(settings(chain.rpc_url, database_url))
    try:
        indexer.backfill(0, checkpoint.block_number)
    finally:
        indexer.close()

    assert diff(before, projections(database_url)) == ""


def test_backfill_past_the_head_of_the_index_extends_it(chain, database_url):
    chain.generate_activity(100, seed=4)
    middle = chain.block_number()
    index_to_head(chain.rpc_url, database_url)
    chain.generate_activity(100, seed=5)
    indexer = Indexer(settings(chain.rpc_url, database_url))
    try:
        with pytest.raises(Exception, match="would leave a gap"):
            indexer.backfill(chain.block_number() + 5, chain.block_number() + 6)
        checkpoint = indexer.backfill(middle - 3, chain.block_number())
    finally:
        indexer.close()
    assert checkpoint.block_number == chain.block_number()
    assert rows(database_url, "SELECT count(*) FROM chain_events")[0][0] == len(chain.logs())
