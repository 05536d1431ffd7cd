"""The impression and click tokens of one serve, signed together, are the tokens signed one
by one, and each verifies as its own kind only."""

from __future__ import annotations

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
