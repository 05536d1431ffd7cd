"""TestUSDC: the USDC-like token x402 settles through. Its EIP-712 domain must match Base USDC's
and its EIP-3009 authorizations must accept exactly what a wallet signs with eth-account."""

from typing import Any

import ape
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from tests.contracts.conftest import USDC

PRICE = 250_000  # 0.25 USDC, a typical ad price
NONCE = keccak(text="x402-payment-1")
HOUR = 3_600

AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


@pytest.fixture
def domain(usdc) -> dict[str, Any]:
    return {
        "name": "USD Coin",
        "version": "2",
        "chainId": ape.chain.chain_id,
        "verifyingContract": usdc.address,
    }


@pytest.fixture
def payer(advertiser, mint_usdc):
    mint_usdc(advertiser, 10 * USDC)
    return advertiser


@pytest.fixture
def sign(domain):
    """Sign an EIP-3009 authorization the way a wallet does; returns (values, v, r, s)."""

    def _sign(
        signer,
        primary_type: str = "TransferWithAuthorization",
        domain_overrides: dict[str, Any] | None = None,
        **values: Any,
    ) -> tuple[dict[str, Any], int, bytes, bytes]:
        signed = Account.sign_typed_data(
            signer.private_key,
            domain_data={**domain, **(domain_overrides or {})},
            message_types={primary_type: AUTHORIZATION_FIELDS},
            message_data=values,
        )
        return values, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")

    return _sign


@pytest.fixture
def authorization(sign, payer, publisher):
    """Sign `payer` → `publisher` for PRICE, valid for the next hour, optionally overridden."""

    def _authorization(signer=None, primary_type="TransferWithAuthorization", **overrides):
        now = ape.chain.pending_timestamp
        values = {
            "from": payer.address,
            "to": publisher.address,
            "value": PRICE,
            "validAfter": now - HOUR,
            "validBefore": now + HOUR,
            "nonce": NONCE,
        }
        domain_overrides = overrides.pop("domain", None)
        values.update(overrides)
        return sign(signer or payer, primary_type, domain_overrides, **values)

    return _authorization


def submit(function, values, v, r, s, sender):
    return function(
        values["from"],
        values["to"],
        values["value"],
        values["validAfter"],
        values["validBefore"],
        values["nonce"],
        v,
        r,
        s,
        sender=sender,
    )


# metadata and domain


def test_token_metadata(usdc):
    assert usdc.decimals() == 6
    assert usdc.name() == "USD Coin"
    assert usdc.symbol() == "USDC"


def test_eip712_domain_matches_base_usdc(usdc):
    fields, name, version, chain_id, verifying_contract, salt, extensions = usdc.eip712Domain()

    assert fields == b"\x0f"
    assert name == "USD Coin"
    assert version == "2"
    assert chain_id == ape.chain.chain_id
    assert verifying_contract == usdc.address
    assert salt == b"\x00" * 32
    assert extensions == []


def test_domain_separator_matches_eth_account(usdc, domain):
    signable = encode_typed_data(
        domain_data=domain,
        message_types={"TransferWithAuthorization": AUTHORIZATION_FIELDS},
        message_data={
            "from": usdc.address,
            "to": usdc.address,
            "value": 0,
            "validAfter": 0,
            "validBefore": 0,
            "nonce": NONCE,
        },
    )

    assert usdc.DOMAIN_SEPARATOR() == signable.header


# transferWithAuthorization


def test_transfer_with_authorization_moves_funds(usdc, authorization, payer, publisher, stranger):
    values, v, r, s = authorization()

    # A facilitator, not the payer, submits the payer's signature.
    tx = submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)

    assert tx.events == [
        usdc.AuthorizationUsed(authorizer=payer, nonce=NONCE),
        usdc.Transfer(sender=payer, receiver=publisher, value=PRICE),
    ]
    assert usdc.balanceOf(payer) == 10 * USDC - PRICE
    assert usdc.balanceOf(publisher) == PRICE
    assert usdc.authorizationState(payer, NONCE)


def test_authorization_state_of_unused_nonce_is_false(usdc, payer):
    assert not usdc.authorizationState(payer, NONCE)


def test_transfer_with_reused_nonce_reverts(usdc, authorization, publisher, stranger):
    values, v, r, s = authorization()
    submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)

    with ape.reverts("eip3009: authorization is used or canceled"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)
    assert usdc.balanceOf(publisher) == PRICE


