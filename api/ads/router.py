"""`GET /x402/ad`: the endpoint sites call for every ad slot.

In order: validate → a request presenting a receipt (`X-Buzzer-Receipt`) for this slot and
case is answered with the access result again, without paying, until the receipt's
`valid_until` → a request carrying an x402 payment is settled and answered with an access
receipt → a person gets the best matching funded campaign → an agent, a visitor who asked
for no ads, or a request nothing fills gets an x402 402 where the publisher set a price for
that case → otherwise 204.

A receipt that is forged, tampered with, expired, or for another slot, page (`page`) or case
is answered 402 with its code (`invalid_receipt`, `receipt_expired`, `other_slot`,
`other_page`, `other_case`) in the error shape and the x402 terms in `PAYMENT-REQUIRED`, so
the client can pay anew (403 with the same code where the slot takes no payment for the
case). Receipts are checked by anyone with `GET /.well-known/jwks.json` or by
`POST /x402/receipts/verify` (api/ads/receipts.py shows the local check)."""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec
import redis
import redis.asyncio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from x402.schemas import ResourceInfo

from api.ads import payments as x402
from api.ads import tokens
from api.ads.catalog import Catalog, SlotInfo
from api.ads.leases import Leases
from api.ads.matching import AdRequest, Candidate, Epoch, Serve, ample_budget, ranked
from api.ads.receipts import RECEIPT_HEADER, Grant, ReceiptKeys, ReceiptRefused
from api.ads.traffic import device_of, is_agent, today, visitor_key
from api.campaigns.targeting import COUNTRIES
from api.core.chain import payment_token
from api.core.clientip import client_ip
from api.core.errors import (
    ApiError,
    ErrorBody,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
    error_body,
)
from api.core.ratelimit import LocalLimiter
from api.core.routes import DirectRoute
from api.core.routes import query as query_of
from api.core.settings import Settings
from observe import metrics

log = logging.getLogger("api.ads")
router = APIRouter(tags=["ads"], route_class=DirectRoute)

REDIS_RETRY_SECONDS = 5.0
DECISIONS = metrics.Labelled(metrics.AD_DECISIONS)
NO_STORE = {"Cache-Control": "no-store"}
# an ad's JSON as `JSONResponse` writes it (compact, UTF-8, the same escapes) at a twentieth
# of its cost: its values are strings and integers
_ENCODE_AD = msgspec.json.Encoder().encode


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


class ReceiptCheck(BaseModel):
    """A receipt a publisher's server was shown, and where it was shown."""

    receipt: str = Field(min_length=1, max_length=4096, description="the JWT an agent presented")
    slot_id: str = Field(min_length=1, max_length=64, description="the slot it should pay for")
    page: str | None = Field(
        default=None, max_length=2048, description="the page it is presented on, if any"
    )


class ReceiptValid(BaseModel):
    """What a valid receipt grants."""

    valid: bool = True
    payer: str
    slot_id: str
    case: str | None = Field(description="agent, ad_free or no_fill")
    page: str | None = Field(description="the page it is bound to (None: the whole slot)")
    valid_until: str
    tx_hash: str
    amount: int = Field(description="atomic units of the payment token")


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
        self,
        settings: Settings,
        catalog: Catalog,
        cache: redis.asyncio.Redis,
        payments: Any,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cache = cache
        self.leases = Leases(
            cache, settings.tracking_shards, clock=lambda: self.clock(), current=self._current
        )
        self.gate = RedisGate()
        self.limiter = LocalLimiter(lambda: settings.rate_limit_ad_per_minute)
        self.payments: x402.Payments | None = payments
        self.receipts = ReceiptKeys.from_settings(settings)
        self.clock = settings.now  # when a request is decided: flight dates and the escrow epoch
        self._asset: str | None = None

    def _current(self, campaign_id: int, now: float) -> tuple[Candidate, Epoch] | None:
        """A campaign as the catalog has it now and the escrow epoch at `now`: what a lease
        granted outside a request is for."""
        snapshot = self.catalog.current()
        candidate = snapshot.campaigns.get(campaign_id)
        if candidate is None or snapshot.clock is None:
            return None
        if candidate.ends_at is not None and now >= candidate.ends_at:
            return None
        return candidate, snapshot.clock.at(now)

    @property
    def asset(self) -> str:
        if self._asset is None:
            self._asset = payment_token(self.settings.chain_id, self.settings.payment_token)
        return self._asset


