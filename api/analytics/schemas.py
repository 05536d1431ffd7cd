"""What the analytics endpoints answer. Money is an integer string of atomic units of the
payment token; rates are integer basis points (1 % = 100), rounded down."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

EARNINGS_NOTE = (
    "earnings are estimated until settled: 85 % of spend, rounded down; settlement charges"
    " each campaign within its balance and max per epoch and allocates exactly"
)


class ReasonFigure(BaseModel):
    events: int
    rate_bps: int = Field(description="share of all events (impressions and clicks)")


class Measures(BaseModel):
    impressions: int = Field(description="every impression recorded, valid or not")
    verified_impressions: int
    clicks: int
    verified_clicks: int
    ctr_bps: int = Field(description="verified clicks per verified impression")
    spend: str = Field(description="sum of the prices of verified events (atomic units)")
    earnings: str = Field(description="the publishers' share of spend, estimated until settled")
    ivt_events: int = Field(description="events that failed an invalid-traffic rule")
    ivt_rate_bps: int
    ivt_by_reason: dict[str, ReasonFigure]
    x402_payments: int
    x402_revenue: str = Field(description="settled x402 payments for slots (atomic units)")


class Point(Measures):
    bucket: datetime = Field(description="the hour's or day's start (UTC)")


class Row(Measures):
    campaign_id: int | None = None
    publisher: str | None = None
    slot_id: str | None = None


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from", description="first hour included (UTC)")
    end: datetime = Field(alias="to", description="first hour after the range (UTC)")
    group: str
    rolled_until: datetime = Field(
        description="hours before this come from the rollups, later ones from the raw events"
    )
    earnings_note: str = EARNINGS_NOTE
    series: list[Point]
    totals: Measures
    top: dict[str, list[Row]] = Field(description="top performers by spend")


class IvtReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    rolled_until: datetime
    rows: list[Row] = Field(description="most invalid traffic first")
