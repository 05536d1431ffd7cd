"""Pages: the publisher's dashboard. Overview, onboarding (connect → first ad served), sites
with domain verification and slots, earnings with the claim, analytics, settings. Every page
reads through the publisher services; forms and buttons change state through the JSON API.

    GET /publisher                → overview (no profile yet: onboarding)
    GET /publisher/sites/{id}     → one of the wallet's sites (someone else's: 404)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from api.analytics import service as analytics
from api.analytics.router import span as analytics_span
from api.analytics.schemas import EARNINGS_NOTE
from api.analytics.service import Scope
from api.campaigns.targeting import CATEGORIES
from api.core.chain import payment_token
from api.core.db import SessionDep
from api.core.errors import ApiError, NotFound
from api.core.settings import Settings
from api.deps import SettingsDep
from api.publishers import earnings, service, sites, slots
from api.publishers.models import PublisherProfile
from api.publishers.schemas import IntegrationCode, PublisherPublic, SitePublic, SlotPublic
from api.web.core import PageNotFound, PageWallet, page_of, render

router = APIRouter(include_in_schema=False)

ONBOARDING = "/publisher/onboarding"
LINKS = [
    ("/publisher", "Overview"),
    (ONBOARDING, "Onboarding"),
    ("/publisher/sites", "Sites"),
    ("/publisher/earnings", "Earnings"),
    ("/publisher/analytics", "Analytics"),
    ("/publisher/settings", "Settings"),
]
CATEGORY_OPTIONS = [("", "None")] + [
    (c, c.replace("_", " ").capitalize()) for c in sorted(CATEGORIES)
]
FORMATS = [("banner", "Banner"), ("native", "Native"), ("video", "Video")]
METHODS = [
    ("dns", "DNS TXT record"),
    ("meta", "Meta tag on the home page"),
    ("well_known", "File at /.well-known/buzzer.txt"),
]
FIRST_AD_WINDOW = timedelta(days=365)
Page = Annotated[int, Query(ge=1, le=10**6)]


def page(request: Request, name: str, context: dict[str, Any]) -> Response:
    return render(request, name, {"area_label": "Publisher", "area_links": LINKS, **context})


@dataclass(frozen=True)
class Token:
    """How a payment token reads on a page."""

    address: str
    symbol: str
    decimals: int


def token_of(settings: Settings, address: str) -> Token:
    if int(address, 16) == 0:
        return Token(address, "ETH", 18)
    usdc = payment_token(settings.chain_id, settings.payment_token)
    if address.lower() == usdc.lower():
        return Token(address, "USDC", 6)
    return Token(address, f"{address[:6]}…{address[-4:]} (atomic units)", 0)


def _profile(session: Session, wallet: str) -> PublisherProfile | None:
    return service.find_profile(session, wallet)


def _traffic(
    session: Session, chain_id: int, wallet: str, start: date, end: date
) -> dict[str, Any]:
    """The analytics totals of the publisher over whole days [start, end]."""
    found = analytics.span_of(start, end)
    return analytics.report(session, chain_id, Scope(publisher=wallet), found, "day", ())


def _today(settings: Settings) -> date:
    return datetime.fromtimestamp(settings.now(), UTC).date()


@router.get("/publisher")
def overview(
    request: Request, wallet: PageWallet, session: SessionDep, settings: SettingsDep
) -> Response:
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    me = service.read(session, settings.chain_id, wallet)
    own_sites = sites.list_sites(session, wallet)
    own_slots = slots.list_slots(session, wallet)
    summary = earnings.summary(session, settings, wallet).tokens
    today = _today(settings)
    week = _traffic(session, settings.chain_id, wallet, today - timedelta(days=6), today)
    return page(
        request,
        "publisher/overview.html",
        {
            "me": me,
            "sites": own_sites,
            "slot_count": len(own_slots),
            "earnings": [(token_of(settings, t.token), t) for t in summary],
            "week": week["totals"],
            "week_from": today - timedelta(days=6),
            "today": today,
        },
    )


@dataclass
class Step:
    key: str
    title: str
    done: bool


def _steps(
    me: PublisherPublic | None, main: SitePublic | None, has_slot: bool, served: bool
) -> list[Step]:
    steps = [
        Step("connect", "Connect your wallet", True),
        Step("profile", "Create your publisher profile", me is not None),
        Step("register", "Register on-chain", bool(me and me.onchain.registered)),
        Step("verify", "Verify your domain", bool(main and main.verified)),
        Step("slot", "Create an ad slot", has_slot),
        Step("code", "Put the integration code on your page", served),
        Step("served", "First ad served", served),
    ]
    return steps


@router.get("/publisher/onboarding")
def onboarding(
    request: Request, wallet: PageWallet, session: SessionDep, settings: SettingsDep
) -> Response:
    profile = _profile(session, wallet)
    me = service.read(session, settings.chain_id, wallet) if profile else None
    own_sites = sites.list_sites(session, wallet) if profile else []
    main = next((s for s in own_sites if s.main), None)
    own_slots = slots.list_slots(session, wallet) if profile else []
    guide = (
        service.domain_instructions(session, settings.jwt_secret, wallet)
        if profile and main and not main.verified
        else None
    )
    code: IntegrationCode | None = None
    if own_slots and me is not None:
        code = slots.integration(
            session, wallet, own_slots[0].slot_id, settings.public_url("/"), me.onchain.pub_id
        )
    served = False
    if profile is not None and own_slots:
        start = profile.created_at.date()
        seen = _traffic(session, settings.chain_id, wallet, start, start + FIRST_AD_WINDOW)
        served = seen["totals"]["impressions"] > 0
    steps = _steps(me, main, bool(own_slots), served)
    current = next((s.key for s in steps if not s.done), None)
    return page(
        request,
        "publisher/onboarding.html",
        {
            "me": me,
            "steps": steps,
            "current": current,
            "main": main,
            "guide": guide,
            "slot": own_slots[0] if own_slots else None,
            "code": code,
            "categories": CATEGORY_OPTIONS,
            "formats": FORMATS,
            "methods": METHODS,
            "suggested_pub_id": _suggested_pub_id(main.domain if main else ""),
        },
    )


def _suggested_pub_id(domain: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in domain.lower()).strip("-")
    return cleaned[:64] if len(cleaned) >= 3 else ""


@router.get("/publisher/sites")
def site_list(
    request: Request,
    wallet: PageWallet,
    session: SessionDep,
    settings: SettingsDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    own_sites = sites.list_sites(session, wallet)
    counts: dict[str | None, int] = {}
    for slot in slots.list_slots(session, wallet):
        counts[slot.site_id] = counts.get(slot.site_id, 0) + 1
    return page(
        request,
        "publisher/sites.html",
        {
            "sites": page_of(own_sites, page_number),
            "slot_counts": counts,
            "categories": CATEGORY_OPTIONS,
        },
    )


@router.get("/publisher/sites/{site_id}")
def site_detail(
    site_id: str,
    request: Request,
    wallet: PageWallet,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    try:
        site = sites.read(session, wallet, site_id)
    except NotFound:
        raise PageNotFound("You have no such site.") from None
    me = service.read(session, settings.chain_id, wallet)
    guide = service.domain_instructions(session, settings.jwt_secret, wallet, site_id)
    own = [s for s in slots.list_slots(session, wallet) if s.site_id == site.id]
    codes = {
        s.slot_id: slots.integration(
            session, wallet, s.slot_id, settings.public_url("/"), me.onchain.pub_id
        )
        for s in own
    }
    return page(
        request,
        "publisher/site.html",
        {
            "site": site,
            "me": me,
            "guide": guide,
            "slots": own,
            "codes": codes,
            "formats": FORMATS,
            "methods": METHODS,
        },
    )


@router.get("/publisher/earnings")
def earnings_page(
    request: Request,
    wallet: PageWallet,
    session: SessionDep,
    settings: SettingsDep,
    epochs_page: Page = 1,
    claims_page: Page = 1,
    claimed: bool = False,
) -> Response:
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    summary = earnings.summary(session, settings, wallet).tokens
    book = earnings.claims(session, settings, wallet)
    per_epoch = earnings.per_epoch(session, settings, wallet)
    named = {t.token for t in summary} | {e.token for e in per_epoch}
    named |= {c.token for c in book.claims} | {p.token for p in book.pending}
    named |= {p.token for p in book.pushes}
    tokens = {address: token_of(settings, address) for address in named}
    return page(
        request,
        "publisher/earnings.html",
        {
            "summary": summary,
            "tokens": tokens,
            "can_claim": any(t.claimable > 0 for t in summary),
            "pending": book.pending,
            "epochs": page_of(per_epoch, epochs_page),
            "claims": page_of(book.claims, claims_page),
            "pushes": book.pushes,
            "claimed": claimed,
            "now": int(settings.now()),
        },
    )


def _units(value: str | int, decimals: int = 6) -> Decimal:
    return Decimal(int(value)) / (Decimal(10) ** decimals)


@router.get("/publisher/analytics")
def analytics_page(
    request: Request,
    wallet: PageWallet,
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    group: Annotated[str, Query(max_length=10)] = "day",
) -> Response:
    group = "hour" if group == "hour" else "day"
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    today = _today(settings)
    start = start or (today - timedelta(days=6)).isoformat()
    end = end or today.isoformat()
    problem: ApiError | None = None
    report: dict[str, Any] | None = None
    try:
        found = analytics_span(start, end, "hour" if group == "hour" else "day")
        report = analytics.report(
            session,
            settings.chain_id,
            Scope(publisher=wallet),
            found,
            "hour" if group == "hour" else "day",
            ("slots",),
        )
    except ApiError as exc:
        problem = exc
    charts: list[tuple[str, list[tuple[str, Any]], str]] = []
    if report is not None:
        series = _filled(report, timedelta(hours=1) if group == "hour" else timedelta(days=1))
        fmt = "%Y-%m-%d %H:00" if group == "hour" else "%Y-%m-%d"

        def points(pick: Any) -> list[tuple[str, Any]]:
            return [(p["bucket"].strftime(fmt), pick(p)) for p in series]

        charts = [
            ("Impressions", points(lambda p: p["impressions"]), ""),
            ("Clicks", points(lambda p: p["clicks"]), ""),
            ("CTR", points(lambda p: Decimal(p["ctr_bps"]) / 100), " %"),
            ("Earnings (estimated)", points(lambda p: _units(p["earnings"])), " USDC"),
            ("Invalid traffic rate", points(lambda p: Decimal(p["ivt_rate_bps"]) / 100), " %"),
            ("x402 revenue", points(lambda p: _units(p["x402_revenue"])), " USDC"),
        ]
    return page(
        request,
        "publisher/analytics.html",
        {
            "start": start,
            "end": end,
            "group": group,
            "report": report,
            "charts": charts,
            "problem": problem,
            "problem_field": _problem_field(problem),
            "earnings_note": EARNINGS_NOTE,
        },
    )


NO_TRAFFIC = {
    "impressions": 0,
    "clicks": 0,
    "ctr_bps": 0,
    "earnings": "0",
    "ivt_rate_bps": 0,
    "x402_revenue": "0",
}


def _filled(report: dict[str, Any], step: timedelta) -> list[dict[str, Any]]:
    """The series with a zero point for every bucket without traffic, so the charts draw
    the whole range."""
    found = {point["bucket"]: point for point in report["series"]}
    points, at = [], report["from"]
    while at < report["to"]:
        points.append(found.get(at, {**NO_TRAFFIC, "bucket": at}))
        at += step
    return points


def _problem_field(problem: ApiError | None) -> str:
    if problem is None:
        return ""
    listed = problem.details.get("problems") or []
    if listed:
        return str(listed[0]["field"]).removeprefix("query.")
    return "to" if "`to`" in str(problem) or "range" in str(problem) else ""


@router.get("/publisher/settings")
def settings_page(
    request: Request, wallet: PageWallet, session: SessionDep, settings: SettingsDep
) -> Response:
    if _profile(session, wallet) is None:
        return RedirectResponse(ONBOARDING, 303)
    me = service.read(session, settings.chain_id, wallet)
    own_slots: list[SlotPublic] = slots.list_slots(session, wallet)
    return page(
        request,
        "publisher/settings.html",
        {"me": me, "slots": own_slots, "categories": CATEGORY_OPTIONS},
    )