def _serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


class AdQuery(BaseModel):
    """The query of `/x402/ad`. Parsed by hand on the hot path (FastAPI's per-parameter
    machinery costs a third of a fast request); the rules are these, and the errors have
    the same shape as every other validation error."""

    pub_id: str = Field(min_length=1, max_length=64, description="the publisher's on-chain id")
    slot_id: str = Field(min_length=1, max_length=64)
    format: AdFormat
    geo: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1")
    device: Device | None = None
    ad_free: bool = Field(default=False, description="the visitor pays to see no ad")
    n: int = Field(default=1, ge=1, le=5, description="how many ads (1: one ad object)")
    page: str | None = Field(
        default=None,
        max_length=2048,
        description="the http(s) URL of the page the slot is on: a receipt paid for it is "
        "bound to it",
    )


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
FORMATS = {f.value for f in AdFormat}
DEVICES = {d.value for d in Device}


class Query(NamedTuple):
    """A valid `AdQuery`, as `_query` returns it (a tuple costs a tenth of a model)."""

    pub_id: str
    slot_id: str
    format: AdFormat
    geo: str | None
    device: Device | None
    ad_free: bool
    n: int
    page: str | None


def _query(request: Request) -> Query:
    q = query_of(request)
    problems = []

    def problem(name: str, text: str) -> None:
        problems.append({"field": f"query.{name}", "problem": text})

    ids = {}
    for name in ("pub_id", "slot_id"):
        value = q.get(name)
        if not value or len(value) > 64:
            problem(name, "required, 1 to 64 characters")
        ids[name] = value or ""
    format_ = q.get("format")
    if format_ not in FORMATS:
        problem("format", f"one of {', '.join(sorted(FORMATS))}")
    geo = q.get("geo") or None
    if geo is not None and geo not in COUNTRIES:
        problem("geo", "an ISO 3166-1 alpha-2 country code, upper case")
    device = q.get("device") or None
    if device is not None and device not in DEVICES:
        problem("device", f"one of {', '.join(sorted(DEVICES))}")
    ad_free = (q.get("ad_free") or "0").lower()
    if ad_free not in TRUE | FALSE:
        problem("ad_free", "a boolean (1 or 0)")
    count = q.get("n") or "1"
    if not count.isdigit() or not 1 <= int(count) <= 5:
        problem("n", "an integer from 1 to 5")
    page = q.get("page") or None
    if page is not None and not _is_page_url(page):
        problem("page", "an http(s) URL of at most 2048 characters")
    if problems:
        raise Unprocessable("the request is not valid", {"problems": problems})
    return Query(
        pub_id=ids["pub_id"],
        slot_id=ids["slot_id"],
        format=AdFormat(format_ or ""),
        geo=geo,
        device=Device(device) if device else None,
        ad_free=ad_free in TRUE,
        n=int(count),
        page=page,
    )


def _is_page_url(value: str) -> bool:
    if len(value) > 2048 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # a bad port or IPv6 literal
        return False


def _query_doc() -> list[dict[str, Any]]:
    schema = AdQuery.model_json_schema()
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return [
        {"name": name, "in": "query", "required": name in schema["required"], "schema": inline(p)}
        for name, p in schema["properties"].items()
    ]


