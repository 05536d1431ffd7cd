"""Pages: advertiser. Overview, campaigns, the campaign builder, a campaign's details,
analytics, billing and settings, read through the campaigns, analytics and settlement
services; every change goes through the JSON API from the page's script."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session, select

from api.analytics import service as analytics
from api.analytics.service import Scope
from api.campaigns import creatives, service
from api.campaigns.models import Creative
from api.campaigns.schemas import CampaignPublic
from api.campaigns.targeting import CATEGORIES, COUNTRIES, DEVICES
from api.core.chain import chain_time
from api.core.db import SessionDep
from api.core.errors import NotFound
from api.core.settings import Settings
from api.settlement.service import campaign_spend
from api.web.core import PageNotFound, PageWallet, page_of, render

router = APIRouter(include_in_schema=False)

LINKS = [
    ("/advertiser", "Overview"),
    ("/advertiser/campaigns", "Campaigns"),
    ("/advertiser/campaigns/new", "New campaign"),
    ("/advertiser/analytics", "Analytics"),
    ("/advertiser/billing", "Billing"),
    ("/advertiser/settings", "Settings"),
]
ZERO = service.ZERO
ANALYTICS_DAYS = 30


def _page(request: Request, name: str, context: dict[str, Any]) -> Response:
    return render(
        request,
        f"advertiser/{name}",
        {"area_label": "Advertiser", "area_links": LINKS, "decimals": decimals, **context},
    )


def decimals(token: str) -> int:
    """A campaign token's decimals: ETH's 18, else the network's USDC (6)."""
    return 18 if token == ZERO else 6


def symbol(token: str) -> str:
    return "ETH" if token == ZERO else "USDC"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _campaigns(request: Request, session: Session, wallet: str) -> list[CampaignPublic]:
    """The wallet's campaigns, newest first, with servability from the ad server's counters."""
    found = service.list_campaigns(session, _settings(request), wallet, request.app.state.redis)
    return list(reversed(found))


def _campaign(request: Request, session: Session, wallet: str, campaign_id: str) -> CampaignPublic:
    try:
        return service.read_campaign(
            session, _settings(request), wallet, campaign_id, request.app.state.redis
        )
    except NotFound:
        raise PageNotFound("You have no such campaign.") from None


def _onboarded(session: Session, wallet: str) -> bool:
    return service.find_advertiser(session, wallet) is not None


def _onboarding() -> Response:
    return RedirectResponse("/advertiser/onboarding", 303)


def _report(
    session: Session, settings: Settings, onchain_id: int | None, days: int = ANALYTICS_DAYS
) -> dict[str, Any]:
    """The campaign's analytics by day over the last `days` days (none before registration)."""
    today = datetime.now(UTC).date()
    span = analytics.span_of(today - timedelta(days=days - 1), today)
    scope = Scope(campaign_id=onchain_id if onchain_id is not None else -1)
    return analytics.report(session, settings.chain_id, scope, span, "day", ())


def _settled(session: Session, settings: Settings, campaign: CampaignPublic) -> int:
    if campaign.onchain_id is None:
        return 0
    return sum(
        s.charged or 0 for s in campaign_spend(session, settings.chain_id, campaign.onchain_id)
    )


@router.get("/advertiser/onboarding")
def onboarding(request: Request, wallet: PageWallet, session: SessionDep) -> Response:
    if _onboarded(session, wallet):
        return RedirectResponse("/advertiser", 303)
    return _page(request, "onboarding.html", {})


@router.get("/advertiser")
def overview(request: Request, wallet: PageWallet, session: SessionDep) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    settings = _settings(request)
    campaigns = _campaigns(request, session, wallet)
    balances: dict[str, int] = {}
    settled: dict[str, int] = {}
    for c in campaigns:
        balances[c.token] = balances.get(c.token, 0) + c.escrow_balance
        settled[c.token] = settled.get(c.token, 0) + _settled(session, settings, c)
    warnings = [c for c in campaigns if not c.servable and c.status != "ended"]
    return _page(
        request,
        "overview.html",
        {
            "profile": service.read_advertiser(session, wallet),
            "campaigns": campaigns,
            "balances": sorted(balances.items()),
            "settled": sorted(settled.items()),
            "active": sum(1 for c in campaigns if c.status == "active"),
            "serving": sum(1 for c in campaigns if c.servable),
            "warnings": warnings[:10],
            "symbol": symbol,
        },
    )


