"""`/api/v1/auth`: nonce, verify, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.auth import service
from api.auth.schemas import NonceOut, TokenOut, VerifyIn, WalletOut
from api.core.ratelimit import per_ip
from api.deps import CacheDep, SettingsDep, WalletDep


def _auth_limit(request: Request) -> int:
    limit: int = request.app.state.settings.rate_limit_auth_per_minute
    return limit


router = APIRouter(
    prefix="/api/v1/auth",
    tags=["auth"],
    dependencies=[Depends(per_ip("auth", _auth_limit))],
)


@router.get("/nonce", response_model=NonceOut)
def nonce(cache: CacheDep, settings: SettingsDep) -> NonceOut:
    """A single-use nonce to put in the EIP-4361 message."""
    return NonceOut(
        nonce=service.issue_nonce(cache, settings), expires_in=settings.nonce_ttl_seconds
    )


@router.post("/verify", response_model=TokenOut)
def verify(body: VerifyIn, cache: CacheDep, settings: SettingsDep) -> TokenOut:
    """Exchange a signed EIP-4361 message for a session token bound to the wallet."""
    wallet = service.verify_sign_in(cache, settings, body.message, body.signature)
    return TokenOut(
        access_token=service.issue_token(settings, wallet),
        expires_in=settings.jwt_ttl_seconds,
        wallet=wallet,
    )


@router.get("/me", response_model=WalletOut)
def me(wallet: WalletDep) -> WalletOut:
    """The wallet the session belongs to."""
    return WalletOut(wallet=wallet)
