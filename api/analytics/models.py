"""Analytics rollups: counts and money per hour and per day, at several grains, folded from
`ad_events` (and the settled `x402_payments`) by `api.analytics.jobs.rollup`.

One row per (grain, chain, bucket, campaign, publisher, slot). The grain says which of the
dimensions the row is about; the others hold their "not this grain" value (campaign 0,
publisher '', slot ''), and so does a dimension the event did not carry (an unreadable token):

- `cps`: one campaign on one publisher's slot (the finest);
- `c`: one campaign; `p`: one publisher; `s`: one publisher's slot; `n`: the whole network.

x402 revenue has no campaign: it is counted on campaign 0 of its slot. Spend is the sum of the
prices of verified events (atomic units of the campaign's payment token); earnings are not
stored, they are derived from spend (see `api.analytics.service.earnings`)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Numeric
from sqlmodel import Field, SQLModel

from api.ads.models import X402Payment

UINT256 = Numeric(78, 0)

GRAINS = ("cps", "c", "p", "s", "n")
# the reasons `ad_events.reason` takes; anything else is counted as `other`
REASONS = (
    "bot",
    "datacenter",
    "rate_ip",
    "rate_publisher",
    "duplicate",
    "expired",
    "forged",
    "click_without_impression",
    "too_fast",
    "not_served",
)
IVT_COLUMNS = tuple(f"ivt_{reason}" for reason in (*REASONS, "other"))
COUNT_COLUMNS = (
    "impressions",
    "verified_impressions",
    "clicks",
    "verified_clicks",
    *IVT_COLUMNS,
    "x402_payments",
)
MONEY_COLUMNS = ("spend", "x402_revenue")


def _count() -> int:
    return Field(default=0, sa_type=BigInteger)  # type: ignore[no-any-return]


def _money() -> int:
    return Field(default=0, sa_type=UINT256)  # type: ignore[no-any-return]


class RollupBase(SQLModel):
    grain: str = Field(primary_key=True, max_length=3)
    chain_id: int = Field(primary_key=True)
    campaign_id: int = Field(default=0, primary_key=True, sa_type=BigInteger)
    publisher: str = Field(default="", primary_key=True, description="lowercase wallet")
    slot_id: str = Field(default="", primary_key=True)
    impressions: int = _count()
    verified_impressions: int = _count()
    clicks: int = _count()
    verified_clicks: int = _count()
    spend: int = _money()
    ivt_bot: int = _count()
    ivt_datacenter: int = _count()
    ivt_rate_ip: int = _count()
    ivt_rate_publisher: int = _count()
    ivt_duplicate: int = _count()
    ivt_expired: int = _count()
    ivt_forged: int = _count()
    ivt_click_without_impression: int = _count()
    ivt_too_fast: int = _count()
    ivt_not_served: int = _count()
    ivt_other: int = _count()
    x402_payments: int = _count()
    x402_revenue: int = _money()


class AnalyticsHourly(RollupBase, table=True):
    __tablename__ = "analytics_hourly"
    __table_args__ = (
        Index("ix_analytics_hourly_publisher", "chain_id", "publisher", "hour"),
        Index("ix_analytics_hourly_hour", "grain", "chain_id", "hour"),
    )

    hour: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False),
        description="the hour's start (UTC)",
    )


class AnalyticsDaily(RollupBase, table=True):
    __tablename__ = "analytics_daily"
    __table_args__ = (
        Index("ix_analytics_daily_publisher", "chain_id", "publisher", "day"),
        Index("ix_analytics_daily_day", "grain", "chain_id", "day"),
    )

    day: date = Field(primary_key=True, description="the UTC day")


class AnalyticsWatermark(SQLModel, table=True):
    """How far the rollup has gone: every hour before `rolled_until` is in the rollups (as of
    `updated_at`); queries read the hours from `rolled_until` on from the raw events."""

    __tablename__ = "analytics_watermark"

    name: str = Field(primary_key=True, description="the rollup's name ('events')")
    rolled_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# reports read the payments made since the rollup's watermark: by time, not the whole table
Index("ix_x402_payments_created_at", X402Payment.__table__.c.created_at)  # type: ignore[attr-defined]