@router.get("/advertiser/campaigns")
def campaigns(request: Request, wallet: PageWallet, session: SessionDep, page: int = 1) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    found = _campaigns(request, session, wallet)
    return _page(request, "campaigns.html", {"p": page_of(found, page), "symbol": symbol})


@router.get("/advertiser/campaigns/new")
def builder(request: Request, wallet: PageWallet, session: SessionDep) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    return _page(
        request,
        "builder.html",
        {
            "countries": sorted(COUNTRIES),
            "categories": sorted(CATEGORIES),
            "devices": sorted(DEVICES),
            "banner_sizes": sorted(creatives.BANNER_SIZES),
            "image_limit": creatives.IMAGE_LIMIT,
            "video_limit": creatives.VIDEO_LIMIT,
        },
    )


@router.get("/advertiser/campaigns/{campaign_id}")
def campaign(
    request: Request, campaign_id: str, wallet: PageWallet, session: SessionDep
) -> Response:
    if not _onboarded(session, wallet):
        raise PageNotFound("You have no such campaign.")
    settings = _settings(request)
    found = _campaign(request, session, wallet, campaign_id)
    report = _report(session, settings, found.onchain_id)
    unit = decimals(found.token)
    return _page(
        request,
        "campaign.html",
        {
            "c": found,
            "creatives": _creatives(session, found.id),
            "settled": _settled(session, settings, found),
            "report": report,
            "impressions": [
                (p["bucket"].strftime("%b %d"), p["verified_impressions"]) for p in report["series"]
            ],
            # whole cents (of a dollar or of an ETH), exact and readable in the chart's labels
            "spend_points": [
                (p["bucket"].strftime("%b %d"), int(p["spend"]) * 100 // 10**unit)
                for p in report["series"]
            ],
            "unit": unit,
            "symbol": symbol(found.token),
            "banner_sizes": sorted(creatives.BANNER_SIZES),
        },
    )


def _creatives(session: Session, campaign_id: str) -> list[Creative]:
    query = select(Creative).where(Creative.campaign_id == uuid.UUID(campaign_id))
    return list(session.exec(query.order_by(Creative.created_at)))  # type: ignore[arg-type]


@router.get("/advertiser/analytics")
def analytics_page(
    request: Request, wallet: PageWallet, session: SessionDep, page: int = 1, days: int = 30
) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    settings = _settings(request)
    days = min(max(days, 1), 366)
    rows = []
    for c in _campaigns(request, session, wallet):
        rows.append({"c": c, "m": _report(session, settings, c.onchain_id, days)["totals"]})
    totals: dict[str, Any] = {
        key: sum(int(r["m"][key]) for r in rows)
        for key in (
            "verified_impressions",
            "verified_clicks",
            "impressions",
            "clicks",
            "ivt_events",
        )
    }
    spend: dict[str, int] = {}
    for r in rows:
        spend[r["c"].token] = spend.get(r["c"].token, 0) + int(r["m"]["spend"])
    events = totals["impressions"] + totals["clicks"]
    return _page(
        request,
        "analytics.html",
        {
            "p": page_of(rows, page),
            "days": days,
            "totals": totals,
            "total_spend": sorted(spend.items()),
            "ctr_bps": totals["verified_clicks"] * 10_000 // totals["verified_impressions"]
            if totals["verified_impressions"]
            else 0,
            "ivt_bps": totals["ivt_events"] * 10_000 // events if events else 0,
            "symbol": symbol,
        },
    )


@router.get("/advertiser/billing")
def billing(request: Request, wallet: PageWallet, session: SessionDep, page: int = 1) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    registered = [c for c in _campaigns(request, session, wallet) if c.onchain_id is not None]
    return _page(
        request,
        "billing.html",
        {
            "p": page_of(registered, page, size=10),
            # a withdraw unlocks by the chain's clock, which can run ahead of ours
            "now": datetime.fromtimestamp(chain_time(_settings(request).rpc_url), UTC),
            "symbol": symbol,
        },
    )


@router.get("/advertiser/settings")
def settings_page(request: Request, wallet: PageWallet, session: SessionDep) -> Response:
    if not _onboarded(session, wallet):
        return _onboarding()
    return _page(request, "settings.html", {"profile": service.read_advertiser(session, wallet)})
