"""Bodies of the publisher routes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, EmailStr, Field, field_validator

from api.campaigns.targeting import CATEGORIES
from api.core.fields import Body, WebsiteUrl

CATEGORY = Field(
    default=None, description="the site's content category; campaigns may target categories"
)


class PublisherCreate(Body):
    website_url: WebsiteUrl
    email: EmailStr | None = None
    category: str | None = CATEGORY

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return known_category(value)


class PublisherUpdate(Body):
    website_url: WebsiteUrl | None = None
    email: EmailStr | None = None
    category: str | None = CATEGORY
    push_payouts: bool | None = Field(
        default=None, description="pay my earnings to me once a root is current (no claim)"
    )
    push_threshold: int | None = Field(
        default=None, ge=0, lt=2**256, description="the least a push pays, in atomic units"
    )

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return known_category(value)


def known_category(value: str | None) -> str | None:
    if value is not None and value not in CATEGORIES:
        raise ValueError(f"unknown category {value!r}: one of {', '.join(sorted(CATEGORIES))}")
    return value


class OnChainStatus(BaseModel):
    registered: bool
    pub_id: str | None = None
    payment_wallet: str | None = None
    quality_score: int | None = None
    domain_hash: str | None = None
    suspended: bool = False


class PublisherPublic(BaseModel):
    wallet: str
    website_url: str
    email: str | None
    category: str | None
    push_payouts: bool
    push_threshold: int
    onchain: OnChainStatus


class RegistrationIn(Body):
    pub_id: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    payment_wallet: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="defaults to the wallet"
    )


class PaymentWalletIn(Body):
    payment_wallet: str = Field(
        pattern=r"^0x[0-9a-fA-F]{40}$", description="where settlement pays from now on"
    )

    @field_validator("payment_wallet")
    @classmethod
    def _not_zero(cls, value: str) -> str:
        if int(value, 16) == 0:
            raise ValueError("the zero address would burn the payments")
        return value


class SlotFormat(StrEnum):
    banner = "banner"
    native = "native"
    video = "video"


class SlotStatus(StrEnum):
    active = "active"
    paused = "paused"


Price = Annotated[int, Field(ge=0, le=10**12, description="USDC atomic units (6 decimals)")]
Dimension = Annotated[int, Field(ge=1, le=4096)]


class SlotCreate(Body):
    site_id: str | None = Field(default=None, description="one of your sites; default: the main")
    name: str = Field(min_length=1, max_length=100)
    format: SlotFormat
    width: Dimension
    height: Dimension
    agent_price: Price | None = None
    ad_free_price: Price | None = None
    no_fill_price: Price | None = None


class SlotUpdate(Body):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    status: SlotStatus | None = None
    width: Dimension | None = None
    height: Dimension | None = None
    agent_price: Price | None = None
    ad_free_price: Price | None = None
    no_fill_price: Price | None = None


class SlotPublic(BaseModel):
    slot_id: str
    site_id: str | None
    name: str
    format: SlotFormat
    width: int
    height: int
    status: SlotStatus
    agent_price: int | None
    ad_free_price: int | None
    no_fill_price: int | None


class IntegrationCode(BaseModel):
    html: str = Field(description="paste where the ad should appear")
    server_relay: str = Field(description="optional: relay x402 402s to agents from your server")


class VerificationMethod(StrEnum):
    dns = "dns"
    well_known = "well_known"
    meta = "meta"


class DomainInstructions(BaseModel):
    domain: str
    token: str
    dns_txt: str
    well_known_url: str
    meta_tag: str


class VerifyDomainIn(Body):
    method: VerificationMethod


class DomainVerified(BaseModel):
    domain: str
    method: VerificationMethod
    domain_hash: str
    tx_hash: str


class TokenEarnings(BaseModel):
    account: str = Field(description="the wallet the leaf pays")
    token: str
    earned: int = Field(description="cumulative earnings in the newest posted, unrevoked root")
    claimed: int = Field(description="paid out on-chain so far")
    claimable: int = Field(description="what a claim against the current root would pay now")
    pending: int = Field(description="earned but still in a root's challenge period")
    latest_root_id: int = Field(description="the root `earned` comes from")
    claimable_root_id: int | None = Field(
        description="the current root, the only one claims verify against (none before the "
        "first matures)"
    )


class EarningsPublic(BaseModel):
    tokens: list[TokenEarnings] = Field(description="empty until the first settlement")


class EpochEarnings(BaseModel):
    epoch: int
    token: str
    account: str = Field(description="the payment wallet the epoch's share was allocated to")
    events: int = Field(description="verified events on the publisher's slots")
    amount: int | None = Field(description="the publisher's share; none until allocated")
    state: str = Field(description="the epoch's settlement state")
    root_id: int | None = Field(description="the root that pays it, once built")


class SiteCreate(Body):
    website_url: WebsiteUrl
    category: str | None = CATEGORY

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return known_category(value)


class SitePublic(BaseModel):
    id: str
    url: str
    domain: str
    category: str | None
    main: bool = Field(description="the profile's website")
    verified: bool
    verified_at: datetime | None
