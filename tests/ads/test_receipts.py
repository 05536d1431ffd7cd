"""x402 receipts a publisher can check: EdDSA JWTs under a key published at
`/.well-known/jwks.json`, refused when forged, tampered with, expired, or for another slot or
page, by `POST /x402/receipts/verify` and by `GET /x402/ad`, which serves a valid one again
without a second payment."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402_httpx_transport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from api.ads.payments import Payments
from api.ads.receipts import Grant, ReceiptKeys, ReceiptRefused, derived_key
from api.core.fields import utcnow
from tests.api.conftest import (  # noqa: F401 (fixtures used by name)
    SECRET,
    Wallet,
    api,
    auth,
    settings,
)
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
    database_url,
)

AGENT = "python-httpx/0.28.1"
PUBLISHER, PAYEE, FACILITATOR = 16, 17, 21
PAGE = "https://news.example/2026/12/story"
SLOT = {"name": "Top", "format": "banner", "width": 300, "height": 250, "agent_price": 1_000}


def grant(**change) -> Grant:
    now = utcnow().replace(microsecond=0)
    fields = {
        "payer": Account.create().address,
        "slot_id": "slot_0000000000000000",
        "case": "agent",
        "page": None,
        "tx_hash": "0x" + "ab" * 32,
        "amount": 1_000,
        "nonce": "0x" + "cd" * 32,
        "issued_at": now,
        "valid_until": now + timedelta(hours=1),
        **change,
    }
    return Grant(**fields)


def verify(api, receipt: str, slot_id: str, page: str | None = None):
    body = {"receipt": receipt, "slot_id": slot_id, **({"page": page} if page else {})}
    return api.post("/x402/receipts/verify", json=body)


def tampered(receipt: str, **claims) -> str:
    """The receipt with claims changed and its signature kept."""
    header, payload, signature = receipt.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode())
    return f"{header}.{changed.decode().rstrip('=')}.{signature}"


def forged(keys: ReceiptKeys, good: Grant) -> str:
    """A receipt with our claims and our kid, signed by another key."""
    other = ReceiptKeys(Ed25519PrivateKey.generate(), issuer=keys.issuer)
    token = other.sign(good)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "EdDSA", "kid": keys.kid}).encode())
    return header.decode().rstrip("=") + "." + token.split(".", 1)[1]


def bad_receipts(keys: ReceiptKeys, good: Grant) -> list[tuple[str, str]]:
    """(receipt, the code it is refused with) for `good.slot_id` on page `PAGE`."""
    past = utcnow().replace(microsecond=0) - timedelta(seconds=5)
    return [
        (forged(keys, good), "invalid_receipt"),
        (tampered(keys.sign(good), amount=10**9), "invalid_receipt"),
        (tampered(keys.sign(good), slot="slot_other"), "invalid_receipt"),
        (keys.sign(good)[:-4] + "AAAA", "invalid_receipt"),
        ("not.a.receipt", "invalid_receipt"),
        (jwt.encode({"slot": good.slot_id}, SECRET, algorithm="HS256"), "invalid_receipt"),
        (keys.sign(grant(**{**good.__dict__, "valid_until": past})), "receipt_expired"),
        (keys.sign(grant(**{**good.__dict__, "slot_id": "slot_other"})), "other_slot"),
        (keys.sign(grant(**{**good.__dict__, "page": PAGE + "?b"})), "other_page"),
    ]


# -- the verify endpoint and the published keys -----------------------------------------------


def test_a_publisher_checks_a_receipt_with_the_published_keys_alone(api):
    keys = api.app.state.serving.receipts
    good = grant(page=PAGE)
    receipt = keys.sign(good)

    jwks = api.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(receipt)["kid"]
    public = jwt.PyJWKSet.from_dict(jwks)[kid].key
    claims = jwt.decode(receipt, public, algorithms=["EdDSA"], issuer="http://localhost:8000")
    assert (claims["sub"], claims["slot"], claims["page"]) == (good.payer, good.slot_id, PAGE)
    assert (claims["case"], claims["tx"], claims["amount"]) == ("agent", good.tx_hash, 1_000)
    assert claims["exp"] == int(good.valid_until.timestamp()) and claims["jti"] == good.nonce
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged(keys, good), public, algorithms=["EdDSA"])

    reply = verify(api, receipt, good.slot_id, PAGE)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "valid": True,
        "payer": good.payer,
        "slot_id": good.slot_id,
        "case": "agent",
        "page": PAGE,
        "valid_until": good.valid_until.isoformat(),
        "tx_hash": good.tx_hash,
        "amount": 1_000,
    }
    assert "/x402/receipts/verify" in api.app.openapi()["paths"]


def test_the_verify_endpoint_refuses_bad_receipts_with_their_code(api):
    keys = api.app.state.serving.receipts
    good = grant(page=PAGE)

    for receipt, code in bad_receipts(keys, good):
        reply = verify(api, receipt, good.slot_id, PAGE)
        assert reply.status_code == 403, (code, reply.text)
        assert reply.json()["error"]["code"] == code, (receipt, reply.json())
    # a receipt bound to a page serves only that page; one for the whole slot, any page
    assert verify(api, keys.sign(good), good.slot_id).json()["error"]["code"] == "other_page"
    assert verify(api, keys.sign(grant()), "slot_0000000000000000", PAGE).status_code == 200


def test_keys_rotate_and_every_worker_derives_the_same_key(settings):
    derived = ReceiptKeys.from_settings(settings)
    assert ReceiptKeys.from_settings(settings).kid == derived.kid  # another worker
    old_receipt = derived.sign(grant())
    new_key = Ed25519PrivateKey.generate()
    pem = new_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    old_public = base64.b64encode(
        derived_key(SECRET)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()

    rotated = ReceiptKeys.from_settings(
        settings.model_copy(
            update={"receipt_signing_key": pem, "receipt_previous_public_keys": [old_public]}
        )
    )
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [rotated.kid, derived.kid]
    assert rotated.verify(old_receipt, slot_id="slot_0000000000000000").amount == 1_000
    assert jwt.get_unverified_header(rotated.sign(grant()))["kid"] == rotated.kid

    retired = ReceiptKeys.from_settings(settings.model_copy(update={"receipt_signing_key": pem}))
    with pytest.raises(ReceiptRefused, match="not signed by our keys"):
        retired.verify(old_receipt, slot_id="slot_0000000000000000")


# -- paying once, and showing the receipt again -----------------------------------------------


@pytest.fixture
def slot(api, chain, database_url):
    """A registered publisher's slot with an agent price, in the ad server's catalog."""
    p = auth(api, Wallet(dev_account(PUBLISHER)))
    api.post(
        "/api/v1/publishers",
        json={"website_url": "https://news.example", "category": "news"},
        headers=p,
    )
    created = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=p).json()
    chain.register_publisher(PUBLISHER, "news-receipts", payment_wallet=PAYEE)
    index_to_head(chain.rpc_url, database_url)
    api.app.state.serving.catalog.refresh()
    return created["slot_id"]


def ad(api, slot_id: str, receipt: str | None = None, **params):
    query = {"pub_id": "news-receipts", "slot_id": slot_id, "format": "banner", **params}
    headers = {"User-Agent": AGENT, **({"X-Buzzer-Receipt": receipt} if receipt else {})}
    return api.get("/x402/ad", params=query, headers=headers)


def test_a_paid_receipt_is_served_again_without_paying_and_bad_ones_are_refused(api, chain, slot):
    live = api.app.state.settings.model_copy(
        update={"facilitator_private_key": dev_account(FACILITATOR).key.hex()}
    )
    state = api.app.state
    state.serving.payments = Payments.from_settings(live, state.engine, state.redis)
    payer = Account.create()
    chain.mint_usdc(payer.address, 10_000)
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer), networks="eip155:1337")
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": "eip155:1337", "asset": chain.usdc, "max_amount_per_payment": "5000"}
            ]
        }
    )
    query = {"pub_id": "news-receipts", "slot_id": slot, "format": "banner", "page": PAGE}

    async def pay() -> httpx.Response:
        transport = x402_httpx_transport(client, httpx.ASGITransport(app=api.app))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get("/x402/ad", params=query, headers={"User-Agent": AGENT})

    paid = asyncio.run(pay())
    assert paid.status_code == 200, paid.text
    receipt = paid.json()["receipt"]
    assert paid.headers["X-Buzzer-Receipt"] == receipt
    assert chain.usdc_balance(payer.address) == 9_000
    claims = jwt.decode(receipt, options={"verify_signature": False})
    assert (claims["slot"], claims["case"], claims["page"]) == (slot, "agent", PAGE)

    again = [ad(api, slot, receipt, page=PAGE) for _ in range(3)]
    assert [r.status_code for r in again] == [200, 200, 200]
    assert again[0].json() == paid.json()
    assert chain.usdc_balance(payer.address) == 9_000  # not paid again
    assert verify(api, receipt, slot, PAGE).json()["payer"] == payer.address

    keys = state.serving.receipts
    good = Grant(
        payer=payer.address,
        slot_id=slot,
        case="agent",
        page=PAGE,
        tx_hash=claims["tx"],
        amount=1_000,
        nonce=claims["jti"],
        issued_at=utcnow().replace(microsecond=0),
        valid_until=utcnow().replace(microsecond=0) + timedelta(hours=1),
    )
    for bad, code in bad_receipts(keys, good):
        reply = ad(api, slot, bad, page=PAGE)
        assert reply.status_code == 402, (code, reply.text)
        assert reply.json()["error"]["code"] == code
        required = json.loads(base64.b64decode(reply.headers["PAYMENT-REQUIRED"]))
        assert required["error"] == code and required["accepts"][0]["amount"] == "1000"
    assert ad(api, slot, receipt).json()["error"]["code"] == "other_page"  # page not named
    ad_free = ad(api, slot, receipt, page=PAGE, ad_free="1")
    assert (ad_free.status_code, ad_free.json()["error"]["code"]) == (403, "other_case")
    assert chain.usdc_balance(payer.address) == 9_000


def test_a_page_must_be_an_http_url(api):
    for page in ("javascript:alert(1)", "ftp://news.example/", "https://", "x" * 2049):
        reply = ad(api, "slot_0000000000000000", page=page)
        assert reply.status_code == 422, page
        assert reply.json()["error"]["details"]["problems"][0]["field"] == "query.page"
