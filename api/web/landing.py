"""Pages: the public landing pages (home, publishers, advertisers, about) and the guide (how
x402 works here, the integration snippet, the ROI calculator, the FAQ). Every figure they
state comes from this deployment's settings or the contracts' defaults and floors below."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.core.settings import Settings
from api.publishers.slots import page_snippet
from api.web.core import render

router = APIRouter(include_in_schema=False)

HOUR = 3_600
DAY = 24 * HOUR

# The deploy script's defaults (scripts/_deploy.py) and the contracts' floors, which no
# deployment can go below (CampaignRegistry.MIN_EPOCH_LENGTH, PaymentEscrow.
# MIN_SETTLEMENT_GRACE, PublisherPayout.MIN_CHALLENGE_PERIOD, PaymentEscrow.MAX_FEE_BPS).
CONTRACT_TERMS = {
    "fee_bps": 1_500,
    "max_fee_bps": 5_000,
    "epoch_length": DAY,
    "min_epoch_length": HOUR,
    "max_epoch_length": 7 * DAY,
    "settlement_grace": 2 * DAY,
    "withdraw_delay": 3 * DAY,
    "challenge_period": 6 * HOUR,
    "min_challenge_period": HOUR,
    "max_payout_tokens": 16,
}

# What the integration preview shows: a 300×250 banner slot of a publisher registered as
# `my-site`, its snippet written by the same function as the integration route's.
SAMPLE_SLOT = {"slot_id": "slot_0123456789abcdef", "pub_id": "my-site", "format": "banner"}
SAMPLE_WIDTH, SAMPLE_HEIGHT = 300, 250


def duration(seconds: int) -> str:
    """A whole number of days, hours or minutes in words: 86400 → "24 hours"."""
    for size, unit in ((DAY, "day"), (HOUR, "hour"), (60, "minute")):
        # a day reads better as 24 hours
        if seconds >= size and seconds % size == 0 and (unit != "day" or seconds >= 2 * DAY):
            count = seconds // size
            return f"{count:,} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:,} seconds"


def live_epoch_length(request: Request) -> int | None:
    """This deployment's epoch length, once the indexer has seen the registry's clock."""
    serving = getattr(request.app.state, "serving", None)
    if serving is None:
        return None
    clock = serving.catalog.current().clock
    return int(clock.length) if clock is not None else None


def facts(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    live = live_epoch_length(request)
    terms = CONTRACT_TERMS
    return {
        **terms,
        "publisher_bps": 10_000 - terms["fee_bps"],
        "epoch_length": live or terms["epoch_length"],
        "epoch_is_live": live is not None,
        "ivt_hold": settings.ivt_hold_seconds,
        "ad_token_ttl": settings.ad_token_ttl_seconds,
        "frequency_cap": settings.frequency_cap,
        "receipt_ttl": settings.x402_receipt_ttl_seconds,
        "x402_timeout": settings.x402_max_timeout_seconds,
        "min_click_ms": settings.min_click_ms,
        "network_id": f"eip155:{settings.chain_id}",
        "api_base": settings.public_base_url,
    }


def sample_snippet(api_base: str) -> str:
    """The HTML snippet a publisher pastes, for `SAMPLE_SLOT`: the integration route's own."""
    slot = SAMPLE_SLOT
    return page_snippet(
        slot["slot_id"], slot["pub_id"], slot["format"], SAMPLE_WIDTH, SAMPLE_HEIGHT, api_base
    )


def page(request: Request, name: str, **context: Any) -> Response:
    return render(
        request, f"landing/{name}.html", {"facts": facts(request), "duration": duration, **context}
    )


@router.get("/")
def home(request: Request) -> Response:
    return page(request, "home")


@router.get("/publishers")
def publishers(request: Request) -> Response:
    return page(request, "publishers")


@router.get("/advertisers")
def advertisers(request: Request) -> Response:
    return page(request, "advertisers")


@router.get("/about")
def about(request: Request) -> Response:
    return page(request, "about")


@router.get("/guide")
def guide(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    return page(
        request,
        "guide",
        sample={**SAMPLE_SLOT, "width": SAMPLE_WIDTH, "height": SAMPLE_HEIGHT},
        snippet=sample_snippet(settings.public_base_url),
    )
