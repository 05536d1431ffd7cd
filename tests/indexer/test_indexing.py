"""Every contract event reaches the raw table and its projection, exactly, and any way of
indexing the same chain (in one go, in pieces, rebuilt, re-indexed) gives the same tables."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from eth_utils import keccak

from api.settlement.merkle import Leaf
from indexer.runner import Indexer
from tests.indexer.helpers import (
    core_event_count,
    core_logs,
    index_to_head,
    projections,
    settings,
)
from tests.support.anvil import CHALLENGE_PERIOD, EPOCH_LENGTH, WITHDRAW_DELAY
from tests.support.chain import ADMIN, GUARDIAN
from tests.support.tables import diff

USDC = 10**6
MAX_UINT = 2**256 - 1
CARRY = "0x" + keccak(text="earlier activity")[-20:].hex()


@pytest.fixture(autouse=True)
def _deployments(monkeypatch, deployments_dir):
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def every_action(chain) -> dict[str, Any]:
    """One of every state change of the five contracts; returns what to look for. Uses dev
    accounts 25-29: generated activity beside it must keep to fewer users."""
    publisher, payee, new_wallet, advertiser, payer = 25, 26, 27, 28, 29
    chain.register_publisher(publisher, "pub-a", payee)
    chain.set_quality_score(publisher, 77)
    chain.set_domain_verified(publisher, "example.com")
    chain.set_suspended(publisher, True)
    chain.set_suspended(publisher, False)
    chain.update_payment_wallet(publisher, new_wallet)
    huge_bid = chain.register_campaign(advertiser, "usdc", bid=MAX_UINT)
    registered_in = chain.current_epoch()
    campaign = chain.register_campaign(
        advertiser, "usdc", bid=3 * USDC, max_spend_per_epoch=200 * USDC
    )
    chain.update_campaign_status(advertiser, huge_bid, 2)
    chain.update_campaign_metadata(advertiser, huge_bid, 5 * USDC, b"\x22" * 32)
    chain.set_max_spend_per_epoch(advertiser, campaign, 30 * USDC)  # from the next epoch
    chain.mint_usdc(advertiser, 1_000 * USDC)
    chain.deposit(advertiser, campaign, 500 * USDC)
    chain.request_withdraw(advertiser, campaign, 100 * USDC)
    chain.cancel_withdraw(advertiser, campaign)
    chain.request_withdraw(advertiser, campaign, 40 * USDC)
    chain.increase_time(WITHDRAW_DELAY)
    chain.withdraw(advertiser, campaign)
    spend_epoch = chain.current_epoch() - 1
    assert spend_epoch > registered_in  # the lower max is in force
    # 50 asked, clipped to the max of 30; the unfunded campaign is skipped
    chain.spend_batch(spend_epoch, [campaign, huge_bid], [50 * USDC, 5 * USDC])
    share = 30 * USDC * 85 // 100
    if chain.call("PublisherPayout", "pending_root_id"):
        chain.increase_time(CHALLENGE_PERIOD)  # one root pending at a time
    # earlier activity's current total and claims stay with one account, the payee gets
    # every other funded unit
    current = chain.call("PublisherPayout", "current_root_id")
    kept = max(
        chain.call("PublisherPayout", "root_total", current, chain.usdc),
        chain.call("PublisherPayout", "total_claimed", chain.usdc),
    )
    funded = chain.call("PublisherPayout", "total_funded", chain.usdc)
    earlier = [Leaf(CARRY, chain.usdc, kept)] if kept else []
    payee_leaf = Leaf(chain.account(payee), chain.usdc, funded - kept)
    tree = chain.payout_tree([payee_leaf, *earlier])
    chain.post_root(tree)
    root_id = chain.call("PublisherPayout", "latest_root_id")
    chain.increase_time(CHALLENGE_PERIOD)
    chain.claim(tree, payee, "usdc")
    second = [payee_leaf, *earlier, Leaf(chain.account(payer), chain.usdc, 0)]
    chain.post_root(chain.payout_tree(second))
    chain.revoke_root(root_id + 1)
    # a Transfer whose value needs all 256 bits, to a wallet a publisher is paid at
    chain.mint_usdc(new_wallet, MAX_UINT - 10**30)
    chain.mint_usdc(payer, 5 * USDC)
    chain.x402_transfer(payer, chain.account(new_wallet), 1_234_567)
    chain.x402_transfer(payer, chain.account(payee), 7)  # no publisher's wallet any more
    return {
        "publisher": chain.account(publisher).lower(),
        "payee": chain.account(payee).lower(),
        "new_wallet": chain.account(new_wallet).lower(),
        "advertiser": chain.account(advertiser).lower(),
        "payer": chain.account(payer).lower(),
        "campaign": campaign,
        "huge_bid": huge_bid,
        "registered_in": registered_in,
        "share": share,
        "epoch": spend_epoch,
        "root_id": root_id,
        "root": "0x" + tree.root.hex(),
    }


def test_every_event_lands_raw_and_in_its_projection(chain, database_url):
    facts = every_action(chain)

    checkpoint = index_to_head(chain.rpc_url, database_url)

    assert checkpoint.block_number == chain.block_number()
    # the token's logs that concern the publishers' current wallet, and everything else
    logs = chain.logs()
    on_chain = [
        log
        for i, log in enumerate(logs)
        if log.contract != "TestUSDC"
        or (log.name == "Transfer" and log.args["receiver"].lower() == facts["new_wallet"])
        or (
            log.name == "AuthorizationUsed"
            and logs[i + 1].args["receiver"].lower() == facts["new_wallet"]
        )
    ]
    raw = rows(
        database_url,
        "SELECT contract, event, tx_hash, log_index, args, block_number FROM chain_events"
        " WHERE canonical ORDER BY block_number, log_index",
    )
    assert len(raw) == len(on_chain)
    for (contract, event, tx_hash, log_index, args, block), log in zip(raw, on_chain, strict=True):
        assert (contract, event, tx_hash, log_index, block) == (
            "PaymentToken" if log.contract == "TestUSDC" else log.contract,
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
        ("CampaignRegistry", "MaxSpendPerEpochSet"),
        ("CampaignRegistry", "EpochClockSet"),
        ("PaymentEscrow", "EscrowConfigured"),
        ("PaymentEscrow", "SpendSkipped"),
        ("PublisherPayout", "TokenRegistered"),
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
        ("PaymentToken", "AuthorizationUsed"),
        ("PaymentToken", "Transfer"),
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
        database_url,
        "SELECT bid, max_spend_per_epoch, max_spend_effective_epoch, previous_max_spend_per_epoch"
        " FROM campaigns_onchain WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(3 * USDC, 30 * USDC, facts["registered_in"] + 1, 200 * USDC)]
    now_epoch = chain.current_epoch()
    assert rows(
        database_url,
        "SELECT current_epoch, max_spend_now FROM campaign_max_spend WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(now_epoch, 30 * USDC)]
    assert rows(
        database_url,
        "SELECT deposited, withdrawn, spent, balance, last_spent_epoch FROM escrow_balances"
        " WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(500 * USDC, 40 * USDC, 30 * USDC, 430 * USDC, facts["epoch"])]
    assert rows(
        database_url,
        "SELECT amount, status, paid FROM withdraw_requests WHERE campaign_id = %s",
        facts["campaign"],
    ) == [(40 * USDC, "withdrawn", 40 * USDC)]
    assert rows(
        database_url, "SELECT epoch, asked, charged, publisher_share, fee FROM epoch_spends"
    ) == [(facts["epoch"], 50 * USDC, 30 * USDC, facts["share"], 30 * USDC - facts["share"])]
    assert rows(
        database_url, "SELECT epoch, campaign_id, asked, reason FROM epoch_spend_skips"
    ) == [(facts["epoch"], facts["huge_bid"], 5 * USDC, "no balance")]
    assert dict(rows(database_url, "SELECT token, total_funded FROM payout_funding")) == {
        chain.usdc.lower(): facts["share"],
        "0x" + "00" * 20: 0,
    }
    revoked_root = rows(
        database_url, "SELECT root FROM payout_roots WHERE root_id = %s", facts["root_id"] + 1
    )[0][0]
    assert rows(
        database_url, "SELECT root_id, root, revoked, status FROM payout_root_status ORDER BY 1"
    ) == [
        (facts["root_id"], facts["root"], False, "current"),
        (facts["root_id"] + 1, revoked_root, True, "revoked"),
    ]
    assert rows(
        database_url,
        "SELECT root_id, account, recipient, amount, cumulative_amount FROM payout_claims",
    ) == [(facts["root_id"], facts["payee"], facts["payee"], facts["share"], facts["share"])]
    config = {
        (contract, event): args
        for contract, event, args in rows(
            database_url, "SELECT contract, event, args FROM chain_config"
        )
    }
    assert config[("CampaignRegistry", "EpochClockSet")] == {
        "epoch_length": EPOCH_LENGTH,
        "genesis": chain.call("CampaignRegistry", "genesis"),
    }
    assert config[("PaymentEscrow", "EscrowConfigured")]["withdraw_delay"] == WITHDRAW_DELAY
    assert rows(database_url, "SELECT payer, pay_to, amount FROM x402_payments_onchain") == [
        (facts["payer"], facts["new_wallet"], 1_234_567)
    ]


def test_indexing_in_pieces_equals_one_rebuild(chain, database_url, make_database):
    chain.generate_activity(300, seed=1, users=20)
    index_to_head(chain.rpc_url, database_url, initial_range=7, max_range=13)
    every_action(chain)
    index_to_head(chain.rpc_url, database_url, initial_range=3, max_range=5)
    chain.generate_activity(200, seed=2, users=20)
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
    assert core_event_count(database_url) == len(core_logs(chain))


def root_status(database_url: str) -> dict[int, tuple[str, int]]:
    return {
        root_id: (status, claimable_at)
        for root_id, status, claimable_at in rows(
            database_url, "SELECT root_id, status, claimable_at FROM payout_root_status"
        )
    }


def test_root_status_follows_a_paused_maturity_and_a_correction(chain, database_url):
    advertiser, first, second = 8, chain.account(10), chain.account(11)
    campaign = chain.register_campaign(advertiser, "usdc")
    chain.mint_usdc(advertiser, 100 * USDC)
    chain.deposit(advertiser, campaign, 100 * USDC)
    chain.end_epoch(chain.current_epoch())
    chain.spend_batch(chain.current_epoch() - 1, [campaign], [10 * USDC])  # funds 8.5 USDC
    wrong = chain.payout_tree([Leaf(first, chain.usdc, 5 * USDC)])
    chain.post_root(wrong)
    root_id = chain.call("PublisherPayout", "latest_root_id")
    matures_at = chain.call("PublisherPayout", "get_root", root_id)[1]

    # a pause over the challenge period: the root matures later by the time paused
    chain.transact("PublisherPayout", "pause", sender=GUARDIAN)
    chain.increase_time(CHALLENGE_PERIOD)
    unpause = chain.events(chain.transact("PublisherPayout", "unpause", sender=ADMIN))
    (paused,) = [e for e in unpause if e.name == "PausedTimeAdded"]
    (delayed,) = [e for e in unpause if e.name == "RootMaturityDelayed"]
    assert paused.args["duration"] >= CHALLENGE_PERIOD
    assert delayed.args["claimable_at"] == matures_at + paused.args["duration"]
    index_to_head(chain.rpc_url, database_url)
    assert root_status(database_url) == {root_id: ("pending", delayed.args["claimable_at"])}

    chain.increase_time(delayed.args["claimable_at"] - chain.timestamp())
    chain.claim(wrong, first, "usdc")
    # the correction moves part of it to another wallet; the first root stays current until
    # the correction matures, then it is superseded and its proofs pay nothing
    corrected = chain.payout_tree(
        [Leaf(first, chain.usdc, 5 * USDC), Leaf(second, chain.usdc, 3 * USDC)]
    )
    chain.post_root(corrected)
    index_to_head(chain.rpc_url, database_url)
    statuses = root_status(database_url)
    assert (statuses[root_id][0], statuses[root_id + 1][0]) == ("current", "pending")

    chain.increase_time(CHALLENGE_PERIOD)
    index_to_head(chain.rpc_url, database_url)
    statuses = root_status(database_url)
    assert (statuses[root_id][0], statuses[root_id + 1][0]) == ("superseded", "current")
    assert chain.call("PublisherPayout", "current_root_id") == root_id + 1
