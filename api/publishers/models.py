"""The publisher's off-chain profile. On-chain facts live in the indexer's
`publishers_onchain`; this table holds what only the publisher tells us."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.core.fields import utcnow


class PublisherProfile(SQLModel, table=True):
    __tablename__ = "publisher_profiles"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    wallet: str = Field(unique=True, index=True, description="lowercase hex address")
    email: str | None = None
    website_url: str
    category: str | None = None
    # settlement pays this publisher's leaves with `claim_many` once a root is current and
    # what it can claim reaches the threshold (atomic units of the token)
    push_payouts: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    push_threshold: int = Field(
        default=0, sa_column=Column(Numeric(78, 0), nullable=False, server_default="0")
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PublisherSite(SQLModel, table=True):
    """A website of the publisher. The profile's website is its main site (`main`); more can
    be added. Each is verified on its own; the chain records one hash committing to the
    publisher's verified domains (see `api.publishers.sites.domains_commitment`)."""

    __tablename__ = "publisher_sites"
    __table_args__ = (UniqueConstraint("publisher_id", "domain", name="uq_publisher_sites_domain"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    publisher_id: uuid.UUID = Field(foreign_key="publisher_profiles.id", index=True)
    url: str
    domain: str = Field(index=True, description="lower-case host without www.")
    category: str | None = None
    main: bool = False
    verified_at: datetime | None = None
    verified_by: str | None = Field(default=None, description="dns, well_known or meta")
    created_at: datetime = Field(default_factory=utcnow)


class AdSlot(SQLModel, table=True):
    """A place on a publisher's site where ads appear. `slot_id` is the public name sites
    send to `/x402/ad`; the prices are what agents or ad-free visitors pay by x402 (USDC
    atomic units; no price means that case gets no 402)."""

    __tablename__ = "ad_slots"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    publisher_id: uuid.UUID = Field(foreign_key="publisher_profiles.id", index=True)
    site_id: uuid.UUID | None = Field(default=None, foreign_key="publisher_sites.id", index=True)
    slot_id: str = Field(unique=True, index=True)
    name: str
    format: str
    width: int
    height: int
    status: str = "active"
    agent_price: int | None = Field(default=None, sa_type=BigInteger)
    ad_free_price: int | None = Field(default=None, sa_type=BigInteger)
    no_fill_price: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TrafficDaily(SQLModel, table=True):
    """A publisher's billable events per UTC day, and how many passed invalid-traffic
    filtering: the rollup the tracking writer keeps and the quality score reads."""

    __tablename__ = "publisher_traffic_daily"

    wallet: str = Field(primary_key=True, description="lowercase publisher wallet")
    day: date = Field(primary_key=True)
    events: int = Field(default=0, sa_type=BigInteger)
    verified: int = Field(default=0, sa_type=BigInteger)
