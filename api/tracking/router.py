"""Tracking endpoints: `GET /track/impression?token=…` (a 1×1 GIF), `POST /track/impression`
(for `navigator.sendBeacon`, token in the body or the query) and `GET /track/click/{token}`
(302 to the campaign's own landing page). Every event, valid or not, is recorded with its
verdict (see `api.tracking.intake`); the answer never tells a client whether it counted."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.ads.router import Serving
from api.core.clientip import client_ip
from api.core.errors import ApiError, NotFound
from api.core.routes import DirectRoute, query
from api.tracking.intake import Intake, Visit
from api.tracking.landing import LandingPages, safe_landing_url
from api.tracking.models import CLICK, IMPRESSION

router = APIRouter(tags=["tracking"], route_class=DirectRoute)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
MAX_BEACON = 4_096  # a token is about 500 characters


def _intake(request: Request) -> Intake:
    state = request.app.state
    intake: Intake | None = getattr(state, "intake", None)
    if intake is None:
        serving: Serving = state.serving
        intake = Intake(serving.settings, serving.cache, serving.catalog)
        state.intake = intake
        state.landing_pages = LandingPages(state.engine, serving.settings.chain_id)
    return intake


def _visit(request: Request) -> Visit:
    headers = request.headers
    country = headers.get("cf-ipcountry", "")  # resolved at the edge; anyone can send it
    geo = country if len(country) == 2 and country.isascii() and country.isupper() else None
    ip = client_ip(request, _intake(request).settings)  # the one place that reads proxies
    return Visit(ip, headers.get("user-agent"), geo)


TOKEN_QUERY = {"name": "token", "in": "query", "schema": {"type": "string"}}


@router.get(
    "/track/impression",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "a 1×1 transparent GIF"}},
    openapi_extra={"parameters": [{**TOKEN_QUERY, "required": True}]},
)
async def impression_pixel(request: Request) -> Response:
    """The ad rendered (an `<img>` pixel, `?token=…`). Always the same GIF, counted or not."""
    token = query(request).get("token", "")  # read by hand: the hot path
    await _intake(request).record(IMPRESSION, token, _visit(request))
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.post(
    "/track/impression",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "received (counted or not)"}},
    openapi_extra={
        "parameters": [{**TOKEN_QUERY, "required": False}],
        "requestBody": {
            "required": False,
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {"type": "object", "properties": {"token": {"type": "string"}}}
                },
            },
        },
    },
)
async def impression_beacon(request: Request) -> Response:
    """The ad rendered (`navigator.sendBeacon(impression_url)`, or the token in the body:
    plain text, `token=…` form data or `{"token": …}`)."""
    token = query(request).get("token") or _token_from_body(await _body(request))
    await _intake(request).record(IMPRESSION, token, _visit(request))
    return Response(status_code=204, headers=NO_CACHE)


@router.get(
    "/track/click/{token}",
    response_class=Response,
    responses={
        302: {"description": "to the campaign's own landing page"},
        400: {"description": "a link we did not issue"},
    },
)
async def click(request: Request, token: str) -> Response:
    """A person clicked the ad: recorded, then sent to the campaign's landing page. Query
    parameters are ignored: the destination is only ever the campaign's own URL."""
    intake = _intake(request)
    outcome = await intake.record(CLICK, token, _visit(request))
    if outcome.event is None:
        raise ApiError("this ad link is not one we issued", status=400, code="invalid_link")
    campaign_id = outcome.event.campaign_id
    held = intake.campaign(campaign_id)
    url = held.landing_url if held is not None else None
    if url is None:
        pages: LandingPages = request.app.state.landing_pages
        url = await run_in_threadpool(pages.from_database, campaign_id)
    landing = safe_landing_url(url)
    if landing is None:
        raise NotFound("this ad's landing page is not available", code="no_landing_page")
    headers = {**NO_CACHE, "Location": landing, "Referrer-Policy": "origin"}
    return Response(status_code=302, headers=headers)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BEACON):
        return b""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BEACON:
            return b""
    return body


def _token_from_body(body: bytes) -> str:
    text = body.decode("ascii", "replace").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text).get("token", "")
        except (ValueError, AttributeError, RecursionError):  # 4 KB nest 2,000 levels deep
            return ""
        return value if isinstance(value, str) else ""
    if text.startswith("token="):
        return (parse_qs(text).get("token") or [""])[0]
    return text
