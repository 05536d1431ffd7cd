"""x402 payments: one row per EIP-3009 authorization we settle, so a payment presented many
times (in parallel, or again after success) settles once and is served one receipt."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.core.fields import utcnow

SETTLING, SETTLED, FAILED = "settling", "settled", "failed"


class X402Payment(SQLModel, table=True):
    """An authorization (payer, nonce) on one chain. The request that inserts the row settles
    it; `state` is `settling` until the transfer is confirmed (`settled`) or cannot happen
    any more (`failed`). A row left `settling` with an `error` was handed over: its outcome is
    read from the chain (see `Payments.reconcile`)."""

    __tablename__ = "x402_payments"
    __table_args__ = (
        UniqueConstraint("chain_id", "payer", "nonce", name="uq_x402_payments_authorization"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    chain_id: int = Field(sa_type=BigInteger)
    payer: str = Field(description="lowercase hex address")
    nonce: str = Field(description="the EIP-3009 nonce, 0x and 64 lowercase hex digits")
    payload_hash: str = Field(description="sha256 of the signed authorization, to tell replays")
    slot_key: str = Field(index=True)
    pay_to: str = Field(description="lowercase hex address")
    asset: str = Field(description="lowercase hex address")
    amount: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    authorization_expires_at: datetime = Field(description="validBefore: no transfer after it")
    state: str = Field(default=SETTLING, index=True)
    error: str | None = None
    tx_hash: str | None = None
    receipt: str | None = None
    valid_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
