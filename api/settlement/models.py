"""What settlement keeps: each epoch's state and inputs, per-campaign charges, per-wallet
allocations, every transaction it signed (before sending it), the roots it built, and each
posted root's leaves and proofs for publishers to claim with.

An epoch moves frozen → charged → spent → allocated, then joins a root; a root moves built →
posted, or to `operator_needed` when it was revoked. Every step writes its outputs and its
next state in one database transaction, so a crash resumes at the step that did not commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Numeric, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

UINT256 = Numeric(78, 0)


def _uint256(nullable: bool = False) -> Any:
    return Field(default=None if nullable else 0, sa_column=Column(UINT256, nullable=nullable))


def _updated_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
        ),
    )


class SettlementEpoch(SQLModel, table=True):
    """One escrow epoch's settlement: `state` is the last step done; `block_number` /
    `block_hash` the finalized block its chain facts were read at; `root_id` the root whose
    leaves include it (null until one is built)."""

    __tablename__ = "settlement_epochs"

    chain_id: int = Field(primary_key=True)
    epoch: int = Field(sa_type=BigInteger, primary_key=True)
    state: str = Field(description="frozen, charged, spent, allocated or empty")
    starts_at: int = Field(sa_type=BigInteger, description="unix seconds, inclusive")
    ends_at: int = Field(sa_type=BigInteger, description="unix seconds, exclusive")
    block_number: int = Field(sa_type=BigInteger)
    block_hash: str
    end_block: int = Field(sa_type=BigInteger, description="the last block before the end")
    events: int = Field(default=0, sa_type=BigInteger)
    inputs_hash: str = ""
    root_id: int | None = Field(default=None, sa_type=BigInteger)
    note: str = ""
    updated_at: datetime | None = _updated_at()


class SettlementStep(SQLModel, table=True):
    """The log of steps done: one row per (epoch or root, step) with what the step read and
    what it wrote, written in the step's own transaction."""

    __tablename__ = "settlement_steps"

    chain_id: int = Field(primary_key=True)
    subject: str = Field(primary_key=True, description="epoch:<n> or root:<id>")
    step: str = Field(primary_key=True, description="freeze, charge, spend, allocate, build, post")
    inputs: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    outputs: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    done_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class SettlementCharge(SQLModel, table=True):
    """A campaign's charge for an epoch: what its verified events bid (`bid_sum`, and `billed`
    as the intake reserved and billed it), what that comes to (`amount`, one integer division),
    what was asked of the escrow (capped by its free balance and max), and what the `Spent`
    event says was charged, with its publisher share and fee. `written_off` = amount − charged."""

    __tablename__ = "settlement_charges"

    chain_id: int = Field(primary_key=True)
    epoch: int = Field(sa_type=BigInteger, primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    token: str
    bid_model: str
    events: int = Field(sa_type=BigInteger)
    bid_sum: int = _uint256()
    billed: int = _uint256()
    amount: int = _uint256()
    asked: int = _uint256()
    charged: int | None = _uint256(nullable=True)
    publisher_share: int | None = _uint256(nullable=True)
    fee: int | None = _uint256(nullable=True)
    written_off: int | None = _uint256(nullable=True)
    released: bool = Field(default=False, description="its billed spend left the budget")


class SettlementAllocation(SQLModel, table=True):
    """What one payment wallet earned from one campaign in one epoch: `weight` is Σ bids of the
    verified events its slots carried (fixed at freeze), `amount` its share of the campaign's
    publisher share by largest remainder (null until allocated)."""

    __tablename__ = "settlement_allocations"
    __table_args__ = (Index("ix_settlement_allocations_account", "chain_id", "account"),)

    chain_id: int = Field(primary_key=True)
    epoch: int = Field(sa_type=BigInteger, primary_key=True)
    campaign_id: int = Field(sa_type=BigInteger, primary_key=True)
    account: str = Field(primary_key=True, description="lowercase payment wallet")
    token: str
    events: int = Field(sa_type=BigInteger)
    weight: int = _uint256()
    amount: int | None = _uint256(nullable=True)


class SettlementTx(SQLModel, table=True):
    """A transaction a step signed, stored before it is sent so a resumed run sends the same
    one (or the same with higher fees) and never another."""

    __tablename__ = "settlement_txs"

    chain_id: int = Field(primary_key=True)
    step: str = Field(primary_key=True, description="spend:<epoch>:<batch> or post:<root id>")
    sender: str
    tx_hash: str
    signed: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(
        description="signed, mined (recorded: a push's outcome is stored), reverted or replaced"
    )
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    error: str = ""
    updated_at: datetime | None = _updated_at()


class SettlementRoot(SQLModel, table=True):
    """A root this network built: its leaves are in `payout_proofs` under the same root id."""

    __tablename__ = "settlement_roots"

    chain_id: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger, primary_key=True)
    state: str = Field(description="built, posted, or operator_needed (revoked)")
    root: str
    previous_root_id: int | None = Field(default=None, sa_type=BigInteger)
    epochs: list[int] = Field(sa_column=Column(ARRAY(BigInteger), nullable=False))
    totals: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    leaves: int = Field(sa_type=BigInteger)
    artefact_path: str
    artefact_uri: str
    note: str = ""
    updated_at: datetime | None = _updated_at()


class SettlementPush(SQLModel, table=True):
    """A leaf pushed with `claim_many` for a publisher who opted in: `paid`, or `skipped` with
    the contract's reason (tried again on the next run, up to a few attempts per root)."""

    __tablename__ = "settlement_pushes"

    chain_id: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger, primary_key=True)
    account: str = Field(primary_key=True)
    token: str = Field(primary_key=True)
    amount: int = _uint256()
    status: str = Field(description="paid or skipped")
    reason: str = ""
    attempts: int = 1
    tx_hash: str = ""
    updated_at: datetime | None = _updated_at()


class PayoutProof(SQLModel, table=True):
    """One leaf of a root's payout tree: `account`'s cumulative earnings in `token` and the
    proof `PublisherPayout.claim(account, token, cumulative, proof)` takes while that root is
    the current one."""

    __tablename__ = "payout_proofs"

    chain_id: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger, primary_key=True)
    account: str = Field(primary_key=True, description="lowercase address paid")
    token: str = Field(primary_key=True, description="lowercase token address")
    cumulative: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    proof: list[Any] = Field(sa_column=Column(JSONB, nullable=False))