def test_transfer_not_yet_valid_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization(validAfter=ape.chain.pending_timestamp + 60)

    with ape.reverts("eip3009: authorization is not yet valid"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_expired_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization(validBefore=ape.chain.pending_timestamp - 1)

    with ape.reverts("eip3009: authorization is expired"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_after_window_closes_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization()
    ape.chain.mine(timestamp=values["validBefore"] + 1)

    with ape.reverts("eip3009: authorization is expired"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_signed_by_wrong_key_reverts(usdc, authorization, payer, stranger):
    values, v, r, s = authorization(signer=stranger)

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)
    assert usdc.balanceOf(payer) == 10 * USDC


def test_transfer_with_tampered_amount_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization()
    tampered = {**values, "value": values["value"] + 1}

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.transferWithAuthorization, tampered, v, r, s, sender=stranger)


def test_transfer_with_tampered_recipient_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization()
    redirected = {**values, "to": stranger.address}

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.transferWithAuthorization, redirected, v, r, s, sender=stranger)


@pytest.mark.parametrize(
    "domain_override",
    [{"version": "1"}, {"name": "USDC"}, {"chainId": 8453}],
    ids=["version", "name", "chain-id"],
)
def test_transfer_signed_for_other_domain_reverts(usdc, authorization, stranger, domain_override):
    values, v, r, s = authorization(domain=domain_override)

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_signed_for_other_deployment_reverts(usdc, authorization, stranger, payout):
    values, v, r, s = authorization(domain={"verifyingContract": payout.address})

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_above_balance_reverts_and_keeps_nonce(usdc, authorization, payer, stranger):
    values, v, r, s = authorization(value=10 * USDC + 1)

    with ape.reverts("erc20: transfer amount exceeds balance"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)
    assert not usdc.authorizationState(payer, NONCE)


# receiveWithAuthorization


def test_receive_with_authorization_by_payee(usdc, authorization, payer, publisher):
    values, v, r, s = authorization(primary_type="ReceiveWithAuthorization")

    tx = submit(usdc.receiveWithAuthorization, values, v, r, s, sender=publisher)

    assert tx.events == [
        usdc.AuthorizationUsed(authorizer=payer, nonce=NONCE),
        usdc.Transfer(sender=payer, receiver=publisher, value=PRICE),
    ]
    assert usdc.balanceOf(publisher) == PRICE
    assert usdc.authorizationState(payer, NONCE)


def test_receive_with_authorization_by_non_payee_reverts(usdc, authorization, stranger):
    values, v, r, s = authorization(primary_type="ReceiveWithAuthorization")

    with ape.reverts("eip3009: caller must be the payee"):
        submit(usdc.receiveWithAuthorization, values, v, r, s, sender=stranger)


def test_transfer_signature_cannot_be_used_to_receive(usdc, authorization, publisher):
    values, v, r, s = authorization(primary_type="TransferWithAuthorization")

    with ape.reverts("eip3009: invalid signature"):
        submit(usdc.receiveWithAuthorization, values, v, r, s, sender=publisher)


# cancelAuthorization


@pytest.fixture
def cancellation(domain):
    def _cancellation(signer, authorizer, nonce=NONCE):
        signed = Account.sign_typed_data(
            signer.private_key,
            domain_data=domain,
            message_types={
                "CancelAuthorization": [
                    {"name": "authorizer", "type": "address"},
                    {"name": "nonce", "type": "bytes32"},
                ]
            },
            message_data={"authorizer": authorizer.address, "nonce": nonce},
        )
        return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")

    return _cancellation


def test_cancel_authorization_burns_nonce(usdc, cancellation, authorization, payer, stranger):
    v, r, s = cancellation(payer, payer)

    tx = usdc.cancelAuthorization(payer, NONCE, v, r, s, sender=stranger)

    assert tx.events == [usdc.AuthorizationCanceled(authorizer=payer, nonce=NONCE)]
    assert usdc.authorizationState(payer, NONCE)
    values, v, r, s = authorization()
    with ape.reverts("eip3009: authorization is used or canceled"):
        submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)
    assert usdc.balanceOf(payer) == 10 * USDC


def test_cancel_by_someone_else_reverts(usdc, cancellation, payer, stranger):
    v, r, s = cancellation(stranger, payer)

    with ape.reverts("eip3009: invalid signature"):
        usdc.cancelAuthorization(payer, NONCE, v, r, s, sender=stranger)
    assert not usdc.authorizationState(payer, NONCE)


def test_cancel_used_nonce_reverts(usdc, cancellation, authorization, payer, stranger):
    values, v, r, s = authorization()
    submit(usdc.transferWithAuthorization, values, v, r, s, sender=stranger)
    v, r, s = cancellation(payer, payer)

    with ape.reverts("eip3009: authorization is used or canceled"):
        usdc.cancelAuthorization(payer, NONCE, v, r, s, sender=payer)
