"""Gas of every money path, measured on ape's in-process chain, printed as a table.

Run: `make gas` (or `.venv/bin/python bench/contract_gas.py`). Figures are gas, not time, so
they are exact and repeatable. "execution" is gas used minus the intrinsic cost of the
transaction (21,000 plus calldata), which is what the contract's own code spends.
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ape import accounts, chain, networks, project  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from api.settlement.merkle import Leaf, PayoutTree  # noqa: E402

ZERO = "0x" + "00" * 20
USDC = 10**6


def intrinsic(tx) -> int:
    data = bytes(tx.transaction.data)
    return 21_000 + sum(16 if b else 4 for b in data)


def main() -> None:
    rows: list[tuple[str, int, int, str]] = []

    def record(label: str, tx, note: str = "", per: int = 1) -> None:
        rows.append((label, tx.gas_used // per, (tx.gas_used - intrinsic(tx)) // per, note))

    admin, settler, treasury, advertiser, publisher, keeper = (
        accounts.test_accounts[i] for i in (0, 1, 4, 5, 7, 9)
    )
    registry = project.PublisherRegistry.deploy(sender=admin)
    campaigns = project.CampaignRegistry.deploy(sender=admin)
    payout = project.PublisherPayout.deploy(3600, sender=admin)
    escrow = project.PaymentEscrow.deploy(campaigns, payout, treasury, 86_400, 1_500, sender=admin)
    usdc = project.TestUSDC.deploy("USD Coin", "USDC", "USD Coin", "2", sender=admin)
    escrow.grantRole(escrow.SETTLER_ROLE(), settler, sender=admin)
    payout.grantRole(payout.SETTLER_ROLE(), settler, sender=admin)
    payout.grantRole(payout.FUNDER_ROLE(), escrow, sender=admin)
    escrow.set_token_allowed(ZERO, True, sender=admin)
    escrow.set_token_allowed(usdc, True, sender=admin)

    record("PublisherRegistry.register", registry.register("pub-1", publisher, sender=publisher))
    tx = campaigns.register(usdc, 0, 2 * USDC, b"\x11" * 32, sender=advertiser)
    record("CampaignRegistry.register", tx)

    def new_campaign(token: str) -> int:
        campaigns.register(token, 0, 2 * USDC, b"\x11" * 32, sender=advertiser)
        return int(campaigns.campaign_count())

    usdc.mint(advertiser, 10**15, sender=admin)
    usdc.approve(escrow, 2**256 - 1, sender=advertiser)
    token_campaign = int(campaigns.campaign_count())
    record(
        "PaymentEscrow.deposit (ERC-20, first)",
        escrow.deposit(token_campaign, 1_000 * USDC, usdc, sender=advertiser),
    )
    record(
        "PaymentEscrow.deposit (ERC-20, top-up)",
        escrow.deposit(token_campaign, 1_000 * USDC, usdc, sender=advertiser),
    )
    eth_campaign = new_campaign(ZERO)
    record(
        "PaymentEscrow.deposit (ETH, first)",
        escrow.deposit(eth_campaign, 10**18, ZERO, value=10**18, sender=advertiser),
    )

    batch: dict[int, int] = {}
    for size in (1, 10, 100):
        ids = [new_campaign(usdc.address) for _ in range(size)]
        for campaign_id in ids:
            escrow.deposit(campaign_id, 100 * USDC, usdc, sender=advertiser)
        tx = escrow.spend_batch(size, ids, [USDC] * size, sender=settler)
        batch[size] = tx.gas_used
        record(f"PaymentEscrow.spend_batch ({size} campaigns)", tx)
    marginal = (batch[100] - batch[10]) // 90
    rows.append(("  spend_batch, each further campaign", marginal, marginal, "(100 − 10) / 90"))

    funded = payout.total_funded(usdc)
    rng = random.Random(1)
    epoch = 0
    for leaves_count in (1, 1_000, 10_000):
        epoch += 1
        leaves = [Leaf(publisher.address, usdc.address, 1_000 + epoch)]
        leaves += [
            Leaf(to_checksum_address(rng.randbytes(20)), usdc.address, 1)
            for _ in range(leaves_count - 1)
        ]
        tree = PayoutTree(chain.chain_id, payout.address, leaves)
        total = tree.totals()[usdc.address]
        assert total <= funded
        tx = payout.post_root(epoch, tree.root, [usdc], [total], "ipfs://x", sender=settler)
        record(f"PublisherPayout.post_root ({leaves_count:,} leaves)", tx)
    chain.mine(timestamp=chain.pending_timestamp + 3_601)

    def claim(tree: PayoutTree, epoch: int, account: str):
        leaf = tree.leaf_for(account, usdc.address)
        proof = tree.proof(account, usdc.address)
        return payout.claim(
            epoch, account, usdc, leaf.cumulative_amount, proof, sender=keeper
        ), len(proof)

    # a tree of 1,024 publishers: a proof of 10 nodes, as for a network of that size
    fresh = [to_checksum_address(rng.randbytes(20)) for _ in range(1_024)]
    holder = fresh[1]
    usdc.mint(holder, 1, sender=admin)
    tree = PayoutTree(chain.chain_id, payout.address, [Leaf(a, usdc.address, 1_000) for a in fresh])
    epoch += 1
    payout.post_root(epoch, tree.root, [usdc], [1_024 * 1_000], "", sender=settler)
    chain.mine(timestamp=chain.pending_timestamp + 3_601)
    tx, depth = claim(tree, epoch, fresh[0])
    record("PublisherPayout.claim (first, empty wallet)", tx, f"proof of {depth}")
    tx, depth = claim(tree, epoch, holder)
    record("PublisherPayout.claim (first, wallet holds USDC)", tx, f"proof of {depth}")
    tree2 = PayoutTree(
        chain.chain_id, payout.address, [Leaf(a, usdc.address, 2_000) for a in fresh]
    )
    epoch += 1
    payout.post_root(epoch, tree2.root, [usdc], [1_024 * 2_000], "", sender=settler)
    chain.mine(timestamp=chain.pending_timestamp + 3_601)
    tx, depth = claim(tree2, epoch, fresh[0])
    record("PublisherPayout.claim (repeat, next epoch)", tx, f"proof of {depth}")
    for count in (10, 50):
        accounts_batch = fresh[10 : 10 + count] if count == 10 else fresh[100 : 100 + count]
        requests = [(a, usdc.address, 2_000, tree2.proof(a, usdc.address)) for a in accounts_batch]
        tx = payout.claim_many(epoch, requests, sender=keeper)
        record(f"PublisherPayout.claim_many, per account ({count})", tx, "empty wallets", per=count)

    table = Table(title="Buzzer contract gas (ape in-process chain, Vyper 0.4.3, cancun)")
    for column in ("operation", "gas used", "execution", "note"):
        table.add_column(column, justify="left" if column in ("operation", "note") else "right")
    for label, gas, execution, note in rows:
        table.add_row(label, f"{gas:,}", f"{execution:,}", note)
    Console(width=120).print(table)


if __name__ == "__main__":
    with networks.parse_network_choice("ethereum:local:test"):
        main()
