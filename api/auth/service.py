"""Sign-in logic: issue a nonce, verify a signed EIP-4361 message against our own domain,
URI, chain and nonce, and issue or check the JWT bound to the wallet."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jwt
import redis
from eth_keys.constants import SECPK1_N
from eth_keys.exceptions import BadSignature
from eth_utils import to_checksum_address
from siwe import (
    DomainMismatch,
    ExpiredMessage,
    InvalidSignature,
    NotYetValidMessage,
    SiweMessage,
    VerificationError,
)

from api.core.errors import PayloadTooLarge, Unauthorized
from api.core.settings import Settings

NONCE_KEY = "siwe:nonce:{}"
REVOKED_KEY = "session:revoked:{}"
_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]{130}")


def issue_nonce(cache: redis.Redis, settings: Settings) -> str:
    """A 128-bit single-use nonce, remembered for `nonce_ttl_seconds`."""
    nonce = secrets.token_hex(16)
    cache.set(NONCE_KEY.format(nonce), "1", ex=settings.nonce_ttl_seconds, nx=True)
    return nonce


def _reject(code: str, message: str) -> Unauthorized:
    return Unauthorized(message, code=code)


def sign_in_origins(settings: Settings) -> tuple[list[str], list[str]]:
    """The domains and URIs a sign-in message may name: `siwe_domain` / `siwe_uri`, and the
    host and URL of the public base URL (e.g. 127.0.0.1:8000 beside localhost:8000)."""
    public = urlsplit(settings.public_base_url)
    domains = [settings.siwe_domain]
    if public.netloc and public.netloc not in domains:
        domains.append(public.netloc)
    uris = [settings.siwe_uri.rstrip("/")]
    if settings.public_base_url.rstrip("/") not in uris:
        uris.append(settings.public_base_url.rstrip("/"))
    return domains, uris


def verify_sign_in(cache: redis.Redis, settings: Settings, message: str, signature: str) -> str:
    """The checksummed wallet that signed `message`, once; every failure is a 401 that
    says which check failed. The nonce is consumed only by a message that passed them all."""
    if len(message.encode()) > settings.max_message_bytes:
        raise PayloadTooLarge(f"a sign-in message is at most {settings.max_message_bytes} bytes")
    try:
        parsed = SiweMessage.from_message(message)
    except Exception:
        raise _reject("malformed_message", "the message is not an EIP-4361 message") from None
    domains, uris = sign_in_origins(settings)
    if parsed.domain not in domains:
        raise _reject(
            "wrong_domain",
            f"the message is for domain {parsed.domain}; this API expects "
            + " or ".join(domains)
            + " (BUZZER_SIWE_DOMAIN, or the host of BUZZER_PUBLIC_BASE_URL)",
        )
    if str(parsed.uri).rstrip("/") not in uris:
        raise _reject(
            "wrong_uri", f"the message is for {parsed.uri}; this API expects " + " or ".join(uris)
        )
    if int(parsed.chain_id) != settings.chain_id:
        raise _reject("wrong_chain", f"sign in on chain {settings.chain_id}, not {parsed.chain_id}")
    now = datetime.now(UTC)
    issued = parsed.issued_at._datetime  # RFC 3339 with an offset: the grammar requires one
    if issued < now - timedelta(seconds=settings.nonce_ttl_seconds):
        raise _reject("message_too_old", "the message was issued too long ago; sign in again")
    if issued > now + timedelta(seconds=settings.siwe_clock_skew_seconds):
        raise _reject(
            "issued_in_future",
            "the message says it was issued in the future; check the device's clock and sign in "
            "again",
        )
    _check_signature_form(signature)
    try:
        parsed.verify(signature, domain=parsed.domain, timestamp=now)
    except ExpiredMessage:
        raise _reject("expired_message", "the message has expired") from None
    except NotYetValidMessage:
        raise _reject("not_yet_valid", "the message is not valid yet") from None
    except (InvalidSignature, DomainMismatch, VerificationError, BadSignature):
        raise _reject("bad_signature", "the signature does not match the message") from None
    # single use: of many requests carrying the same message, exactly one deletes the nonce
    if not cache.getdel(NONCE_KEY.format(parsed.nonce)):
        raise _reject("unknown_nonce", "the nonce was never issued, has expired or was used")
    return to_checksum_address(parsed.address)


def _check_signature_form(signature: str) -> None:
    """A 65-byte `r ‖ s ‖ v` signature with r and s in [1, N) and v one of 0, 1, 27, 28, as a
    wallet's `personal_sign` makes it; anything else is refused before recovery, which raises
    on some of them and reads others (an EIP-155 v) as another valid signature."""
    digits = signature.removeprefix("0x")
    malformed = _reject(
        "malformed_signature", "the signature is not a 65-byte secp256k1 signature (r, s, v)"
    )
    if not _SIGNATURE_HEX.fullmatch(digits):
        raise malformed
    raw = bytes.fromhex(digits)
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if not (0 < r < SECPK1_N and 0 < s < SECPK1_N and v in (0, 1, 27, 28)):
        raise malformed


def issue_token(settings: Settings, wallet: str) -> str:
    now = int(time.time())
    claims = {
        "sub": wallet.lower(),
        "iat": now,
        "nbf": now,
        "exp": now + settings.jwt_ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def wallet_from_token(settings: Settings, token: str) -> str:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise _reject("token_expired", "the session has expired; sign in again") from None
    except jwt.PyJWTError:
        raise _reject("invalid_token", "the session token is not valid") from None
    subject = str(claims["sub"])
    try:
        return to_checksum_address(subject)
    except ValueError:
        raise _reject("invalid_token", "the session token is not valid") from None


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def revoke(cache: redis.Redis, settings: Settings, token: str) -> None:
    """End a session before its expiry (signing out): the token is refused from now on, by
    every worker, until it would have expired anyway. A token that is not valid is ignored."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except jwt.PyJWTError:
        return
    remaining = int(claims["exp"]) - int(time.time())
    if remaining > 0:
        cache.set(REVOKED_KEY.format(_fingerprint(token)), "1", ex=remaining)


def check_not_revoked(cache: redis.Redis, token: str) -> None:
    if cache.exists(REVOKED_KEY.format(_fingerprint(token))):
        raise _reject("session_ended", "this session was signed out; sign in again")
