"""The pages' plumbing: sign in with a wallet into a cookie session, sign out, the status
of a transaction the page sent (sent → mined → seen by the indexer, or the revert reason),
the choice of dashboard, and htmx served from the npm package."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from siwe import SiweMessage
from sqlalchemy import text

from api.auth import service as auth
from api.auth.router import _auth_limit
from api.auth.schemas import VerifyIn
from api.campaigns import service as campaigns
from api.core.db import SessionDep
from api.core.errors import NotFound, Unavailable, Unprocessable
from api.core.ratelimit import per_ip
from api.core.settings import Settings
from api.deps import CacheDep, SettingsDep, WalletDep
from api.publishers import service as publishers
from api.web.core import ViewerDep, render
from api.web.session import (
    COOKIE,
    check_csrf,
    clear_session,
    csrf_token,
    page_session,
    set_session,
)
from chain.sender import _revert_reason

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HTMX = PROJECT_ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
_TX_HASH = r"^0x[0-9a-fA-F]{64}$"

router = APIRouter(tags=["dashboards"])
session_api = APIRouter(
    prefix="/web", tags=["dashboards"], dependencies=[Depends(per_ip("auth", _auth_limit))]
)


class SignInMessage(BaseModel):
    message: str
    expires_in: int


class SessionOut(BaseModel):
    wallet: str
    csrf_token: str
    expires_in: int


class TxStatus(BaseModel):
    hash: str
    state: Literal["pending", "mined", "indexed", "reverted", "unknown"]
    block: int | None = None
    reason: str | None = Field(default=None, description="why it reverted, when it did")


@session_api.get("/sign-in/message", response_model=SignInMessage)
def sign_in_message(
    cache: CacheDep, settings: SettingsDep, address: str = Query(max_length=42)
) -> SignInMessage:
    """The EIP-4361 message for `address` to sign, for this site, chain and a fresh nonce."""
    if not is_address(address):
        raise Unprocessable("address is not an Ethereum address", {"field": "address"})
    now = datetime.now(UTC)
    ttl = settings.nonce_ttl_seconds
    message = SiweMessage(
        domain=settings.siwe_domain,
        address=to_checksum_address(address),
        statement="Sign in to Buzzer Network. This costs nothing and sends no transaction.",
        uri=settings.siwe_uri,
        version="1",
        chain_id=settings.chain_id,
        nonce=auth.issue_nonce(cache, settings),
        issued_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        expiration_time=(now + timedelta(seconds=ttl))
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
    )
    return SignInMessage(message=message.prepare_message(), expires_in=ttl)


@session_api.post("/session", response_model=SessionOut)
def open_session(
    body: VerifyIn, response: Response, cache: CacheDep, settings: SettingsDep
) -> SessionOut:
    """Exchange a signed sign-in message for the session cookie (HttpOnly, SameSite=Lax) and
    the CSRF token the page sends with every change."""
    wallet = auth.verify_sign_in(cache, settings, body.message, body.signature)
    token = auth.issue_token(settings, wallet)
    set_session(response, settings, token)
    return SessionOut(
        wallet=wallet, csrf_token=csrf_token(settings, token), expires_in=settings.jwt_ttl_seconds
    )


@session_api.post("/sign-out", status_code=204)
def sign_out(request: Request, cache: CacheDep, settings: SettingsDep) -> Response:
    """End the session: its token is refused from now on, wherever it was copied, and the
    cookie is cleared (safe to call signed out)."""
    token = request.cookies.get(COOKIE)
    if token and page_session(request, settings) is not None:
        check_csrf(request, settings, token)  # another site cannot sign the wallet out
        auth.revoke(cache, settings, token)
    response = Response(status_code=204)
    clear_session(response, settings)
    return response


@router.get("/api/v1/tx/{tx_hash}", response_model=TxStatus)
def tx_status(
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
    tx_hash: Annotated[str, PathParam(pattern=_TX_HASH)],
) -> TxStatus:
    """Where a transaction stands: `pending` (known, not mined), `mined`, `indexed` (the
    indexer has committed its block, so pages show its effect), `reverted` with the reason,
    or `unknown` to the node."""
    receipt = _rpc(settings.rpc_url, "eth_getTransactionReceipt", [tx_hash])
    if receipt is None:
        known = _rpc(settings.rpc_url, "eth_getTransactionByHash", [tx_hash])
        return TxStatus(hash=tx_hash, state="pending" if known else "unknown")
    block = int(receipt["blockNumber"], 16)
    if int(receipt.get("status", "0x1"), 16) == 0:
        return TxStatus(
            hash=tx_hash, state="reverted", block=block, reason=_reason(settings, receipt)
        )
    indexed = session.execute(
        text("SELECT block_number FROM indexer_checkpoints WHERE chain_id = :c"),
        {"c": settings.chain_id},
    ).scalar()
    state: Literal["mined", "indexed"] = (
        "indexed" if indexed is not None and indexed >= block else "mined"
    )
    return TxStatus(hash=tx_hash, state=state, block=block)


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    try:
        reply = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=5
        ).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"the chain's RPC did not answer: {exc}") from None
    if "error" in reply:
        return {"error": reply["error"]}
    return reply.get("result")


def _reason(settings: Settings, receipt: dict[str, Any]) -> str:
    """Replay the reverted transaction as a call at its block for the revert data."""
    tx = _rpc(settings.rpc_url, "eth_getTransactionByHash", [receipt["transactionHash"]])
    if not tx or "error" in tx:
        return "reverted"
    call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
    replay = _rpc(settings.rpc_url, "eth_call", [call, hex(int(receipt["blockNumber"], 16) - 1)])
    if isinstance(replay, dict) and "error" in replay:
        return _revert_reason(replay["error"])[1] or "reverted without a reason"
    if int(receipt["gasUsed"], 16) >= int(tx["gas"], 16):
        return "out of gas"
    return "reverted (the same call succeeds now: the state changed)"


@router.get("/sign-in", include_in_schema=False)
def sign_in_page(request: Request, who: ViewerDep, next: str = "/app") -> Response:
    return render(request, "sign_in.html", {"next": _local(next)})


@router.get("/app", include_in_schema=False)
def choose_dashboard(request: Request, who: ViewerDep, session: SessionDep) -> Response:
    """A signed-in wallet goes to the dashboard of what it is (publisher first); a new one
    chooses."""
    if who.wallet is None:
        return RedirectResponse("/sign-in?next=/app", 303)
    if publishers.find_profile(session, who.wallet) is not None:
        return RedirectResponse("/publisher", 303)
    if campaigns.find_advertiser(session, who.wallet) is not None:
        return RedirectResponse("/advertiser", 303)
    return render(request, "choose.html")


@router.get("/vendor/htmx.min.js", include_in_schema=False)
def htmx() -> Response:
    if not HTMX.is_file():
        raise NotFound("htmx is not installed: run `make install`")
    return FileResponse(
        HTMX, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


def _local(target: str) -> str:
    """Only a path on this site (no scheme, no host, no `//`): never an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/app"
    return target
