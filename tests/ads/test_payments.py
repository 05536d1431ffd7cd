"""x402 payments for ad slots, settled on a real anvil with real EIP-3009 signatures:
a good payment moves exactly the price once, however often and however concurrently it is
presented; every bad payment is refused with its x402 reason before anything is sent."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from x402 import x402FacilitatorSync
from x402.http.utils import (
    decode_payment_response_header,
    decode_payment_signature_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.constants import (
    ERR_AUTHORIZATION_VALUE_MISMATCH,
    ERR_INSUFFICIENT_BALANCE,
    ERR_INVALID_SIGNATURE,
    ERR_NETWORK_MISMATCH,
    ERR_NONCE_ALREADY_USED,
    ERR_RECIPIENT_MISMATCH,
    ERR_SETTLEMENT_PENDING,
    ERR_VALID_AFTER_FUTURE,
    ERR_VALID_BEFORE_EXPIRED,
)
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.schemas import PaymentPayloadV1

from api.ads.payments import (
    ERR_ASSET_MISMATCH,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INVALID_NETWORK,
    ERR_INVALID_PAYLOAD,
    ERR_INVALID_VERSION,
    ERR_OTHER_SLOT,
    ERR_PAYER_BUSY,
    ERR_PAYER_THROTTLED,
    Paid,
    PaymentRejected,
    payment_required_header,
)
from tests.ads.conftest import (
    FACILITATOR,
    PRICE,
    RESOURCE,
    asks_for,
    client_header,
    client_header_v1,
    fresh_address,
    make_payments,
    new_payer,
    pay,
    rows,
    signed_header,
)
from tests.support.chain import dev_account

pytestmark = pytest.mark.usefixtures("empty_payments")


def facilitator_sent(node, index: int = FACILITATOR) -> int:
    return node.sent_by(dev_account(index).address)


def rejected(payments, header, asks, slot="slot-top", version=2) -> PaymentRejected:
    with pytest.raises(PaymentRejected) as caught:
        asyncio.run(payments.pay(header, version, asks, slot_key=slot))
    assert caught.value.status == 402
    return caught.value


# -- the 402 answer and receipts ------------------------------------------------------------


def test_payment_required_header_is_the_documented_v2_shape(node):
    asks = asks_for(node, fresh_address())
    header = payment_required_header(asks, RESOURCE, "PAYMENT-SIGNATURE header is required")

    body = json.loads(base64.b64decode(header))
    assert set(body) == {"x402Version", "error", "resource", "accepts"}
    assert body["x402Version"] == 2
    assert body["error"] == "PAYMENT-SIGNATURE header is required"
    assert body["resource"] == {"url": RESOURCE.url, "description": RESOURCE.description}
    (accept,) = body["accepts"]
    assert accept == {
        "scheme": "exact",
        "network": "eip155:1337",
        "asset": node.chain.usdc,
        "amount": str(PRICE),
        "payTo": asks.pay_to,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2", "paymentFlow": "upfront"},
    }


# -- a good payment -------------------------------------------------------------------------


def test_a_good_payment_moves_the_price_once_and_answers_a_receipt(node, engine, payments):
    pay_to, payer = fresh_address(), new_payer(node, usdc=3 * PRICE)
    asks = asks_for(node, pay_to)
    sent = facilitator_sent(node)

    paid = pay(payments, client_header(payer, asks), asks)

    assert isinstance(paid, Paid)
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert node.chain.usdc_balance(payer.address) == 2 * PRICE
    assert facilitator_sent(node) == sent + 1
    tx = node.chain.w3.eth.get_transaction_receipt(paid.tx_hash)
    assert tx["status"] == 1
    assert paid.payer == payer.address and paid.amount == PRICE and paid.slot_key == "slot-top"
    response = decode_payment_response_header(paid.headers["PAYMENT-RESPONSE"])
    assert response.success and response.transaction == paid.tx_hash
    assert response.payer == payer.address and response.network == "eip155:1337"
    grant = payments.receipts.verify(paid.receipt, slot_id="slot-top")
    assert (grant.payer, grant.tx_hash, grant.amount) == (payer.address, paid.tx_hash, PRICE)
    assert grant.valid_until == paid.valid_until
    (row,) = rows(engine)
    assert row["state"] == "settled" and row["tx_hash"] == paid.tx_hash
    assert (row["payer"], row["pay_to"], int(row["amount"])) == (
        payer.address.lower(),
        pay_to.lower(),
        PRICE,
    )


def test_a_replay_after_success_gets_the_same_receipt_and_moves_nothing(node, engine, payments):
    pay_to, payer = fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    header = client_header(payer, asks)
    first = pay(payments, header, asks)
    sent = facilitator_sent(node)

    replays = [pay(payments, header, asks) for _ in range(5)]

    assert all(replay == first for replay in replays)
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert facilitator_sent(node) == sent
    assert len(rows(engine)) == 1


def test_one_header_sent_50_times_at_once_transfers_once(node, engine, payments):
    pay_to, payer = fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    header = client_header(payer, asks)
    sent = facilitator_sent(node)

    async def at_once():
        calls = [payments.pay(header, 2, asks, slot_key="slot-top") for _ in range(50)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(at_once())

    paid = [r for r in results if isinstance(r, Paid)]
    assert paid, results
    assert all(isinstance(r, Paid | PaymentRejected) for r in results), results
    assert {(p.receipt, p.tx_hash) for p in paid} == {(paid[0].receipt, paid[0].tx_hash)}
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert facilitator_sent(node) == sent + 1
    (row,) = rows(engine)
    assert row["state"] == "settled"
    assert pay(payments, header, asks) == paid[0]


def test_someone_else_submitting_the_same_authorization_first_counts_once(node, engine, payments):
    pay_to, payer = fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    header = client_header(payer, asks)
    payload = decode_payment_signature_header(header).payload
    auth, signature = payload["authorization"], bytes.fromhex(payload["signature"][2:])
    front_run = node.chain.submit_authorization(auth, signature, submitter=7)
    sent = facilitator_sent(node)

    paid = pay(payments, header, asks)

    assert paid.tx_hash == "0x" + bytes(front_run["transactionHash"]).hex()
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert facilitator_sent(node) == sent
    (row,) = rows(engine)
    assert row["state"] == "settled" and row["tx_hash"] == paid.tx_hash
    assert pay(payments, header, asks) == paid


# -- refused before anything is sent --------------------------------------------------------


def _bad_payments():
    """(name, build(node, payer, asks) -> header, expected reason). Times are read when a
    header is built, not when the cases are collected: a long suite reaches these tests many
    minutes after collection."""

    def now() -> int:
        return int(time.time())

    def other_asks(node, asks, **change):
        fields = {"pay_to": asks.pay_to, "amount": PRICE, **change}
        return asks_for(node, **fields)

    def tampered(node, payer, asks):
        decoded = decode_payment_signature_header(client_header(payer, asks))
        signature = decoded.payload["signature"]
        decoded.payload["signature"] = (
            signature[:10] + ("0" if signature[10] != "0" else "1") + (signature[11:])
        )
        return encode_payment_signature_header(decoded)

    return [
        (
            "amount above the price",
            lambda node, payer, asks: client_header(
                payer, other_asks(node, asks, amount=PRICE + 1)
            ),
            ERR_AUTHORIZATION_VALUE_MISMATCH,
        ),
        (
            "amount below the price",
            lambda node, payer, asks: client_header(
                payer, other_asks(node, asks, amount=PRICE - 1)
            ),
            ERR_AUTHORIZATION_VALUE_MISMATCH,
        ),
        (
            "authorization below the price, accepted terms copied",
            lambda node, payer, asks: signed_header(payer, asks, value=PRICE - 1),
            ERR_AUTHORIZATION_VALUE_MISMATCH,
        ),
        (
            "another payTo",
            lambda node, payer, asks: client_header(
                payer, other_asks(node, asks, pay_to=fresh_address())
            ),
            ERR_RECIPIENT_MISMATCH,
        ),
        (
            "authorization to another address, accepted terms copied",
            lambda node, payer, asks: signed_header(payer, asks, to=fresh_address()),
            ERR_RECIPIENT_MISMATCH,
        ),
        (
            "another asset",
            lambda node, payer, asks: client_header(
                payer, other_asks(node, asks, asset=node.chain.addresses["PaymentEscrow"])
            ),
            ERR_ASSET_MISMATCH,
        ),
        (
            "another network",
            lambda node, payer, asks: client_header(payer, other_asks(node, asks, chain_id=8453)),
            ERR_NETWORK_MISMATCH,
        ),
        (
            "validBefore passed",
            lambda node, payer, asks: signed_header(payer, asks, valid_before=now() - 10),
            ERR_VALID_BEFORE_EXPIRED,
        ),
        (
            "validBefore too close",
            lambda node, payer, asks: signed_header(payer, asks, valid_before=now() + 3),
            ERR_VALID_BEFORE_EXPIRED,
        ),
        (
            "validAfter in the future",
            lambda node, payer, asks: signed_header(payer, asks, valid_after=now() + 600),
            ERR_VALID_AFTER_FUTURE,
        ),
        (
            "signed by someone else",
            lambda node, payer, asks: signed_header(payer, asks, signer=new_payer(node, usdc=0)),
            ERR_INVALID_SIGNATURE,
        ),
        ("signature tampered with", tampered, ERR_INVALID_SIGNATURE),
        (
            "payer without funds",
            lambda node, payer, asks: client_header(new_payer(node, usdc=PRICE - 1), asks),
            ERR_INSUFFICIENT_BALANCE,
        ),
        ("not base64 JSON", lambda node, payer, asks: "bm90IGpzb24=", ERR_INVALID_PAYLOAD),
        (
            "a v1 payload in the v2 header",
            lambda node, payer, asks: encode_payment_signature_header(
                PaymentPayloadV1(scheme="exact", network="base", payload={})
            ),
            ERR_INVALID_VERSION,
        ),
    ]


@pytest.mark.parametrize(
    ("build", "reason"),
    [pytest.param(build, reason, id=name) for name, build, reason in _bad_payments()],
)
def test_a_bad_payment_is_refused_and_nothing_moves(node, engine, payments, build, reason):
    pay_to, payer = fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    header = build(node, payer, asks)
    sent, held = facilitator_sent(node), node.chain.usdc_balance(payer.address)

    refusal = rejected(payments, header, asks)

    assert refusal.code == reason, refusal.message
    assert refusal.details["reason"] == reason and refusal.message
    assert node.chain.usdc_balance(pay_to) == 0
    assert node.chain.usdc_balance(payer.address) == held
    assert facilitator_sent(node) == sent  # no settlement attempted
    assert rows(engine) == []


def test_a_nonce_already_used_on_chain_is_refused(node, engine, payments):
    pay_to, elsewhere, payer = fresh_address(), fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    spent = signed_header(payer, asks, to=elsewhere, accepted=asks_for(node, elsewhere))
    used = decode_payment_signature_header(spent).payload
    auth, signature = used["authorization"], bytes.fromhex(used["signature"][2:])
    node.chain.submit_authorization(auth, signature, submitter=7)
    sent = facilitator_sent(node)

    refusal = rejected(payments, signed_header(payer, asks, nonce=auth["nonce"]), asks)

    assert refusal.code == ERR_NONCE_ALREADY_USED
    assert node.chain.usdc_balance(pay_to) == 0
    assert facilitator_sent(node) == sent
    assert rows(engine) == []


def test_a_payment_for_one_slot_is_refused_for_another(node, engine, payments):
    publisher_a, publisher_b, payer = fresh_address(), fresh_address(), new_payer(node)
    slot_a = asks_for(node, publisher_a)
    dearer_b = asks_for(node, publisher_a, amount=2 * PRICE)
    elsewhere_b = asks_for(node, publisher_b)
    header = client_header(payer, slot_a)

    assert rejected(payments, header, dearer_b, "slot-b").code == ERR_AUTHORIZATION_VALUE_MISMATCH
    assert rejected(payments, header, elsewhere_b, "slot-b").code == ERR_RECIPIENT_MISMATCH
    assert rows(engine) == []
    paid = pay(payments, header, slot_a, "slot-a")
    sent = facilitator_sent(node)
    # the same price and payee, but the payment was made for slot A
    assert rejected(payments, header, slot_a, "slot-b").code == ERR_OTHER_SLOT
    assert pay(payments, header, slot_a, "slot-a") == paid
    assert node.chain.usdc_balance(publisher_a) == PRICE
    assert node.chain.usdc_balance(publisher_b) == 0
    assert facilitator_sent(node) == sent


def test_x402_v1_needs_a_chain_v1_can_name(node, engine, payments):
    asks = asks_for(node, fresh_address())
    header = encode_payment_signature_header(
        PaymentPayloadV1(scheme="exact", network="base", payload={})
    )
    assert rejected(payments, header, asks, version=1).code == ERR_INVALID_NETWORK


def test_an_x402_v1_payment_settles_on_a_chain_v1_names(base_node, engine, cache):
    payments = make_payments(base_node, engine, cache, facilitator=FACILITATOR)
    pay_to, payer = fresh_address(), new_payer(base_node)
    asks = asks_for(base_node, pay_to)
    header = client_header_v1(payer, asks)

    paid = asyncio.run(payments.pay(header, 1, asks, slot_key="slot-top"))

    assert base_node.chain.usdc_balance(pay_to) == PRICE
    response = decode_payment_response_header(paid.headers["X-PAYMENT-RESPONSE"])
    assert response.success and response.network == "base" and response.transaction == paid.tx_hash
    assert asyncio.run(payments.pay(header, 1, asks, slot_key="slot-top")) == paid
    assert rejected(payments, header, asks).code == ERR_INVALID_VERSION  # v1 sent as v2
    assert base_node.chain.usdc_balance(pay_to) == PRICE


# -- when the chain moves under us ----------------------------------------------------------


def test_funds_moved_between_verify_and_settle_serve_nothing(node, engine, cache):
    payments = make_payments(node, engine, cache, facilitator=FACILITATOR + 1)
    pay_to, sink = fresh_address(), fresh_address()
    payer = new_payer(node, usdc=PRICE, eth=10**18)
    asks = asks_for(node, pay_to)

    def drain(context):
        usdc = node.chain.contract("TestUSDC")
        tx = usdc.functions.transfer(sink, PRICE).build_transaction(
            {
                "from": payer.address,
                "nonce": node.chain.w3.eth.get_transaction_count(payer.address),
                "chainId": node.chain.chain_id,
            }
        )
        signed = payer.sign_transaction(tx)
        node.chain.w3.eth.wait_for_transaction_receipt(
            node.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        )

    payments.facilitator.on_before_settle(drain)
    header = client_header(payer, asks)

    assert rejected(payments, header, asks).code == ERR_INSUFFICIENT_BALANCE
    assert rejected(payments, header, asks).code == ERR_INSUFFICIENT_BALANCE
    assert node.chain.usdc_balance(pay_to) == 0 and node.chain.usdc_balance(sink) == PRICE
    assert facilitator_sent(node, FACILITATOR + 1) == 0
    (row,) = rows(engine)
    assert row["state"] == "failed" and row["error"] == ERR_INSUFFICIENT_BALANCE


def test_a_confirmation_timeout_stays_pending_and_never_sends_twice(node, engine, cache):
    facilitator = FACILITATOR + 2
    payments = make_payments(node, engine, cache, facilitator=facilitator, settle_timeout_seconds=1)
    pay_to, payer = fresh_address(), new_payer(node)
    asks = asks_for(node, pay_to)
    header = client_header(payer, asks)
    node.rpc("evm_setAutomine", False)
    try:
        pending = rejected(payments, header, asks)
        again = rejected(payments, header, asks)
        assert facilitator_sent(node, facilitator) == 1  # one transaction, still in the pool
        assert node.chain.usdc_balance(pay_to) == 0
        assert asyncio.run(payments.reconcile()) == 0  # nothing to learn from the chain yet
    finally:
        node.rpc("evm_setAutomine", True)

    assert pending.code == again.code == ERR_SETTLEMENT_PENDING
    tx_hash = pending.details["tx_hash"]
    assert tx_hash and again.details["tx_hash"] == tx_hash
    (row,) = rows(engine)
    assert (row["state"], row["tx_hash"]) == ("settling", tx_hash)

    node.rpc("evm_mine")
    assert asyncio.run(payments.reconcile()) == 1

    paid = pay(payments, header, asks)
    assert paid.tx_hash == tx_hash
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert facilitator_sent(node, facilitator) == 1
    (row,) = rows(engine)
    assert row["state"] == "settled"


# -- the facilitator's gas --------------------------------------------------------------------


def test_twenty_authorizations_from_a_payer_funded_once_send_one_transaction(node, engine, cache):
    """A payer funded for one price sends 20 different authorizations at once to two
    workers: one transfer, no reverted transaction paid for by the facilitator, 19 clear
    refusals."""
    facilitator = FACILITATOR + 3
    workers = [make_payments(node, engine, cache, facilitator=facilitator) for _ in range(2)]
    pay_to, payer = fresh_address(), new_payer(node, usdc=PRICE)
    asks = asks_for(node, pay_to)
    headers = [signed_header(payer, asks) for _ in range(20)]  # 20 nonces
    sent = facilitator_sent(node, facilitator)

    async def at_once():
        calls = [
            workers[i % 2].pay(header, 2, asks, slot_key="slot-top")
            for i, header in enumerate(headers)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(at_once())

    paid = [r for r in results if isinstance(r, Paid)]
    refused = [r for r in results if isinstance(r, PaymentRejected)]
    assert (len(paid), len(refused)) == (1, 19), results
    insufficient = {ERR_INSUFFICIENT_BALANCE, ERR_INSUFFICIENT_FUNDS}
    assert {r.code for r in refused} <= {ERR_PAYER_BUSY, *insufficient}, refused
    assert all(r.message and r.status == 402 for r in refused)
    assert all(r.headers["Retry-After"] for r in refused if r.code == ERR_PAYER_BUSY)
    assert node.chain.usdc_balance(pay_to) == PRICE
    assert facilitator_sent(node, facilitator) == sent + 1  # no reverted transaction
    assert node.chain.w3.eth.get_transaction_receipt(paid[0].tx_hash)["status"] == 1
    assert [row["state"] for row in rows(engine)] == ["settled"]
    # the payer's turn was given back: a later authorization is judged on its balance
    late = rejected(workers[0], signed_header(payer, asks), asks)
    assert late.code in insufficient


def _reverts() -> dict[str, float]:
    """The reverted settlements in /metrics, by reason."""
    text = generate_latest().decode()
    return {
        family.labels["reason"]: family.value
        for metric in text_string_to_metric_families(text)
        if metric.name == "buzzer_x402_settlement_reverts"
        for family in metric.samples
        if family.name.endswith("_total")
    }


def test_a_payer_whose_settlement_reverts_is_counted_and_cooled_down(node, engine, cache):
    """A payer that empties its wallet after our checks makes the transfer revert (here the
    facilitator also skips its last simulation, so it really sends): the revert is counted
    in /metrics, and the payer is refused for a cool-down that doubles with each revert."""
    facilitator = FACILITATOR + 4
    payments = make_payments(
        node, engine, cache, facilitator=facilitator, revert_cooldown_seconds=40
    )
    payments.facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(
        payments.facilitator, payments.signer, networks=payments.network, simulate_in_settle=False
    )
    pay_to, sink = fresh_address(), fresh_address()
    payer = new_payer(node, usdc=PRICE, eth=10**18)
    asks = asks_for(node, pay_to)

    def drain(context):
        usdc = node.chain.contract("TestUSDC")
        held = node.chain.usdc_balance(payer.address)
        tx = usdc.functions.transfer(sink, held).build_transaction(
            {
                "from": payer.address,
                "nonce": node.chain.w3.eth.get_transaction_count(payer.address),
                "chainId": node.chain.chain_id,
            }
        )
        node.chain.w3.eth.wait_for_transaction_receipt(
            node.chain.w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
        )

    payments.facilitator.on_before_settle(drain)
    cooldowns = []
    for _ in range(2):
        sent, counted = facilitator_sent(node, facilitator), _reverts()
        reverted = rejected(payments, signed_header(payer, asks), asks)
        assert facilitator_sent(node, facilitator) == sent + 1  # sent, and reverted
        counted_now = _reverts()
        assert counted_now.get(reverted.code, 0) == counted.get(reverted.code, 0) + 1, reverted

        node.chain.mint_usdc(payer.address, PRICE)  # funded again, but cooling down
        throttled = rejected(payments, signed_header(payer, asks), asks)
        assert throttled.code == ERR_PAYER_THROTTLED and throttled.message
        assert facilitator_sent(node, facilitator) == sent + 1  # nothing more sent
        assert _reverts() == counted_now
        cooldowns.append(int(throttled.headers["Retry-After"]))
        cache.delete(f"x402:cooldown:{node.chain.chain_id}:{payer.address.lower()}")  # time passes

    assert 35 <= cooldowns[0] <= 40 and 75 <= cooldowns[1] <= 80, cooldowns
    assert node.chain.usdc_balance(pay_to) == 0
    assert [row["state"] for row in rows(engine)] == ["failed", "failed"]


# -- headers that are not x402 payloads --------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _b64_json(value: object) -> str:
    return _b64(json.dumps(value))


def _nested(depth: int) -> str:
    """JSON text of lists `depth` deep (json.dumps itself cannot write 1,000 levels)."""
    return "[" * depth + "]" * depth


def _with_payload(header: str, change, deep: int = 0) -> str:
    """The header's payload changed; a value "DEEP" in it becomes lists `deep` levels deep."""
    data = json.loads(base64.b64decode(header))
    change(data)
    return _b64(json.dumps(data).replace('"DEEP"', _nested(deep)))


