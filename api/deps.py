"""Dependencies every router shares, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.service import wallet_from_token
from api.core.errors import Unauthorized
from api.core.ratelimit import hit
from api.core.settings import Settings

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
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The checksummed wallet of the bearer token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("sign in first: send `Authorization: Bearer <token>`", code="no_token")
    return wallet_from_token(settings, credentials.credentials)


WalletDep = Annotated[str, Depends(current_wallet)]


def wallet_rate_limit(request: Request, wallet: WalletDep) -> None:
    """Each signed-in wallet gets `rate_limit_wallet_per_minute` requests a minute."""
    limit: int = request.app.state.settings.rate_limit_wallet_per_minute
    hit(request.app.state.redis, "wallet", wallet.lower(), limit)


WalletLimited = Depends(wallet_rate_limit)
