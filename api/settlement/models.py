"""What settlement keeps for publishers to claim with: each posted root's leaves and proofs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class PayoutProof(SQLModel, table=True):
    """One leaf of a posted root's payout tree: `account`'s cumulative earnings in `token`
    and the proof `PublisherPayout.claim(account, token, cumulative, proof)` takes while that
    root is the current one."""

    __tablename__ = "payout_proofs"

    chain_id: int = Field(primary_key=True)
    root_id: int = Field(sa_type=BigInteger, primary_key=True)
    account: str = Field(primary_key=True, description="lowercase address paid")
    token: str = Field(primary_key=True, description="lowercase token address")
    cumulative: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    proof: list[Any] = Field(sa_column=Column(JSONB, nullable=False))
