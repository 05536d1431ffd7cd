"""Real reorganisations with `anvil_reorg`: after each, the projections equal a fresh index
of the canonical chain and the orphaned rows are kept, marked non-canonical; a reorg deeper
than the window stops the indexer with an error naming the blocks. Each reorg rewound moves
`buzzer_indexer_reorgs_total`, and its orphaned events `buzzer_indexer_orphaned_events_total`."""

from __future__ import annotations

import psycopg
import pytest
from prometheus_client import REGISTRY

from indexer.runner import ReorgTooDeep
from tests.indexer.helpers import cli, cli_env, index_to_head, projections
from tests.support.tables import diff

USDC = 10**6
ADVERTISER = 8


@pytest.fixture
def funded(fresh_anvil, monkeypatch):
    """A fresh chain with a registered campaign and a minted advertiser, indexed."""
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(fresh_anvil.deployments_dir))
    chain = fresh_anvil.chain
    chain.generate_activity(40, seed=11)
    campaign = chain.register_campaign(ADVERTISER, "usdc")
    chain.mint_usdc(ADVERTISER, 1_000 * USDC)
    return chain, campaign, fresh_anvil.deployments_dir


def reorg_metrics() -> tuple[float, float]:
    """(reorgs rewound, events orphaned) as the indexer's /metrics shows them."""
    return (
        REGISTRY.get_sample_value("buzzer_indexer_reorgs_total") or 0.0,
        REGISTRY.get_sample_value("buzzer_indexer_orphaned_events_total") or 0.0,
    )


def deposit_then_mine(chain, campaign: int, depth: int) -> None:
    """A deposit that the last `depth` blocks will hold, approve included."""
    chain.deposit(ADVERTISER, campaign, 100 * USDC)
    chain.mine(depth - 2 if depth > 2 else 0)


def balance(database_url: str, campaign: int) -> int | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT balance FROM escrow_balances WHERE campaign_id = %s", (campaign,)
        ).fetchone()
    return None if row is None else int(row[0])


def orphaned_deposits(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT args->'amount' FROM chain_events WHERE NOT canonical AND event = 'Deposited'"
        ).fetchall()
    return [int(r[0]) for r in rows]


@pytest.mark.parametrize("depth", [1, 3, 10])
@pytest.mark.parametrize("replacement", [None, 70 * USDC], ids=["removed", "replaced"])
def test_reorg_rewinds_to_the_canonical_chain(
    funded, database_url, make_database, depth, replacement
):
    chain, campaign, _ = funded
    deposit_then_mine(chain, campaign, depth)
    index_to_head(chain.rpc_url, database_url)
    assert balance(database_url, campaign) == 100 * USDC

    txs = []
    if replacement:
        # the replacement block's transactions, with the nonces they will have there
        sender = chain.account(ADVERTISER)
        nonce = int(
            chain.rpc.call("eth_getTransactionCount", sender, hex(chain.block_number() - depth)), 16
        )
        approve = chain.tx_request(
            "TestUSDC", "approve", chain.addresses["PaymentEscrow"], replacement, sender=ADVERTISER
        )
        deposit = chain.tx_request(
            "PaymentEscrow", "deposit", campaign, replacement, chain.usdc, sender=ADVERTISER
        )
        if depth == 1:  # the approval's block stays; only the deposit's is replaced
            txs = [({**deposit, "nonce": hex(nonce)}, 0)]
        else:  # anvil takes one transaction per sender and block
            txs = [({**approve, "nonce": hex(nonce)}, 0), ({**deposit, "nonce": hex(nonce + 1)}, 1)]
    reorgs, orphans = reorg_metrics()
    chain.reorg(depth, txs)
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)

    assert balance(database_url, campaign) == replacement
    with psycopg.connect(database_url) as conn:
        (orphaned,) = conn.execute(
            "SELECT count(*) FROM chain_events WHERE NOT canonical"
        ).fetchone()
    assert reorg_metrics() == (reorgs + 1, orphans + orphaned)
    assert orphaned_deposits(database_url) == [100 * USDC]
    canonical = make_database()
    index_to_head(chain.rpc_url, canonical)
    assert diff(projections(database_url), projections(canonical)) == ""


def test_two_consecutive_reorgs(funded, database_url, make_database):
    chain, campaign, _ = funded
    deposit_then_mine(chain, campaign, 3)
    index_to_head(chain.rpc_url, database_url)
    reorgs, _ = reorg_metrics()
    chain.reorg(3)
    index_to_head(chain.rpc_url, database_url)
    chain.deposit(ADVERTISER, campaign, 30 * USDC)
    chain.reorg(2)
    chain.mine(2)
    index_to_head(chain.rpc_url, database_url)
    # the second reorg replaced only blocks the indexer had not read yet: nothing to rewind
    assert reorg_metrics()[0] == reorgs + 1
    canonical = make_database()
    index_to_head(chain.rpc_url, canonical)
    assert diff(projections(database_url), projections(canonical)) == ""
    assert balance(database_url, campaign) is None


def test_reorg_deeper_than_the_window_halts_with_the_blocks_named(funded, database_url):
    chain, campaign, deployments_dir = funded
    deposit_then_mine(chain, campaign, 3)
    index_to_head(chain.rpc_url, database_url, reorg_window=4)
    chain.reorg(8)

    with pytest.raises(ReorgTooDeep, match=r"deeper than the 4-block window"):
        index_to_head(chain.rpc_url, database_url, reorg_window=4)

    head = chain.block_number()
    env = cli_env(chain.rpc_url, database_url, deployments_dir, INDEXER_REORG_WINDOW="4")
    done = cli("run", "--exit-at-head", env=env)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("indexer halted:") and f"..{head}" in message
    assert balance(database_url, campaign) == 100 * USDC  # nothing was rewritten
