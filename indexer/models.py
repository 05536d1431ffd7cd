"""Tables the indexer writes: raw chain events, the unfinalized block window, the
checkpoint, and projections derived from canonical events only (so a rebuild from the start
block gives the same rows). uint256 values are NUMERIC(78,0); addresses are lowercase hex."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Numeric, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

UINT256 = Numeric(78, 0)


def uint256(**kwargs: Any) -> Any:
    return Field(sa_column=Column(UINT256, nullable=False, **kwargs))


class ChainEvent(SQLModel, table=True):
    """Every log of every followed contract, decoded. Rows of orphaned blocks are kept with
    `canonical = false` for audit; among canonical rows `(chain_id, tx_hash, log_index)` is
    unique."""

    __tablename__ = "chain_events"
    __table_args__ = (
        Index("uq_chain_events_block_log", "chain_id", "block_hash", "log_index", unique=True),
        Index(
            "uq_chain_events_canonical",
            "chain_id",
            "tx_hash",
            "log_index",
            unique=True,
            postgresql_where=text("canonical"),
        ),
        Index("ix_chain_events_subject", "chain_id", "subject", postgresql_where=text("canonical")),
        Index("ix_chain_events_block", "chain_id", "block_number"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    chain_id: int
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    contract: str
    address: str
    event: str
    subject: str
    args: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    canonical: bool = True


class IndexedBlock(SQLModel, table=True):
    """(number, hash, parent_hash) of indexed blocks inside the unfinalized window."""

    __tablename__ = "indexed_blocks"

    chain_id: int = Field(primary_key=True)
    number: int = Field(sa_type=BigInteger, primary_key=True)
    hash: str
    parent_hash: str
    timestamp: int = Field(sa_type=BigInteger)


class IndexerCheckpoint(SQLModel, table=True):
    """How far the indexer got: everything up to `block_number` is committed."""

    __tablename__ = "indexer_checkpoints"

    chain_id: int = Field(primary_key=True)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str
    block_timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    finalized_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    head_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class Publisher(SQLModel, table=True):
    __tablename__ = "publishers_onchain"

    chain_id: int = Field(primary_key=True)
    wallet: str = Field(primary_key=True)
    pub_id: str = Field(index=True)
    payment_wallet: str = Field(index=True)
    quality_score: int = 0
    domain_hash: str | None = None
    suspended: bool = False
    registered_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class Campaign(SQLModel, table=True):
    """A registered campaign. Its max spend per epoch is `max_spend_per_epoch` from
    `max_spend_effective_epoch` on and `previous_max_spend_per_epoch` before (registration
    sets both and effective epoch 0); the `campaign_max_spend` view gives the one in force
    now."""

    __tablename__ = "campaigns_onchain"

    chain_id: int = Field(primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    advertiser: str = Field(index=True)
    token: str
    bid_model: int
    bid: Decimal = uint256()
    metadata_hash: str
    status: int
    max_spend_per_epoch: Decimal = uint256()
    max_spend_effective_epoch: int = Field(sa_column=Column(BigInteger, nullable=False))
    previous_max_spend_per_epoch: Decimal = uint256()
    registered_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class EscrowBalance(SQLModel, table=True):
    __tablename__ = "escrow_balances"

    chain_id: int = Field(primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    token: str = Field(primary_key=True)
    deposited: Decimal = uint256()
    withdrawn: Decimal = uint256()
    spent: Decimal = uint256()
    balance: Decimal = uint256()
    last_spent_epoch: int = Field(default=0, sa_type=BigInteger)


class WithdrawRequest(SQLModel, table=True):
    """The latest withdraw request of a campaign: pending, cancelled or withdrawn."""

    __tablename__ = "withdraw_requests"

    chain_id: int = Field(primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    token: str
    amount: Decimal = uint256()
    available_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str
    paid: Decimal = uint256()


class EpochSpend(SQLModel, table=True):
    """What a campaign was charged for an epoch: `asked` by the settler, `charged` after
    clipping to its balance and max spend per epoch."""

    __tablename__ = "epoch_spends"

    chain_id: int = Field(primary_key=True)
    epoch: int = Field(sa_type=BigInteger, primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    token: str
    asked: Decimal = uint256()
    charged: Decimal = uint256()
    publisher_share: Decimal = uint256()
    fee: Decimal = uint256()
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))


class EpochSpendSkip(SQLModel, table=True):
    """A campaign the escrow skipped in a spend batch (already spent, unknown, nothing to
    charge), with what was asked and the contract's reason."""

    __tablename__ = "epoch_spend_skips"
    __table_args__ = (Index("ix_epoch_spend_skips_epoch", "chain_id", "epoch", "campaign_id"),)

    chain_id: int = Field(primary_key=True)
    tx_hash: str = Field(primary_key=True)
    log_index: int = Field(primary_key=True)
    epoch: int = Field(sa_column=Column(BigInteger, nullable=False))
    campaign_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    asked: Decimal = uint256()
    reason: str
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))


class PayoutFunding(SQLModel, table=True):
    """A token the payout registered and everything ever funded in it."""

    __tablename__ = "payout_funding"

    chain_id: int = Field(primary_key=True)
    token: str = Field(primary_key=True)
    registered: bool
    total_funded: Decimal = uint256()


class PayoutRoot(SQLModel, table=True):
    """A posted root. `revoked` is stored and `claimable_at` follows unpauses; whether it is
    pending, current or superseded depends on chain time and is given by the
    `payout_root_status` view."""

    __tablename__ = "payout_roots"

    chain_id: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger, primary_key=True)
    root: str
    claimable_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    totals: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    artefact_uri: str
    revoked: bool = False
    posted_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class PayoutClaim(SQLModel, table=True):
    __tablename__ = "payout_claims"

    chain_id: int = Field(primary_key=True)
    tx_hash: str = Field(primary_key=True)
    log_index: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger)
    account: str = Field(index=True)
    token: str
    recipient: str
    amount: Decimal = uint256()
    cumulative_amount: Decimal = uint256()
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))


class ChainConfig(SQLModel, table=True):
    """The latest arguments of each configuration event of each contract (epoch clock,
    escrow settings, challenge period, admin), so configuration is rebuilt from the chain."""

    __tablename__ = "chain_config"

    chain_id: int = Field(primary_key=True)
    contract: str = Field(primary_key=True)
    event: str = Field(primary_key=True)
    args: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))


class X402Payment(SQLModel, table=True):
    """An EIP-3009 authorization used on-chain (the x402 exact scheme's settlement)."""

    __tablename__ = "x402_payments_onchain"

    chain_id: int = Field(primary_key=True)
    payer: str = Field(primary_key=True)
    nonce: str = Field(primary_key=True)
    pay_to: str = Field(index=True)
    amount: Decimal = uint256()
    token: str
    tx_hash: str
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))


class PaymentBackfill(SQLModel, table=True):
    """A payment wallet whose earlier transfers are still to be read: blocks `next_block` to
    `last_block` (the job ends when `next_block` passes `last_block`). `created_block` is the
    last block of the range that asked for it: a reorg below it drops the job, and indexing
    the range again asks again."""

    __tablename__ = "payment_backfills"

    chain_id: int = Field(primary_key=True)
    wallet: str = Field(primary_key=True)
    next_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_block: int = Field(sa_column=Column(BigInteger, nullable=False))
