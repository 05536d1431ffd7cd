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

import msgspec


class BadToken(ValueError):
    """Forged, tampered with, expired, or of the wrong kind."""


class Forged(BadToken):
    """Not a token we issued for this kind of event: nothing in it can be trusted."""


class Expired(BadToken):
    """One we issued, past its expiry: its claims are ours (`event`), its use is over."""

    def __init__(self, event: AdEvent) -> None:
        super().__init__("the token has expired")
        self.event = event


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
    bid: int = 0  # the serve-time bid (CPM: per 1,000 impressions); 0 in tokens before it


MAX_TOKEN = 2_048  # ours are about 500 characters


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _keys(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"buzzer/ad-event/v1", hashlib.sha256).digest()


@lru_cache(maxsize=4)
def _keyed(secret: str) -> Any:
    """An HMAC with the key already absorbed: each token copies it (a third of the cost of
    keying a new one for every digest)."""
    return hmac.new(_keys(secret), digestmod="sha256")


_ENCODE = msgspec.json.Encoder().encode
_PLAIN = frozenset({str, int, bool, type(None)})  # msgspec and json write these alike


def _claims_json(claims: dict[str, Any]) -> bytes:
    """`json.dumps(claims, separators=(",", ":"))`, byte for byte, at a tenth of its cost.

    For strings, integers, booleans and null, msgspec writes the same text as json as long
    as every character is printable ASCII or a control character (both escape those
    alike). Otherwise json's own text: json writes DEL and any non-ASCII character as a
    `\\u` escape (`\\u00e9` for é), msgspec writes them as they are, and the two may write
    a float differently."""
    if all(type(v) in _PLAIN for v in claims.values()) and all(type(k) is str for k in claims):
        text = _ENCODE(claims)
        if text.isascii() and b"\x7f" not in text:
            return text
    return json.dumps(claims, separators=(",", ":")).encode()


@lru_cache(maxsize=8)
def _kind_prefix(kind: str) -> bytes:
    return f'{{"kind":{json.dumps(kind)},'.encode()


def sign(secret: str, kind: str, claims: dict[str, Any]) -> str:
    """A token of `kind` ("imp" or "click") for the claims of an `AdEvent` but its kind."""
    return sign_each(secret, (kind,), claims)[0]


def sign_each(secret: str, kinds: tuple[str, ...], claims: dict[str, Any]) -> list[str]:
    """A token of each kind for the same claims (a served ad's impression and click), the
    claims serialized once: each is the token `sign` gives, byte for byte."""
    keyed = _keyed(secret)
    if not claims or "kind" in claims:
        encoded = [
            json.dumps({"kind": kind, **claims}, separators=(",", ":")).encode() for kind in kinds
        ]
    else:
        rest = _claims_json(claims)[1:]  # b'"serve_id":…}'
        encoded = [_kind_prefix(kind) + rest for kind in kinds]
    signed = []
    for text in encoded:
        body = base64.urlsafe_b64encode(text).rstrip(b"=")
        mac = keyed.copy()
        mac.update(body)
        signed.append(f"{body.decode()}.{_b64(mac.digest())}")
    return signed


def verify(secret: str, token: str, kind: str, now: float | None = None) -> AdEvent:
    """The claims of a live token of `kind`; `Forged` for anything we did not sign (or
    signed for the other kind), `Expired` (with the claims) past its expiry."""
    if not token.isascii() or len(token) > MAX_TOKEN:
        raise Forged("the token is not one we issued")
    body, _, mac = token.partition(".")
    expected = _b64(hmac.digest(_keys(secret), body.encode(), "sha256"))
    if not body or not hmac.compare_digest(mac, expected):
        raise Forged("the token is not one we issued")
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    event = AdEvent(**claims)
    if event.kind != kind:
        raise Forged(f"a {event.kind} token cannot record a {kind}")
    if event.expires_at <= (now if now is not None else time.time()):
        raise Expired(event)
    return event
