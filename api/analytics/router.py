"""`/api/v1/analytics`: a publisher's own figures, an advertiser's own campaign's, and the
whole network's for the admin wallets of `analytics_admin_wallets`. Each takes a range
(`from`, `to`: dates or ISO datetimes, UTC), `group=hour|day`, and `format=csv`."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import text
from sqlmodel import Session

from api.analytics import service
from api.analytics.models import REASONS
from api.analytics.schemas import IvtReport, Report
from api.analytics.service import Dimension, Group, Scope, Span
from api.campaigns.service import own_campaign
from api.core.db import SessionDep
from api.core.errors import Forbidden, NotFound, Unprocessable
from api.deps import SettingsDep, WalletDep, WalletLimited

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"], dependencies=[WalletLimited])

MAX_HOURLY = timedelta(days=31)
YEARS = (2000, 2999)
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with `format=csv`"}
}

From = Annotated[
    str | None,
    Query(alias="from", description="a date or an ISO datetime (UTC); default: 6 days before `to`"),
]
To = Annotated[
    str | None,
    Query(
        alias="to",
        description="a date (its whole day is included) or an ISO datetime (rounded up to the"
        " hour, exclusive); default: today",
    ),
]
GroupQ = Annotated[Group, Query(description="one point per hour or per day")]
Format = Annotated[Literal["json", "csv"], Query()]


def _parse(name: str, value: str) -> date | datetime:
    try:
        found = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            f"`{name}` must be a date (2026-12-06) or an ISO datetime (2026-12-06T10:00:00Z)",
            {"problems": [{"field": f"query.{name}", "problem": "not a date or datetime"}]},
        ) from None
    if not YEARS[0] <= found.year <= YEARS[1]:
        raise Unprocessable(
            f"`{name}` must be between the years {YEARS[0]} and {YEARS[1]}",
            {"problems": [{"field": f"query.{name}", "problem": "out of range"}]},
        )
    return found


def span(start: str | None, end: str | None, group: Group) -> Span:
    """The validated range: `to` not before `from`, at most 366 days (31 by hour)."""
    to = _parse("to", end) if end else datetime.now(UTC).date()
    if start:
        frm = _parse("from", start)
    else:
        frm = (to if not isinstance(to, datetime) else to.date()) - timedelta(days=6)
    found = service.span_of(frm, to)
    if isinstance(to, datetime):
        before = service.aware(to) < service.aware(frm)
    else:  # a date `to` counts through its day
        before = service.aware(to) + timedelta(days=1) <= service.aware(frm)
    if before:
        raise Unprocessable("`to` is before `from`", {"from": str(frm), "to": str(to)})
    limit = MAX_HOURLY if group == "hour" else service.MAX_RANGE
    if found.end - found.start > limit:
        raise Unprocessable(
            f"the range is longer than {limit.days} days"
            + (" (group=hour)" if group == "hour" else ""),
            {"days": (found.end - found.start) / timedelta(days=1), "max_days": limit.days},
        )
    return found


def _campaign(session: Session, chain_id: int, wallet: str, campaign_id: str) -> int:
    """The on-chain id of the wallet's campaign, named by its id here (the draft's) or its
    on-chain id; someone else's campaign is a 404, as everywhere."""
    if campaign_id.isdigit():
        owner = session.execute(
            text(
                "SELECT advertiser FROM campaigns_onchain"
                " WHERE chain_id = :chain AND campaign_id = :id"
            ),
            {"chain": chain_id, "id": int(campaign_id)},
        ).scalar()
        if owner is None or owner.lower() != wallet.lower():
            raise NotFound(f"you have no campaign {campaign_id!r}")
        return int(campaign_id)
    draft = own_campaign(session, wallet, campaign_id)
    return draft.onchain_id if draft.onchain_id is not None else -1  # not on-chain: no events


def _admin(settings: Any, wallet: str) -> None:
    if wallet.lower() not in {admin.lower() for admin in settings.analytics_admin_wallets}:
        raise Forbidden("network analytics are for the network's admin wallets", code="not_admin")


