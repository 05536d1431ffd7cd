"""`GET /x402/ad`: the endpoint sites call for every ad slot.

In order: validate → a request carrying an x402 payment is settled and answered with an
access receipt → a person gets the best matching funded campaign → an agent, a visitor who
asked for no ads, or a request nothing fills gets an x402 402 where the publisher set a
price for that case → otherwise 204."""

from __future__ import annotations

import logging
import time
import uuid
from enum import StrEnum
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from x402.schemas import ResourceInfo

from api.ads import payments as x402
from api.ads import tokens
from api.ads.catalog import Catalog, SlotInfo
from api.ads.matching import AdRequest, Budgets, Candidate, ample_budget, choose
from api.ads.traffic import device_of, is_agent, today, visitor_key
from api.campaigns.targeting import COUNTRIES
from api.core.chain import deployment
from api.core.errors import ApiError, Forbidden, NotFound, Unavailable, Unprocessable, error_body
from api.core.settings import Settings

log = logging.getLogger("api.ads")
router = APIRouter(tags=["ads"])

REDIS_RETRY_SECONDS = 5.0


class AdFormat(StrEnum):
    banner = "banner"
    native = "native"
    video = "video"


class Device(StrEnum):
    desktop = "desktop"
    mobile = "mobile"
    tablet = "tablet"


class Ad(BaseModel):
    """The seed's ad JSON."""

    ad_id: str
    campaign_id: int
    creative_url: str
    format: AdFormat
    width: int
    height: int
    click_url: str
    impression_url: str


class Ads(BaseModel):
    ads: list[Ad]


class AccessReceipt(BaseModel):
    receipt: str = Field(description="signed; present it to show this slot was paid for")
    valid_until: str
    tx_hash: str
    payer: str
    amount: int


class PaymentRequiredBody(BaseModel):
    """The 402 body: our error shape plus the seed's payment fields. The x402 terms are
    in the `PAYMENT-REQUIRED` header (base64 JSON, `x402Version: 2`)."""

    error: dict[str, Any]
    payment_address: str
    amount: int
    token: str
    network: str
    x402_payment_url: str


class RedisGate:
    """After Redis fails once, skip it for a few seconds instead of waiting on every
    request for a connection that will not come."""

    def __init__(self) -> None:
        self.retry_at = 0.0

    def open(self) -> bool:
        return time.monotonic() >= self.retry_at

    def failed(self) -> None:
        self.retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning("redis unreachable: serving from the snapshot without reservations")


class Serving:
    """What the endpoint needs, built once per app."""

    def __init__(
        self, settings: Settings, catalog: Catalog, cache: redis.Redis, payments: Any
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cache = cache
        self.budgets = Budgets(cache)
        self.gate = RedisGate()
        self.payments: x402.Payments | None = payments
        self._asset: str | None = None

    @property
    def asset(self) -> str:
        if self._asset is None:
            self._asset = self.settings.payment_token or deployment(self.settings.chain_id).address(
                "TestUSDC"
            )
        return self._asset


def _serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


@router.get(
    "/x402/ad",
    response_model=Ad | Ads | AccessReceipt,
    responses={
        204: {"description": "no ad and no price for this request"},
        402: {"model": PaymentRequiredBody, "description": "pay by x402 (PAYMENT-REQUIRED)"},
    },
)
async def serve_ad(
    request: Request,
    pub_id: Annotated[str, Query(min_length=1, max_length=64)],
    slot_id: Annotated[str, Query(min_length=1, max_length=64)],
    format: AdFormat,
    geo: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166-1")] = None,
    device: Device | None = None,
    ad_free: bool = False,
    n: Annotated[int, Query(ge=1, le=5, description="how many ads (1: one ad object)")] = 1,
) -> Response:
    serving = _serving(request)
    if geo is not None and geo not in COUNTRIES:
        raise Unprocessable(f"unknown country code {geo!r}", {"field": "geo"})
    slot = serving.catalog.current().slots.get(slot_id)
    if slot is None:
        slot = await run_in_threadpool(serving.catalog.slot, slot_id)
    _check_slot(slot, pub_id, slot_id, format)
    assert slot is not None
    user_agent = request.headers.get("user-agent")
    agent = is_agent(user_agent)
    case = "ad_free" if ad_free else "agent" if agent else "no_fill"

    v2 = request.headers.get("payment-signature")
    v1 = request.headers.get("x-payment")
    if v2 or v1:
        return await _paid(serving, request, slot, case, v2 or v1 or "", 2 if v2 else 1)

    if not agent and not ad_free:
        ad_request = AdRequest(
            format=format.value,
            width=slot.width,
            height=slot.height,
            geo=geo or request.headers.get("cf-ipcountry"),
            device=(device.value if device else device_of(user_agent)),
            category=slot.category,
            quality=slot.quality_score,
            now=time.time(),
        )
        client = request.client.host if request.client else None
        visitor = visitor_key(serving.settings.jwt_secret, client, user_agent, today())
        ads = _fill(serving, request, slot, ad_request, visitor, n)
        if ads:
            body = ads[0] if n == 1 else Ads(ads=ads)
            return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})

    price = getattr(slot, f"{case}_price")
    if price:
        return _payment_required(serving, request, slot, case, price)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


