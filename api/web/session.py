"""Browser sessions: the same JWT as the API's Bearer token, carried in an HttpOnly,
SameSite=Lax cookie (a page cannot send a header on navigation), and a CSRF token bound to
that session which every state-changing request authenticated by the cookie must echo in
`X-CSRF-Token`. A cross-site form or fetch can send the cookie (Lax allows top-level
navigations) but cannot read the page to learn the token."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from api.auth.service import check_not_revoked, wallet_from_token
from api.core.errors import ApiError, Forbidden
from api.core.settings import Settings

COOKIE = "buzzer_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(settings: Settings, session_token: str) -> str:
    """The CSRF token of one session: an HMAC of the session under the server's secret, so
    it needs no storage and dies with the session."""
    key = settings.jwt_secret.encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, settings: Settings, session_token: str) -> None:
    """A state-changing request on the cookie must carry the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent, csrf_token(settings, session_token)):
        raise Forbidden(
            "this request did not come from a Buzzer page: reload the page and try again",
            code="csrf_failed",
        )


def set_session(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.jwt_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.public_base_url.startswith("https://"),
        path="/",
    )


def clear_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE,
        httponly=True,
        samesite="lax",
        secure=settings.public_base_url.startswith("https://"),
        path="/",
    )


def page_session(request: Request, settings: Settings) -> tuple[str, str] | None:
    """`(wallet, session token)` of the cookie, or None when there is none or it is no longer
    valid (expired, forged, signed out): a page then shows its signed-out state."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        wallet = wallet_from_token(settings, token)
        check_not_revoked(request.app.state.redis, token)
    except ApiError:
        return None
    return wallet, token
