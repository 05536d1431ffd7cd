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
RUNNING_GRAINS = ("c", "p", "s")  # the grains `analytics_daily_running` keeps
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


class AnalyticsDailyRunning(RollupBase, table=True):
    """Running totals: each metric summed over every hour up to the end of `day`, one row per
    campaign (`c`), publisher (`p`) or slot (`s`) and day, for every day from the entity's
    first active day to the watermark's day (dense: a day without traffic repeats the day
    before). `active_hours` counts its hourly rollup rows so far: a range's difference of 0
    means no traffic in it."""

    __tablename__ = "analytics_daily_running"
    # a grain's rows at a day, every entity's, are one range (one publisher's: the primary key)
    __table_args__ = (
        Index(
            "ix_analytics_daily_running_day",
            "grain",
            "chain_id",
            "day",
            "campaign_id",
            "slot_id",
            "publisher",
        ),
    )

    day: date = Field(primary_key=True, description="the UTC day (totals through its end)")
    active_hours: int = _count()


class AnalyticsHourlyRunning(RollupBase, table=True):
    """Running totals within a day: each metric summed over the hours of `hour`'s day up to
    and including `hour`, for every hour from the entity's first active hour of that day to
    23:00 (dense). The totals of the hours before t: the daily running row of the day
    before t's day plus this row at t - 1 hour (none at midnight)."""

    __tablename__ = "analytics_hourly_running"
    __table_args__ = (
        Index(
            "ix_analytics_hourly_running_hour",
            "grain",
            "chain_id",
            "hour",
            "campaign_id",
            "slot_id",
            "publisher",
        ),
    )

    hour: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False),
        description="the hour's start (UTC; totals through its end)",
    )
    active_hours: int = _count()


class AnalyticsWatermark(SQLModel, table=True):
    """How far the rollup has gone: every hour before `rolled_until` is in the rollups (as of
    `updated_at`); queries read the hours from `rolled_until` on from the raw events."""

    __tablename__ = "analytics_watermark"

    name: str = Field(primary_key=True, description="the rollup's name ('events')")
    rolled_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# reports read the payments made since the rollup's watermark: by time, not the whole table
Index("ix_x402_payments_created_at", X402Payment.__table__.c.created_at)  # type: ignore[attr-defined]
