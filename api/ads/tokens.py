"""Signed, expiring tokens for an ad's impression and click URLs: `<claims>.<hmac>` in
base64url. They name the serve (its id), the campaign, the slot, the visitor key and the
price; tracking checks the signature and uses each token once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class BadToken(ValueError):
    """Forged, tampered with, expired, or of the wrong kind."""


@dataclass(frozen=True)
class AdEvent:
    kind: str  # "imp" or "click"
    serve_id: str
    campaign_id: int
    slot_id: str
    publisher: str
    visitor: str
    bid_model: str
    price: int
    token: str
    issued_at: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _keys(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"buzzer/ad-event/v1", hashlib.sha256).digest()


def sign(secret: str, kind: str, claims: dict[str, Any]) -> str:
    """A token of `kind` ("imp" or "click") for the claims of an `AdEvent` but its kind."""
    body = _b64(json.dumps({"kind": kind, **claims}, separators=(",", ":")).encode())
    mac = _b64(hmac.new(_keys(secret), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify(secret: str, token: str, kind: str, now: float | None = None) -> AdEvent:
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(_keys(secret), body.encode(), hashlib.sha256).digest())
    if not body or not hmac.compare_digest(mac, expected):
        raise BadToken("the token is not one we issued")
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    event = AdEvent(**claims)
    if event.kind != kind:
        raise BadToken(f"a {event.kind} token cannot record a {kind}")
    if event.expires_at <= (now if now is not None else time.time()):
        raise BadToken("the token has expired")
    return event
