"""Bodies of the settlement routes: epochs, roots, a publisher's claims and history, and a
campaign's spend per epoch. Amounts are integers in the token's atomic units."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.core.chain import TxData


class EpochPublic(BaseModel):
    epoch: int
    state: str = Field(description="frozen, charged, spent, allocated, or empty (nothing billable)")
    starts_at: int = Field(description="unix seconds, inclusive")
    ends_at: int = Field(description="unix seconds, exclusive")
    campaigns: int
    events: int = Field(description="billable events settled")
    charged: int = Field(description="moved out of escrow, after the escrow's clipping")
    publisher_share: int
    fee: int
    written_off: int = Field(description="billed but not charged (balance or max per epoch)")
    root_id: int | None = Field(description="the root that pays it (0: nothing to pay)")
    note: str


class RootPublic(BaseModel):
    root_id: int
    root: str
    state: str = Field(description="built, posted, operator_needed or released")
    onchain_status: str | None = Field(description="pending, current, superseded or revoked")
    previous_root_id: int | None
    epochs: list[int]
    totals: dict[str, int] = Field(description="Σ cumulative amounts per token")
    leaves: int
    claimable_at: int | None
    artefact_uri: str


class ClaimProof(BaseModel):
    account: str = Field(description="the wallet the leaf pays")
    token: str
    root_id: int = Field(description="the current root: the only one claims verify against")
    cumulative: int
    claimed: int
    claimable: int = Field(description="what the claim transaction pays now")
    proof: list[str]
    transaction: TxData | None = Field(description="PublisherPayout.claim; none when 0")


class PendingLeaf(BaseModel):
    account: str
    token: str
    root_id: int
    cumulative: int
    claimable_at: int


class ClaimRecord(BaseModel):
    account: str
    token: str
    recipient: str
    amount: int
    root_id: int
    block_number: int
    tx_hash: str


class X402Received(BaseModel):
    slot_id: str
    payer: str
    asset: str
    amount: int
    state: str
    tx_hash: str | None
    created_at: str


class PushRecord(BaseModel):
    root_id: int
    account: str
    token: str
    amount: int
    status: str = Field(description="paid, or skipped (tried again on the next run)")
    reason: str
    attempts: int
    tx_hash: str


class ClaimsPublic(BaseModel):
    claimable: list[ClaimProof]
    pending: list[PendingLeaf] = Field(description="leaves in a root still in its challenge period")
    claims: list[ClaimRecord] = Field(description="claims paid on-chain, newest first")
    x402_payments: list[X402Received] = Field(description="x402 payments to the publisher")
    pushes: list[PushRecord] = Field(description="payouts pushed to the publisher (opted in)")


class CampaignSpend(BaseModel):
    epoch: int
    state: str
    events: int
    bid_sum: int
    amount: int = Field(description="what the verified events came to")
    asked: int
    charged: int | None
    publisher_share: int | None
    fee: int | None
    written_off: int | None