QUERY_DOC = _query_doc()
RECEIPT_DOC = {
    "name": RECEIPT_HEADER,
    "in": "header",
    "required": False,
    "description": "a receipt this slot's payment was answered with: the access result again, "
    "without paying, until its valid_until",
    "schema": {"type": "string", "maxLength": 4096},
}


@router.get(
    "/x402/ad",
    response_model=Ad | Ads | AccessReceipt,
    responses={
        204: {"description": "no ad and no price for this request"},
        402: {"model": PaymentRequiredBody, "description": "pay by x402 (PAYMENT-REQUIRED)"},
    },
    openapi_extra={"parameters": [*QUERY_DOC, RECEIPT_DOC]},
)
async def serve_ad(request: Request) -> Response:
    started = time.perf_counter()
    outcome = "refused"
    try:
        outcome, response = await _decide(request)
        return response
    finally:
        DECISIONS(outcome).inc()
        metrics.AD_DECISION_SECONDS.observe(time.perf_counter() - started)


async def _decide(request: Request) -> tuple[str, Response]:
    """The answer to `/x402/ad` and its outcome for the metrics."""
    serving = _serving(request)
    ip = client_ip(request, serving.settings)
    serving.limiter.hit(ip)
    query = _query(request)
    pub_id, slot_id, format, geo = query.pub_id, query.slot_id, query.format, query.geo
    device, ad_free, n = query.device, query.ad_free, query.n
    slot = serving.catalog.current().slots.get(slot_id)
    if slot is None:
        slot = await run_in_threadpool(serving.catalog.slot, slot_id)
    _check_slot(slot, pub_id, slot_id, format)
    assert slot is not None
    user_agent = request.headers.get("user-agent")
    agent = is_agent(user_agent)
    case = "ad_free" if ad_free else "agent" if agent else "no_fill"

    receipt = request.headers.get(RECEIPT_HEADER)
    if receipt:
        return "receipt", _presented(serving, request, slot, case, receipt, query.page)
    v2 = request.headers.get("payment-signature")
    v1 = request.headers.get("x-payment")
    if v2 or v1:
        version = 2 if v2 else 1
        paid = await _paid(serving, request, slot, case, v2 or v1 or "", version, query.page)
        return "paid", paid

    if not agent and not ad_free:
        ad_request = AdRequest(
            format=format.value,
            width=slot.width,
            height=slot.height,
            geo=geo or request.headers.get("cf-ipcountry"),
            device=(device.value if device else device_of(user_agent)),
            category=slot.category,
            quality=slot.quality_score,
            now=serving.clock(),
            verified=slot.verified,
        )
        visitor = visitor_key(serving.settings.jwt_secret, ip, user_agent, today())
        ads = await _fill(serving, request, slot, ad_request, visitor, n)
        if ads:
            body = ads[0] if n == 1 else {"ads": ads}
            content = _ENCODE_AD(body)
            return "ad", Response(content, media_type="application/json", headers=NO_STORE)

    price = getattr(slot, f"{case}_price")
    if price:
        return "payment_required", _payment_required(serving, request, slot, case, price)
    return "empty", Response(status_code=204, headers={"Cache-Control": "no-store"})


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