def _check_slot(slot: SlotInfo | None, pub_id: str, slot_id: str, format: AdFormat) -> None:
    if slot is None:
        raise NotFound(f"no slot {slot_id!r}", code="unknown_slot")
    if slot.pub_id is None:
        raise Forbidden("this slot's publisher is not registered on-chain", code="unregistered")
    if slot.pub_id != pub_id:
        raise NotFound(f"publisher {pub_id!r} has no slot {slot_id!r}", code="unknown_slot")
    if slot.suspended:
        raise Forbidden(f"publisher {pub_id!r} is suspended", code="publisher_suspended")
    if slot.status != "active":
        raise Forbidden(f"slot {slot_id!r} is paused", code="slot_paused")
    if format.value != slot.format:
        raise Unprocessable(
            f"slot {slot_id!r} shows {slot.format} ads, not {format.value}", {"field": "format"}
        )


def _fill(
    serving: Serving,
    request: Request,
    slot: SlotInfo,
    ad_request: AdRequest,
    visitor: str,
    n: int,
) -> list[Ad]:
    day = today()
    cap = serving.settings.frequency_cap
    use_redis = serving.gate.open()
    snapshot = serving.catalog.current()
    seen: dict[int, int] = {}
    if use_redis:
        try:
            seen = _seen_today(serving.cache, visitor, day)
        except redis.RedisError:
            serving.gate.failed()
            use_redis = False
    reserved: list[Candidate] = []

    def take(candidate: Candidate) -> bool:
        nonlocal use_redis
        if seen.get(candidate.campaign_id, 0) >= cap:
            return False
        if use_redis:
            try:
                ok = serving.budgets.reserve(candidate, day)
            except redis.RedisError:
                serving.gate.failed()
                use_redis = False
            else:
                if ok:
                    reserved.append(candidate)
                return ok
        return ample_budget(candidate, 0)

    chosen = choose(snapshot.index, ad_request, take, n)
    if use_redis and chosen:
        try:
            _count_views(serving.cache, visitor, day, chosen)
        except redis.RedisError:
            serving.gate.failed()
    return [_ad(serving, request, slot, c, ad_request, visitor) for c in chosen]


def _freq_key(visitor: str, day: str) -> str:
    return f"buzzer:ads:freq:{visitor}:{day}"


def _seen_today(cache: redis.Redis, visitor: str, day: str) -> dict[int, int]:
    raw: dict[str, str] = cache.hgetall(_freq_key(visitor, day))  # type: ignore[assignment]
    return {int(k): int(v) for k, v in raw.items()}


def _count_views(cache: redis.Redis, visitor: str, day: str, chosen: list[Candidate]) -> None:
    pipe = cache.pipeline()
    for candidate in chosen:
        pipe.hincrby(_freq_key(visitor, day), str(candidate.campaign_id), 1)
    pipe.expire(_freq_key(visitor, day), 2 * 86_400)
    pipe.execute()


