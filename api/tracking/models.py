"""Tracked events and token redemptions.

`ad_events` is range-partitioned by day on `occurred_at` (partitions `ad_events_pYYYYMMDD`,
created ahead by a scheduler job and on demand by the writer); every event is stored, valid
or not, with `verified` and the `reason` it is not. It is not unique by token, since
duplicates are stored too; `(event_id, occurred_at)` is unique so a replayed stream batch
lands once (`event_id` is `<shard>:<entry id>`: entry ids repeat across shards).
`ad_event_redemptions` is the final word on single use: one row per token id
(`<serve_id>:<kind>`), filled with `INSERT … ON CONFLICT DO NOTHING`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Numeric
from sqlmodel import Field, SQLModel

UINT256 = Numeric(78, 0)

IMPRESSION, CLICK = "impression", "click"


class AdEvent(SQLModel, table=True):
    __tablename__ = "ad_events"
    __table_args__ = (
        Index("ix_ad_events_occurred_at", "occurred_at", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    event_id: str = Field(primary_key=True, description="<shard>:<Redis Stream entry id>")
    occurred_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False),
        description="when the API received the event (UTC)",
    )
    kind: str = Field(description="impression or click")
    verified: bool = Field(description="billable: passed every invalid-traffic rule")
    reason: str | None = Field(default=None, description="why not verified; null when it is")
    chain_id: int
    serve_id: str | None = Field(default=None, description="null when the token was unreadable")
    campaign_id: int | None = Field(default=None, sa_type=BigInteger)
    slot_id: str | None = None
    publisher: str | None = Field(default=None, description="lowercase publisher wallet")
    token: str | None = Field(default=None, description="the campaign's payment token")
    bid_model: str | None = Field(default=None, description="cpm or cpc, at serve time")
    bid: int | None = Field(default=None, sa_type=UINT256, description="serve-time bid")
    price: int = Field(
        default=0, sa_type=UINT256, description="what the event bills if verified (atomic units)"
    )
    served_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    ip_prefix: str | None = Field(default=None, description="the client's /24 or /48, never its IP")
    visitor: str | None = Field(default=None, description="daily-salted visitor key")
    device: str | None = None
    geo: str | None = None


class AdEventRedemption(SQLModel, table=True):
    __tablename__ = "ad_event_redemptions"

    token_id: str = Field(primary_key=True, description="<serve_id>:<kind>")
    event_id: str = Field(description="the event that redeemed it")
    redeemed_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True),
        description="pruned a day after the longest token life",
    )