async def _fill(
    serving: Serving,
    request: Request,
    slot: SlotInfo,
    ad_request: AdRequest,
    visitor: str,
    n: int,
) -> list[dict[str, Any]]:
    snapshot = serving.catalog.current()
    if snapshot.clock is None:  # the registry's epochs are not indexed yet: no max to hold to
        return []
    now = ad_request.now
    epoch = snapshot.clock.at(now)
    day = today()
    cap = serving.settings.frequency_cap
    ttl = serving.settings.ad_token_ttl_seconds
    leases, frequency = serving.leases, serving.leases.frequency
    chosen: list[tuple[Candidate, Serve]] = []
    for candidate in ranked(snapshot.index, ad_request):
        if cap:
            if not frequency.allows(candidate.campaign_id, visitor, cap, day):
                continue
            frequency.add(candidate.campaign_id, visitor, day)  # before any wait: counted once
        # from this worker's lease (no round trip), else a grant, else without Redis
        serve = leases.take(candidate, epoch, now, ttl)
        if serve is None:
            if serving.gate.open():
                try:
                    serve = await leases.fill(candidate, epoch, now, ttl)
                except (redis.RedisError, OSError):
                    serving.gate.failed()
                    serve = _unreserved(candidate, epoch, now, ttl)
            else:
                serve = _unreserved(candidate, epoch, now, ttl)
        if serve is None:
            if cap:
                frequency.add(candidate.campaign_id, visitor, day, -1)
        else:
            chosen.append((candidate, serve))
            if len(chosen) >= n:
                break
    return [_ad(serving, request, slot, c, visitor, serve) for c, serve in chosen]


def _unreserved(candidate: Candidate, epoch: Epoch, now: float, ttl: int) -> Serve | None:
    """Redis unreachable: a serve nobody recorded (its events are `not_served`), for a
    campaign far from its limits only."""
    return Serve.new(ttl, now) if ample_budget(candidate, epoch) else None


def _ad(
    serving: Serving,
    request: Request,
    slot: SlotInfo,
    candidate: Candidate,
    visitor: str,
    serve: Serve,
) -> dict[str, Any]:
    """The seed's ad JSON, with the impression and click URLs signed for this serve."""
    creative = candidate.creative_for(slot.width, slot.height)
    assert creative is not None  # the index only holds campaigns with a fitting creative
    serve_id = serve.serve_id
    now = int(serving.clock())
    base = serving.settings.public_base_url  # never the request's Host header
    claims = {
        "serve_id": serve_id,
        "campaign_id": candidate.campaign_id,
        "slot_id": slot.slot_id,
        "publisher": slot.wallet,
        "visitor": visitor,
        "bid_model": candidate.bid_model,
        "price": candidate.price,
        "bid": candidate.bid,
        "token": candidate.token,
        "issued_at": now,
        "expires_at": serve.expires_at,
    }
    secret = serving.settings.jwt_secret
    impression, click = tokens.sign_each(secret, ("imp", "click"), claims)
    return {
        "ad_id": serve_id,
        "campaign_id": candidate.campaign_id,
        "creative_url": f"{base}/creatives/{creative.cid}",
        "format": candidate.format,
        "width": creative.width or slot.width,
        "height": creative.height or slot.height,
        "click_url": f"{base}/track/click/{click}",
        "impression_url": f"{base}/track/impression?token={impression}",
    }


def _terms(serving: Serving, slot: SlotInfo, price: int) -> Any:
    assert slot.payment_wallet is not None
    settings = serving.settings
    return _cached_terms(
        settings.chain_id,
        serving.asset,
        settings.x402_asset_name,
        settings.x402_asset_version,
        slot.payment_wallet,
        price,
        settings.x402_max_timeout_seconds,
    )


