"""Campaign and advertiser bodies, with the seed's validation rules."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from api.campaigns.targeting import CATEGORIES, COUNTRIES, DEVICES
from api.core.fields import Body, WebsiteUrl

Amount = Annotated[int, Field(gt=0, lt=2**255, description="atomic units of the token")]
MAX_SPEND_LIMIT = 2**128 - 1  # the registry's bound: the escrow keeps amounts in 128 bits
MaxSpendPerEpoch = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_SPEND_LIMIT,
        description="the most the escrow may charge the campaign for one spend epoch, in atomic"
        " units of its token; enforced on-chain and by the ad server",
    ),
]


class AdvertiserCreate(Body):
    company_name: str = Field(min_length=1, max_length=200)
    website_url: WebsiteUrl


class AdvertiserUpdate(Body):
    company_name: str | None = Field(default=None, min_length=1, max_length=200)
    website_url: WebsiteUrl | None = None


class AdvertiserPublic(BaseModel):
    wallet: str
    company_name: str
    website_url: str


class Objective(StrEnum):
    awareness = "awareness"
    clicks = "clicks"
    conversions = "conversions"


class BidModel(StrEnum):
    cpm = "cpm"
    cpc = "cpc"


class Format(StrEnum):
    banner = "banner"
    native = "native"
    video = "video"


class Targeting(Body):
    geo: list[str] = Field(default_factory=list, description="ISO 3166-1 alpha-2; empty = all")
    categories: list[str] = Field(default_factory=list, description="empty = all")
    devices: list[str] = Field(default_factory=list, description="desktop, mobile, tablet")
    quality_min: int = Field(default=0, ge=0, le=100)

    @field_validator("geo")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return _known(value, COUNTRIES, "ISO country codes")

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        return _known(value, CATEGORIES, "categories")

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        return _known(value, DEVICES, "devices")


def _known(values: list[str], allowed: frozenset[str], what: str) -> list[str]:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}")
    return sorted(set(values))


UNVERIFIED_INVENTORY = (
    "serve on slots of sites whose domain is not verified too (by default only verified"
    " sites show the campaign); off-chain, takes effect at once"
)


class CampaignCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    objective: Objective = Objective.awareness
    bid_model: BidModel
    bid: Amount
    token: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="default: the network's USDC"
    )
    total_budget: Amount
    max_spend_per_epoch: MaxSpendPerEpoch
    targeting: Targeting = Field(default_factory=Targeting)
    format: Format
    landing_url: WebsiteUrl
    start_date: datetime | None = None
    end_date: datetime | None = None
    unverified_inventory: bool = Field(default=False, description=UNVERIFIED_INVENTORY)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignCreate:
        if self.bid > self.total_budget:
            raise ValueError("bid cannot exceed total_budget")
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        return self


class CampaignUpdate(Body):
    """Fields to change. Once a campaign is registered on-chain its token and bid model are
    fixed; a new bid, targeting, format or landing page takes effect when the advertiser
    signs the `metadata-tx` (until then `pending_update` is true and the campaign pauses
    serving, because the ad server honours only what the chain records). The max spend per
    epoch of a registered campaign changes through the `max-spend-tx`."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    objective: Objective | None = None
    bid_model: BidModel | None = None
    bid: Amount | None = None
    token: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    total_budget: Amount | None = None
    max_spend_per_epoch: MaxSpendPerEpoch | None = None
    targeting: Targeting | None = None
    format: Format | None = None
    landing_url: WebsiteUrl | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    unverified_inventory: bool | None = Field(default=None, description=UNVERIFIED_INVENTORY)


class CampaignStatus(StrEnum):
    active = "active"
    paused = "paused"
    ended = "ended"


class StatusIn(Body):
    status: CampaignStatus


class MaxSpendIn(Body):
    max_spend_per_epoch: MaxSpendPerEpoch


class MaxSpendPublic(BaseModel):
    """The registry's max spend per epoch of a registered campaign."""

    in_force: int = Field(description="the max of the current epoch")
    newest: int = Field(description="the latest max set; equal to in_force unless one is pending")
    effective_epoch: int = Field(description="the epoch from which `newest` applies")


class WithdrawIn(Body):
    amount: Amount


class WithdrawPublic(BaseModel):
    amount: int
    available_at: datetime
    status: str = Field(description="pending, cancelled or withdrawn")
    paid: int


class CampaignPublic(BaseModel):
    id: str
    name: str
    objective: Objective
    bid_model: BidModel
    bid: int
    token: str
    total_budget: int
    max_spend_per_epoch: int = Field(description="the max per epoch the registration sets")
    max_spend: MaxSpendPublic | None = Field(
        description="once registered, the max per epoch the chain enforces (null while it"
        " cannot be read)"
    )
    targeting: dict[str, Any]
    format: Format
    landing_url: str
    start_date: datetime | None
    end_date: datetime | None
    unverified_inventory: bool = Field(description=UNVERIFIED_INVENTORY)
    metadata_hash: str
    status: str = Field(description="draft, registered, funded, active, paused or ended")
    servable: bool = Field(description="whether the ad server can show the campaign now")
    not_servable_reason: str | None = Field(
        description="why not, when not: no_creative, not_registered, ended, paused,"
        " withdraw_pending, pending_update, no_escrow_balance, not_started, budget_spent"
        " (the escrow balance is held by events awaiting settlement) or epoch_budget_spent"
        " (this epoch's max spend is reached)"
    )
    not_servable_message: str | None = Field(description="the reason as a sentence")
    onchain_id: int | None
    escrow_balance: int
    onchain_bid: int | None = Field(description="the bid the chain records, once registered")
    pending_update: bool = Field(
        description="edited since registration: sign the metadata-tx for it to take effect"
    )
    withdraw: WithdrawPublic | None = Field(description="the latest withdraw request")


class FundingIn(Body):
    amount: Amount


class CreativePublic(BaseModel):
    cid: str
    url: str
    content_type: str
    size: int
    width: int | None
    height: int | None