def _malformed_headers():
    return [
        ("nested 1,000 deep", lambda h: _b64(_nested(1_000))),
        (
            "nested 1,000 deep in the payload",
            lambda h: _with_payload(h, lambda d: d["payload"].update(authorization="DEEP"), 1_000),
        ),
        (
            "nested 200 deep in accepted.extra",
            lambda h: _with_payload(h, lambda d: d["accepted"]["extra"].update(deep="DEEP"), 200),
        ),
        (
            "authorization a list",
            lambda h: _with_payload(h, lambda d: d["payload"].update(authorization=[1, 2])),
        ),
        (
            "authorization a string",
            lambda h: _with_payload(h, lambda d: d["payload"].update(authorization="from")),
        ),
        ("payload a list", lambda h: _with_payload(h, lambda d: d.update(payload=[]))),
        ("version a string", lambda h: _with_payload(h, lambda d: d.update(x402Version="two"))),
        ("a JSON array", lambda h: _b64_json([1, 2, 3])),
        ("a JSON string", lambda h: _b64_json("payment")),
        ("not base64", lambda h: "%%%not base64%%%"),
        ("base64 of bytes that are not UTF-8", lambda h: base64.b64encode(b"\xff\xfe{}").decode()),
        ("unicode", lambda h: "paiement-€-🙂"),
        ("too long", lambda h: "A" * 20_000),
    ]


@pytest.fixture
def api_recursion_limit():
    """The API process's recursion limit (Python's 1,000): py_ecc, which ape imports, raises
    the test process's to 100,000, under which a 1,000-deep header parses."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    yield
    sys.setrecursionlimit(before)


@pytest.mark.parametrize(
    "spoil", [pytest.param(spoil, id=name) for name, spoil in _malformed_headers()]
)
@pytest.mark.usefixtures("api_recursion_limit")
def test_a_header_that_is_not_an_x402_payload_is_invalid_payload(node, engine, payments, spoil):
    pay_to, payer = fresh_address(), new_payer(node, usdc=0)
    asks = asks_for(node, pay_to)
    header = spoil(signed_header(payer, asks))
    sent = facilitator_sent(node)

    refusal = rejected(payments, header, asks)

    assert refusal.code == ERR_INVALID_PAYLOAD, refusal.message
    assert facilitator_sent(node) == sent
    assert rows(engine) == []