@lru_cache(maxsize=8192)
def _cached_terms(
    chain_id: int,
    asset: str,
    name: str,
    version: str,
    pay_to: str,
    price: int,
    max_timeout_seconds: int,
) -> Any:
    """A slot's x402 terms depend only on these; building them is most of a 402's cost.
    (Callers never change the returned model; `_paid` hands the facilitator a copy.)"""
    return x402.requirements(
        chain_id=chain_id,
        asset=asset,
        asset_name=name,
        asset_version=version,
        pay_to=pay_to,
        amount=price,
        max_timeout_seconds=max_timeout_seconds,
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
    url = _public_url(serving, request)
    header = _required_header(serving, request, terms, case, "payment required")
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


def _required_header(serving: Serving, request: Request, terms: Any, case: str, error: str) -> str:
    resource = ResourceInfo(
        url=_public_url(serving, request), description=CASE_TEXT[case], mime_type="application/json"
    )
    return x402.payment_required_header(terms, resource, error=error)


def _public_url(serving: Serving, request: Request) -> str:
    """This request's URL on the public base URL (never on the request's Host header)."""
    query = request.url.query
    return serving.settings.public_url(request.url.path + (f"?{query}" if query else ""))


async def _paid(
    serving: Serving,
    request: Request,
    slot: SlotInfo,
    case: str,
    header: str,
    version: int,
    page: str | None,
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
    terms = _terms(serving, slot, price).model_copy(deep=True)
    try:
        paid = await serving.payments.pay(
            header, version, terms, slot_key=f"{slot.slot_id}:{case}", page=page
        )
    except x402.PaymentRejected as exc:  # the terms again, so the client can pay anew
        metrics.X402_PAYMENTS.labels("rejected", exc.code).inc()
        exc.headers = {
            **exc.headers,
            "PAYMENT-REQUIRED": _required_header(serving, request, terms, case, exc.code),
        }
        raise
    metrics.X402_PAYMENTS.labels("settled", "").inc()
    body = AccessReceipt(
        receipt=paid.receipt,
        valid_until=paid.valid_until.isoformat(),
        tx_hash=paid.tx_hash,
        payer=paid.payer,
        amount=paid.amount,
    )
    headers = {**paid.headers, RECEIPT_HEADER: paid.receipt, **NO_STORE}
    return JSONResponse(body.model_dump(), headers=headers)


def _presented(
    serving: Serving, request: Request, slot: SlotInfo, case: str, receipt: str, page: str | None
) -> Response:
    """The access result again for a receipt that grants this slot, case and page."""
    try:
        grant = serving.receipts.verify(receipt, slot_id=slot.slot_id, page=page, case=case)
    except ReceiptRefused as exc:
        price = getattr(slot, f"{case}_price")
        if price:  # the way on is to pay anew: the terms with the reason
            terms = _terms(serving, slot, price)
            exc.status = 402
            exc.headers = {
                **exc.headers,
                "PAYMENT-REQUIRED": _required_header(serving, request, terms, case, exc.code),
            }
        raise
    body = AccessReceipt(
        receipt=receipt,
        valid_until=grant.valid_until.isoformat(),
        tx_hash=grant.tx_hash,
        payer=grant.payer,
        amount=grant.amount,
    )
    return JSONResponse(body.model_dump(), headers={RECEIPT_HEADER: receipt, **NO_STORE})


def _valid(grant: Grant) -> ReceiptValid:
    return ReceiptValid(
        payer=grant.payer,
        slot_id=grant.slot_id,
        case=grant.case,
        page=grant.page,
        valid_until=grant.valid_until.isoformat(),
        tx_hash=grant.tx_hash,
        amount=grant.amount,
    )


@router.post(
    "/x402/receipts/verify",
    response_model=ReceiptValid,
    responses={
        403: {
            "model": ErrorBody,
            "description": "the receipt does not grant this: `error.code` is invalid_receipt "
            "(forged, tampered with, not ours), receipt_expired, other_slot or other_page",
        }
    },
)
def verify_receipt(body: ReceiptCheck, request: Request) -> ReceiptValid:
    """Check a receipt an agent presented to a publisher's server before it serves the page
    without ads: signed by our key, not expired, for `slot_id` and (when the receipt is bound
    to a page) for `page`. The same check runs locally with PyJWT and
    `/.well-known/jwks.json`."""
    grant = _serving(request).receipts.verify(body.receipt, slot_id=body.slot_id, page=body.page)
    return _valid(grant)


@router.get("/.well-known/jwks.json", tags=["ads"])
def receipt_keys(request: Request) -> JSONResponse:
    """The public keys receipts are signed with (EdDSA, Ed25519): the current one first,
    then previous ones whose receipts are still accepted."""
    jwks = _serving(request).receipts.jwks()
    return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=300"})