def _report(
    session: Session,
    chain_id: int,
    scope: Scope,
    found: Span,
    group: Group,
    tops: tuple[str, ...],
    fmt: str,
) -> Any:
    body = service.report(session, chain_id, scope, found, group, tops)
    if fmt == "csv":
        series = [{**point, "bucket": point["bucket"].isoformat()} for point in body["series"]]
        return _csv(series, ("bucket",))
    return body


def _ivt(
    session: Session,
    chain_id: int,
    scope: Scope,
    found: Span,
    by: tuple[Dimension, ...],
    fmt: str,
) -> Any:
    body = service.ivt_report(session, chain_id, scope, found, by)
    if fmt == "csv":
        return _csv(body["rows"], by)
    return body


FIGURES = (
    "impressions",
    "verified_impressions",
    "clicks",
    "verified_clicks",
    "ctr_bps",
    "spend",
    "earnings",
    "ivt_events",
    "ivt_rate_bps",
)


def _csv(rows: list[dict[str, Any]], lead: tuple[str, ...]) -> Response:
    """One line per point or row, the reasons as columns; a header row even when empty."""
    header = [*lead, *FIGURES, *(f"ivt_{r}" for r in (*REASONS, "other")), "x402_payments"]
    header.append("x402_revenue")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        reasons = row["ivt_by_reason"]
        writer.writerow(
            [
                *(row[k] for k in lead),
                *(row[k] for k in FIGURES),
                *(reasons.get(r, {}).get("events", 0) for r in (*REASONS, "other")),
                row["x402_payments"],
                row["x402_revenue"],
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="analytics.csv"'},
    )


@router.get("/publisher", response_model=Report, responses=CSV)
def publisher(
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    group: GroupQ = "day",
    format: Format = "json",
) -> Any:
    """The signed-in publisher's traffic, spend on its slots and earnings; top campaigns and
    slots."""
    found = span(start, end, group)
    scope = Scope(publisher=wallet)
    return _report(session, settings.chain_id, scope, found, group, ("campaigns", "slots"), format)


@router.get("/publisher/ivt", response_model=IvtReport, responses=CSV)
def publisher_ivt(
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> Any:
    """The signed-in publisher's invalid traffic by reason, per slot."""
    found = span(start, end, "day")
    scope = Scope(publisher=wallet)
    return _ivt(session, settings.chain_id, scope, found, ("publisher", "slot_id"), format)


@router.get("/campaigns/{campaign_id}", response_model=Report, responses=CSV)
def campaign(
    campaign_id: str,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    group: GroupQ = "day",
    format: Format = "json",
) -> Any:
    """One of the signed-in advertiser's campaigns (its id here or on-chain); top publishers
    and slots."""
    found = span(start, end, group)
    scope = Scope(campaign_id=_campaign(session, settings.chain_id, wallet, campaign_id))
    tops = ("publishers", "slots")
    return _report(session, settings.chain_id, scope, found, group, tops, format)


@router.get("/campaigns/{campaign_id}/ivt", response_model=IvtReport, responses=CSV)
def campaign_ivt(
    campaign_id: str,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> Any:
    """Invalid traffic on one of the advertiser's campaigns by reason, per publisher."""
    found = span(start, end, "day")
    scope = Scope(campaign_id=_campaign(session, settings.chain_id, wallet, campaign_id))
    return _ivt(session, settings.chain_id, scope, found, ("publisher",), format)


@router.get("/network", response_model=Report, responses=CSV)
def network(
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    group: GroupQ = "day",
    format: Format = "json",
) -> Any:
    """The whole network (admin wallets only); top campaigns, publishers and slots."""
    _admin(settings, wallet)
    found = span(start, end, group)
    tops = ("campaigns", "publishers", "slots")
    return _report(session, settings.chain_id, Scope(), found, group, tops, format)


@router.get("/network/ivt", response_model=IvtReport, responses=CSV)
def network_ivt(
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> Any:
    """Invalid traffic by reason, per publisher (admin wallets only)."""
    _admin(settings, wallet)
    found = span(start, end, "day")
    return _ivt(session, settings.chain_id, Scope(), found, ("publisher",), format)