def _ad(
    serving: Serving,
    request: Request,
    slot: SlotInfo,
    candidate: Candidate,
    ad_request: AdRequest,
    visitor: str,
) -> Ad:
    creative = candidate.creative_for(slot.width, slot.height)
    assert creative is not None  # the index only holds campaigns with a fitting creative
    serve_id = uuid.uuid4().hex
    now = int(time.time())
    base = str(request.base_url).rstrip("/")

    def token(kind: str) -> str:
        return tokens.sign(
            serving.settings.jwt_secret,
            tokens.AdEvent(
                kind=kind,
                serve_id=serve_id,
                campaign_id=candidate.campaign_id,
                slot_id=slot.slot_id,
                publisher=slot.wallet,
                visitor=visitor,
                bid_model=candidate.bid_model,
                price=candidate.price,
                token=candidate.token,
                issued_at=now,
                expires_at=now + serving.settings.ad_token_ttl_seconds,
            ),
        )

    return Ad(
        ad_id=serve_id,
        campaign_id=candidate.campaign_id,
        creative_url=f"{base}/creatives/{creative.cid}",
        format=AdFormat(candidate.format),
        width=creative.width or slot.width,
        height=creative.height or slot.height,
        click_url=f"{base}/track/click/{token('click')}",
        impression_url=f"{base}/track/impression?token={token('imp')}",
    )


def _terms(serving: Serving, slot: SlotInfo, price: int) -> Any:
    assert slot.payment_wallet is not None
    return x402.requirements(
        chain_id=serving.settings.chain_id,
        asset=serving.asset,
        asset_name=serving.settings.x402_asset_name,
        asset_version=serving.settings.x402_asset_version,
        pay_to=slot.payment_wallet,
        amount=price,
        max_timeout_seconds=serving.settings.x402_max_timeout_seconds,
    )


CASE_TEXT = {
    "agent": "automated clients pay for this slot's content by x402",
    "ad_free": "an ad-free view of this slot is paid by x402",
    "no_fill": "no ad fills this slot now; it can be paid by x402",
}


def _payment_required(
    serving: Serving, request: Request, slot: SlotInfo, case: str, price: int
) -> Response:
    terms = _terms(serving, slot, price)
    url = str(request.url)
    header = _required_header(request, terms, case, "payment required")
    body = error_body("payment_required", CASE_TEXT[case], {"case": case})
    body.update(
        payment_address=terms.pay_to,
        amount=price,
        token=terms.asset,
        network=terms.network,
        x402_payment_url=url,
    )
    return JSONResponse(
        body, status_code=402, headers={"PAYMENT-REQUIRED": header, "Cache-Control": "no-store"}
    )


def _required_header(request: Request, terms: Any, case: str, error: str) -> str:
    resource = ResourceInfo(
        url=str(request.url), description=CASE_TEXT[case], mime_type="application/json"
    )
    return x402.payment_required_header(terms, resource, error=error)


async def _paid(
    serving: Serving, request: Request, slot: SlotInfo, case: str, header: str, version: int
) -> Response:
    price = getattr(slot, f"{case}_price")
    if not price:
        raise ApiError(
            f"slot {slot.slot_id!r} takes no payment for this request ({case})",
            status=400,
            code="no_price",
        )
    if serving.payments is None:
        raise Unavailable("x402 payments are not configured on this server", code="no_payments")
    terms = _terms(serving, slot, price)
    try:
        paid = await serving.payments.pay(header, version, terms, slot_key=f"{slot.slot_id}:{case}")
    except x402.PaymentRejected as exc:  # the terms again, so the client can pay anew
        exc.headers = {
            **exc.headers,
            "PAYMENT-REQUIRED": _required_header(request, terms, case, exc.code),
        }
        raise
    body = AccessReceipt(
        receipt=paid.receipt,
        valid_until=paid.valid_until.isoformat(),
        tx_hash=paid.tx_hash,
        payer=paid.payer,
        amount=paid.amount,
    )
    return JSONResponse(body.model_dump(), headers={**paid.headers, "Cache-Control": "no-store"})
