"""Fixtures for the contract suite: the four contracts deployed and wired as `deploy` does,
named actors for every role, and factories for tokens, campaigns and payout trees.

ape reverts the chain after every test, so session-scoped deployments are shared safely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ape
import pytest

from api.settlement.merkle import Leaf, PayoutTree

ZERO = "0x0000000000000000000000000000000000000000"
EPOCH_LENGTH = 86_400
SETTLEMENT_GRACE = 2 * 86_400
WITHDRAW_DELAY = 3 * 86_400
MAX_SPEND = 10**30  # a campaign's default max spend per epoch: large enough never to clip
CHALLENGE_PERIOD = 6 * 3_600
FEE_BPS = 1_500
USDC = 10**6
CPM, CPC = 0, 1
ACTIVE, PAUSED, ENDED = 1, 2, 3
METADATA = bytes.fromhex("11" * 32)


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def settler(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def oracle(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def guardian(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def advertiser(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def other_advertiser(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def publisher(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def other_publisher(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[9]


@pytest.fixture(scope="session")
def publisher_registry(project, admin, oracle, guardian):
    registry = project.PublisherRegistry.deploy(sender=admin)
    registry.grantRole(registry.ORACLE_ROLE(), oracle, sender=admin)
    registry.grantRole(registry.GUARDIAN_ROLE(), guardian, sender=admin)
    return registry


@pytest.fixture(scope="session")
def campaign_registry(project, admin, guardian):
    # Epoch 1 starts at the chain's head, so a test reaches an epoch's end with `end_epoch`.
    genesis = ape.chain.blocks.head.timestamp
    registry = project.CampaignRegistry.deploy(EPOCH_LENGTH, genesis, sender=admin)
    registry.grantRole(registry.GUARDIAN_ROLE(), guardian, sender=admin)
    return registry


@pytest.fixture(scope="session")
def usdc(project, admin):
    return project.TestUSDC.deploy("USD Coin", "USDC", "USD Coin", "2", sender=admin)


@pytest.fixture(scope="session")
def payout(project, admin, settler, guardian, usdc):
    contract = project.PublisherPayout.deploy(CHALLENGE_PERIOD, sender=admin)
    contract.grantRole(contract.SETTLER_ROLE(), settler, sender=admin)
    contract.grantRole(contract.GUARDIAN_ROLE(), guardian, sender=admin)
    contract.register_token(ZERO, sender=admin)
    contract.register_token(usdc, sender=admin)
    return contract


@pytest.fixture(scope="session")
def escrow(project, admin, settler, guardian, treasury, campaign_registry, payout, usdc):
    contract = project.PaymentEscrow.deploy(
        campaign_registry,
        payout,
        treasury,
        FEE_BPS,
        SETTLEMENT_GRACE,
        WITHDRAW_DELAY,
        sender=admin,
    )
    contract.grantRole(contract.SETTLER_ROLE(), settler, sender=admin)
    contract.grantRole(contract.GUARDIAN_ROLE(), guardian, sender=admin)
    payout.grantRole(payout.FUNDER_ROLE(), contract, sender=admin)
    # The escrow allow-lists only tokens the payout can be funded in.
    contract.set_token_allowed(ZERO, True, sender=admin)
    contract.set_token_allowed(usdc, True, sender=admin)
    return contract


@pytest.fixture(scope="session")
def mint_usdc(usdc, admin) -> Callable[..., None]:
    def mint(account, amount: int) -> None:
        usdc.mint(account, amount, sender=admin)

    return mint


@pytest.fixture(scope="session")
def register_campaign(campaign_registry) -> Callable[..., int]:
    """Register a campaign and return its id."""

    def register(
        advertiser,
        token=ZERO,
        bid_model=CPM,
        bid=2 * USDC,
        metadata=METADATA,
        max_spend=MAX_SPEND,
    ) -> int:
        tx = campaign_registry.register(
            token, bid_model, bid, metadata, max_spend, sender=advertiser
        )
        return int(tx.events.filter(campaign_registry.CampaignRegistered)[0].campaign_id)

    return register


@pytest.fixture(scope="session")
def funded_campaign(escrow, usdc, mint_usdc, register_campaign) -> Callable[..., int]:
    """Register a campaign in `token` (the test USDC by default, ZERO for ETH) and deposit."""

    def create(advertiser, amount: int, token=None, **kwargs) -> int:
        token_address = usdc.address if token is None else token
        campaign_id = register_campaign(advertiser, token=token_address, **kwargs)
        if token_address == ZERO:
            escrow.deposit(campaign_id, amount, ZERO, value=amount, sender=advertiser)
        else:
            mint_usdc(advertiser, amount)
            usdc.approve(escrow, amount, sender=advertiser)
            escrow.deposit(campaign_id, amount, token_address, sender=advertiser)
        return campaign_id

    return create


@pytest.fixture(scope="session")
def build_tree(payout) -> Callable[[Iterable[tuple]], PayoutTree]:
    """A payout tree for this chain and payout contract from (account, token, amount) rows."""

    def build(rows: Iterable[tuple]) -> PayoutTree:
        leaves = [Leaf(str(account), str(token), int(amount)) for account, token, amount in rows]
        return PayoutTree(ape.chain.chain_id, payout.address, leaves)

    return build


@pytest.fixture(scope="session")
def post_tree(payout, settler) -> Callable[..., object]:
    """Post a tree's root as the next root id with its per-token totals."""

    def post(tree: PayoutTree, uri: str = "ipfs://artefact"):
        totals = tree.totals()
        tokens = list(totals)
        return payout.post_root(
            payout.latest_root_id() + 1,
            tree.root,
            tokens,
            [totals[t] for t in tokens],
            uri,
            sender=settler,
        )

    return post


def advance(seconds: int) -> None:
    """Move the chain's clock forward and mine a block."""
    ape.chain.mine(timestamp=ape.chain.pending_timestamp + seconds)


def end_epoch(contract, epoch: int) -> None:
    """Move the chain's clock to the end of `epoch` of `contract` (the campaign registry or
    the escrow), so the next transaction can settle it; a clock already past it stays."""
    end = contract.genesis() + epoch * contract.epoch_length()
    if ape.chain.pending_timestamp < end:
        ape.chain.mine(timestamp=end)
