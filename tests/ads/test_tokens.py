"""The impression and click tokens of one serve, signed together, are the tokens signed one
by one, and each verifies as its own kind only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from api.ads import tokens

SECRET = "t" * 40


@pytest.mark.parametrize(
    "claims",
    [
        {"serve_id": "a1.0", "campaign_id": 7, "slot_id": 'slöt "x"', "price": 5, "bid": 0},
        {},
        {"kind": "spoofed", "serve_id": "b"},
    ],
)
def test_signed_together_is_signed_one_by_one(claims: dict[str, Any]) -> None:
    together = tokens.sign_each(SECRET, ("imp", "click"), claims)
    assert together == [tokens.sign(SECRET, "imp", claims), tokens.sign(SECRET, "click", claims)]


def test_each_verifies_as_its_kind() -> None:
    claims = {
        "serve_id": "a1.0", "campaign_id": 7, "slot_id": "s", "publisher": "0x" + "11" * 20,
        "visitor": "v", "bid_model": "cpm", "price": 5, "token": "0x" + "22" * 20,
        "issued_at": 1, "expires_at": 2**40, "bid": 5_000,
    }  # fmt: skip
    impression, click = tokens.sign_each(SECRET, ("imp", "click"), claims)
    assert tokens.verify(SECRET, impression, "imp").serve_id == "a1.0"
    assert tokens.verify(SECRET, click, "click").campaign_id == 7
    with pytest.raises(tokens.Forged):
        tokens.verify(SECRET, click, "imp")


def _as_before(kind: str, claims: dict[str, Any]) -> str:
    """A token as json, base64url and HMAC-SHA256 write it: the format tracking verifies and
    every token already issued has."""
    key = hmac.new(SECRET.encode(), b"buzzer/ad-event/v1", hashlib.sha256).digest()
    text = json.dumps({"kind": kind, **claims}, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(text).rstrip(b"=")
    mac = base64.urlsafe_b64encode(hmac.digest(key, body, "sha256")).rstrip(b"=")
    return f"{body.decode()}.{mac.decode()}"


@pytest.mark.parametrize(
    "slot_id", ["slot-1", "slöt", "a\x7fb", "tab\there\n\x01", "\u2028", "😀", 'q"\\/']
)
@pytest.mark.parametrize("bid", [5_000_000, 2**70, 1.5e16, True, None])
def test_tokens_are_byte_for_byte_the_json_text(slot_id: str, bid: Any) -> None:
    claims = {
        "serve_id": "ab" * 16, "campaign_id": 7, "slot_id": slot_id, "publisher": "0x" + "11" * 20,
        "visitor": "v", "bid_model": "cpm", "price": 5, "bid": bid, "token": "0x" + "22" * 20,
        "issued_at": 1, "expires_at": 2**40,
    }  # fmt: skip
    assert tokens.sign_each(SECRET, ("imp", "click"), claims) == [
        _as_before("imp", claims),
        _as_before("click", claims),
    ]
    assert tokens.verify(SECRET, _as_before("imp", claims), "imp").slot_id == slot_id
    assert tokens.verify(SECRET, tokens.sign(SECRET, "click", claims), "click").bid == bid
