"""x402 access receipts: EdDSA (Ed25519) JWTs a publisher can check without asking us,
against the public keys at `GET /.well-known/jwks.json`.

    keys = ReceiptKeys.from_settings(settings)                      # once per app
    token = keys.sign(Grant(payer=..., slot_id="slot_ab12", case="agent", page=None,
                            tx_hash=..., amount=1_000, nonce=..., issued_at=..., valid_until=...))
    grant = keys.verify(token, slot_id="slot_ab12", page="https://news.example/a")  # or raises

A publisher's server checks a receipt locally with PyJWT and the JWKS (or asks
`POST /x402/receipts/verify`):

    import jwt
    jwks = jwt.PyJWKClient("https://api.buzzer.example/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(receipt).key
    claims = jwt.decode(receipt, key, algorithms=["EdDSA"], issuer="https://api.buzzer.example")
    assert claims["slot"] == MY_SLOT_ID and claims.get("page") in (None, this_page_url)

Claims: iss (the API's public base URL), sub (payer), slot, case (agent | ad_free | no_fill),
page (when the paid request named one), tx (settlement hash), amount (atomic units), iat, exp
(the end of access), jti (the EIP-3009 authorization nonce). Rotation: a new signing key
gets a new `kid`; the old key's public part stays in `receipt_previous_public_keys` (and
so in the JWKS) until its receipts have expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import OKPAlgorithm

from api.core.errors import ApiError
from api.core.settings import Settings

ALGORITHM = "EdDSA"
RECEIPT_HEADER = "X-Buzzer-Receipt"  # a paid client presents its receipt again in this header
CASES = ("agent", "ad_free", "no_fill")
MAX_RECEIPT_CHARS = 4_096
_DERIVE_INFO = b"buzzer/x402-receipt/ed25519/v1"

ERR_INVALID_RECEIPT = "invalid_receipt"
ERR_RECEIPT_EXPIRED = "receipt_expired"
ERR_OTHER_SLOT = "other_slot"
ERR_OTHER_PAGE = "other_page"
ERR_OTHER_CASE = "other_case"


class ReceiptRefused(ApiError):
    """The receipt does not grant this: forged or tampered with (`invalid_receipt`),
    expired, or for another slot, page or case."""

    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, {"reason": code}, code=code)


@dataclass(frozen=True)
class Grant:
    """What a receipt grants: `case` access to `slot_id` (on `page`, when named), paid by
    `payer` in `tx_hash`, until `valid_until`."""

    payer: str  # checksummed
    slot_id: str
    case: str | None
    page: str | None
    tx_hash: str
    amount: int
    nonce: str
    issued_at: datetime
    valid_until: datetime


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint of the key's JWK: stable, and new for every new key."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw(public))}, separators=(",", ":")
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def derived_key(secret: str) -> Ed25519PrivateKey:
    """An Ed25519 key derived from `secret` (HKDF-SHA256): every worker sharing the secret
    signs with the same key. For local runs; production configures its own key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVE_INFO)
    return Ed25519PrivateKey.from_private_bytes(hkdf.derive(secret.encode()))


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM Ed25519 private key, or base64 of its 32-byte seed."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the receipt signing key must be an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM Ed25519 public key, or base64 of its 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
    else:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("a receipt public key must be an Ed25519 key")
    return key


class ReceiptKeys:
    """Signs receipts with the current key; verifies those of the current and the previous
    (still published) keys."""

    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        *,
        issuer: str,
        previous: Sequence[Ed25519PublicKey] = (),
    ) -> None:
        self.issuer = issuer
        self._signing_key = signing_key
        self.kid = key_id(signing_key.public_key())
        self._public = {self.kid: signing_key.public_key()}
        for old in previous:
            self._public.setdefault(key_id(old), old)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReceiptKeys:
        if settings.receipt_signing_key:
            signing = load_private_key(settings.receipt_signing_key)
        else:
            signing = derived_key(settings.jwt_secret)
        previous = [load_public_key(k) for k in settings.receipt_previous_public_keys]
        return cls(signing, issuer=settings.public_base_url, previous=previous)

    def jwks(self) -> dict[str, Any]:
        """The published key set: the current key first."""
        keys = []
        for kid, public in self._public.items():
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": keys}

    def sign(self, grant: Grant) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.payer,
            "slot": grant.slot_id,
            "tx": grant.tx_hash,
            "amount": grant.amount,
            "iat": int(grant.issued_at.timestamp()),
            "exp": int(grant.valid_until.timestamp()),
            "jti": grant.nonce,
        }
        if grant.case is not None:
            claims["case"] = grant.case
        if grant.page is not None:
            claims["page"] = grant.page
        # Ed25519 is deterministic: the same grant always gives the same token
        return jwt.encode(claims, self._signing_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(
        self, token: str, *, slot_id: str, page: str | None = None, case: str | None = None
    ) -> Grant:
        """The grant `token` carries if we signed it, it has not expired, and it is for
        `slot_id`, for `case` (when given), and for `page` (a receipt bound to a page only
        serves that page; one without a page serves the whole slot); else `ReceiptRefused`."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_RECEIPT_CHARS:
            raise ReceiptRefused(ERR_INVALID_RECEIPT, "the receipt is empty or too long")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            public = self._public.get(kid) if isinstance(kid, str) else None
            if public is None:
                raise ReceiptRefused(ERR_INVALID_RECEIPT, "the receipt is not signed by our keys")
            claims = jwt.decode(
                token,
                public,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "slot", "tx", "amount"]},
            )
        except jwt.ExpiredSignatureError:
            raise ReceiptRefused(ERR_RECEIPT_EXPIRED, "the receipt has expired") from None
        except jwt.InvalidTokenError:
            raise ReceiptRefused(ERR_INVALID_RECEIPT, "the receipt is not one we issued") from None
        grant = _grant(claims)
        if grant.slot_id != slot_id:
            raise ReceiptRefused(ERR_OTHER_SLOT, "the receipt is for another slot")
        if case is not None and grant.case is not None and grant.case != case:
            raise ReceiptRefused(ERR_OTHER_CASE, f"the receipt pays for {grant.case}, not {case}")
        if grant.page is not None and grant.page != page:
            raise ReceiptRefused(ERR_OTHER_PAGE, "the receipt is for another page")
        return grant


def _grant(claims: dict[str, Any]) -> Grant:
    def text(name: str) -> str:
        value = claims.get(name)
        if not isinstance(value, str):
            raise ReceiptRefused(ERR_INVALID_RECEIPT, f"the receipt's {name} is malformed")
        return value

    amount, case, page = claims.get("amount"), claims.get("case"), claims.get("page")
    if not isinstance(amount, int) or isinstance(amount, bool) or case not in (None, *CASES):
        raise ReceiptRefused(ERR_INVALID_RECEIPT, "the receipt's claims are malformed")
    if page is not None and not isinstance(page, str):
        raise ReceiptRefused(ERR_INVALID_RECEIPT, "the receipt's page is malformed")
    return Grant(
        payer=text("sub"),
        slot_id=text("slot"),
        case=case,
        page=page,
        tx_hash=text("tx"),
        amount=amount,
        nonce=text("jti"),
        issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        valid_until=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
