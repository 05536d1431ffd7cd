"""Dependencies every router shares, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.service import check_not_revoked, wallet_from_token
from api.core.errors import Unauthorized
from api.core.ratelimit import hit
from api.core.settings import Settings
from api.web import session

_bearer = HTTPBearer(auto_error=False)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_cache(request: Request) -> redis.Redis:
    cache: redis.Redis = request.app.state.redis
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
CacheDep = Annotated[redis.Redis, Depends(get_cache)]


def current_wallet(
    request: Request,
    settings: SettingsDep,
    cache: CacheDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The checksummed wallet of the bearer token, or of the dashboards' session cookie (whose
    state-changing requests must carry the session's CSRF token); 401 without either, or when
    the session was signed out."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        wallet = wallet_from_token(settings, credentials.credentials)
        check_not_revoked(cache, credentials.credentials)
        return wallet
    cookie = request.cookies.get(session.COOKIE)
    if cookie:
        wallet = wallet_from_token(settings, cookie)
        check_not_revoked(cache, cookie)
        session.check_csrf(request, settings, cookie)
        return wallet
    raise Unauthorized("sign in first: send `Authorization: Bearer <token>`", code="no_token")


WalletDep = Annotated[str, Depends(current_wallet)]


def wallet_rate_limit(request: Request, wallet: WalletDep) -> None:
    """Each signed-in wallet gets `rate_limit_wallet_per_minute` requests a minute."""
    limit: int = request.app.state.settings.rate_limit_wallet_per_minute
    hit(request.app.state.redis, "wallet", wallet.lower(), limit)


WalletLimited = Depends(wallet_rate_limit)
