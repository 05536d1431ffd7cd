"""Bodies of the publisher routes."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field, HttpUrl


class PublisherCreate(BaseModel):
    website_url: HttpUrl
    email: EmailStr | None = None


class PublisherUpdate(BaseModel):
    website_url: HttpUrl | None = None
    email: EmailStr | None = None


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
    onchain: OnChainStatus


class RegistrationIn(BaseModel):
    pub_id: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    payment_wallet: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="defaults to the wallet"
    )
