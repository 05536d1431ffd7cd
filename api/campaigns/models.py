"""Advertiser profiles and campaign drafts. Budgets and bids are integer atomic units."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from api.core.fields import utcnow


class AdvertiserProfile(SQLModel, table=True):
    __tablename__ = "advertiser_profiles"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    wallet: str = Field(unique=True, index=True)
    company_name: str
    website_url: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CampaignDraft(SQLModel, table=True):
    """What the advertiser builds; once registered on-chain, `onchain_id` links it to
    the indexer's `campaigns_onchain` (matched by advertiser and metadata hash)."""

    __tablename__ = "campaign_drafts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    advertiser_id: uuid.UUID = Field(foreign_key="advertiser_profiles.id", index=True)
    name: str
    objective: str
    bid_model: str
    bid: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    token: str
    total_budget: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    # what the registration puts on-chain; after that the registry holds the max in force
    max_spend_per_epoch: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    targeting: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    format: str
    landing_url: str
    start_date: datetime | None = None
    end_date: datetime | None = None
    metadata_hash: str
    onchain_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    # off-chain: may the campaign serve on slots of sites whose domain is not verified
    unverified_inventory: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Creative(SQLModel, table=True):
    """An uploaded creative of a campaign, stored under its CID."""

    __tablename__ = "creatives"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    campaign_id: uuid.UUID = Field(foreign_key="campaign_drafts.id", index=True)
    cid: str = Field(index=True)
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
