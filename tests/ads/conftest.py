"""Fixtures for the x402 payment tests: an anvil of this module's own with the Buzzer
deployment replayed on it (so no other test's time jumps or reverts reach it, and the
facilitator's cached nonce stays true), a migrated database for the module (the payments table
emptied before each test), `Payments` on both, and payers that sign real EIP-3009
authorizations (with the official x402 client, or by hand for the malformed ones)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, text
from web3 import Web3
from x402 import x402Client
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
from x402.schemas import (
    PaymentPayload,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    ResourceInfo,
)

from api.ads.payments import Payments, payment_required_header, requirements
from api.ads.receipts import ReceiptKeys, derived_key
from api.core.db import make_engine
from api.core.redis import connect as connect_redis
from chain.contracts import BUILD_MANIFEST
from migrations import upgrade
from tests.support import postgres
from tests.support.anvil import Anvil, DeploymentRecord, start_anvil
from tests.support.chain import ADMIN, USDC, ChainDriver, dev_account

V1_NETWORK_NAMES = {chain_id: name for name, chain_id in V1_NETWORK_CHAIN_IDS.items()}
SECRET = "test-receipt-secret-" + "x" * 40
ISSUER = "https://buzzer.test"
FACILITATOR = 25  # anvil dev account that pays the gas of settlements
PRICE = USDC // 100  # 0.01 USDC
BASE_CHAIN_ID = 8453
RESOURCE = ResourceInfo(url="https://buzzer.test/x402/ad?slot=top", description="an ad slot")


@dataclass
class Node:
    anvil: Anvil
    chain: ChainDriver

    @property
    def url(self) -> str:
        return self.anvil.url

    def rpc(self, method: str, *params: Any) -> Any:
        return self.anvil.call(method, *params)

    def sent_by(self, address: str) -> int:
        """Transactions `address` has sent, mined or pending."""
        return int(self.rpc("eth_getTransactionCount", address, "pending"), 16)


@pytest.fixture(scope="module")
def node(deployment_record: DeploymentRecord, tmp_path_factory: pytest.TempPathFactory):
    scratch = tmp_path_factory.mktemp("ads-anvil")
    with start_anvil(log_path=scratch / "anvil.log") as own:
        deployment = deployment_record.replay(own.url, scratch / "deployments")
        yield Node(own, ChainDriver(own.url, deployment))


@pytest.fixture(scope="module")
def base_node(tmp_path_factory: pytest.TempPathFactory):
    """An anvil with Base mainnet's chain id (8453, which x402 v1 names `base`) and only a
    TestUSDC deployed on it: for the v1 `X-PAYMENT` path."""
    scratch = tmp_path_factory.mktemp("ads-base-anvil")
    with start_anvil(chain_id=BASE_CHAIN_ID, log_path=scratch / "anvil.log") as own:
        build = json.loads(BUILD_MANIFEST.read_text())["contractTypes"]["TestUSDC"]
        w3 = Web3(Web3.HTTPProvider(own.url))
        admin = dev_account(ADMIN)
        token = w3.eth.contract(abi=build["abi"], bytecode=build["deploymentBytecode"]["bytecode"])
        tx = token.constructor("USD Coin", "USDC", "USD Coin", "2").build_transaction(
            {"from": admin.address, "nonce": 0, "chainId": BASE_CHAIN_ID}
        )
        sent = w3.eth.send_raw_transaction(admin.sign_transaction(tx).raw_transaction)
        address = w3.eth.wait_for_transaction_receipt(sent)["contractAddress"]
        deployment = {"chain_id": BASE_CHAIN_ID, "contracts": {"TestUSDC": address}}
        yield Node(own, ChainDriver(own.url, deployment))


@pytest.fixture(scope="module")
def engine(pg_server: str) -> Iterator[Engine]:
    with postgres.fresh_database(pg_server) as url:
        upgrade(url)
        db = make_engine(url)
        yield db
        db.dispose()


@pytest.fixture(scope="module")
def cache(redis_url: str):
    client = connect_redis(redis_url)
    yield client
    client.close()


def receipt_keys() -> ReceiptKeys:
    return ReceiptKeys(derived_key(SECRET), issuer=ISSUER)


@pytest.fixture
def empty_payments(node: Node, base_node: Node, engine: Engine, cache) -> None:
    # asks for every module fixture, so they are all set up before the first test (ape's
    # pytest plugin warns about module fixtures set up later)
    with engine.begin() as db:
        db.execute(text("TRUNCATE x402_payments"))


def make_payments(
    node: Node, engine: Engine, cache: Any, facilitator: int = FACILITATOR, **kw: Any
):
    return Payments(
        rpc_url=node.url,
        chain_id=node.chain.chain_id,
        facilitator_private_key=dev_account(facilitator).key.hex(),
        receipts=receipt_keys(),
        engine=engine,
        cache=cache,
        **{"settle_timeout_seconds": 10, **kw},
    )


@pytest.fixture(scope="module")
def payments(node: Node, engine: Engine, cache) -> Payments:
    return make_payments(node, engine, cache)


def asks_for(node: Node, pay_to: str, amount: int = PRICE, **kw: Any) -> PaymentRequirements:
    """A slot's requirements: `amount` of the deployment's TestUSDC to `pay_to`."""
    fields = {
        "chain_id": node.chain.chain_id,
        "asset": node.chain.usdc,
        "asset_name": "USD Coin",
        "asset_version": "2",
        "pay_to": pay_to,
        "amount": amount,
        "max_timeout_seconds": 300,
        **kw,
    }
    return requirements(**fields)


def new_payer(node: Node, usdc: int = 10 * PRICE, eth: int = 0) -> LocalAccount:
    """A fresh wallet holding `usdc` (and `eth` wei, to send transactions of its own)."""
    account: LocalAccount = Account.create()
    if usdc:
        node.chain.mint_usdc(account.address, usdc)
    if eth:
        node.rpc("anvil_setBalance", account.address, hex(eth))
    return account


def client_header(payer: LocalAccount, asks: PaymentRequirements) -> str:
    """What an x402 client sends: the official client answers our 402 header."""
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer), networks=asks.network)
    # a local token is not one of the client's known assets: allow it, capped
    cap = str(100 * USDC)
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": asks.network, "asset": asks.asset, "max_amount_per_payment": cap}
            ]
        }
    )
    required = decode_payment_required_header(payment_required_header(asks, RESOURCE))
    payload = asyncio.run(client.create_payment_payload(required))
    return encode_payment_signature_header(payload)


def client_header_v1(payer: LocalAccount, asks: PaymentRequirements) -> str:
    """What an x402 v1 client sends in `X-PAYMENT` for the same terms (v1 names the network
    and calls the price `maxAmountRequired`)."""
    network = V1_NETWORK_NAMES[int(asks.network.split(":")[1])]
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer))
    cap = str(100 * USDC)
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": network, "asset": asks.asset, "max_amount_per_payment": cap}
            ]
        }
    )
    required = PaymentRequiredV1(
        accepts=[
            PaymentRequirementsV1(
                scheme=asks.scheme,
                network=network,
                max_amount_required=asks.amount,
                resource=RESOURCE.url,
                pay_to=asks.pay_to,
                max_timeout_seconds=asks.max_timeout_seconds,
                asset=asks.asset,
                extra=asks.extra,
            )
        ]
    )
    payload = asyncio.run(client.create_payment_payload(required))
    return encode_payment_signature_header(payload)


def signed_header(
    payer: LocalAccount,
    asks: PaymentRequirements,
    *,
    signer: LocalAccount | None = None,
    to: str | None = None,
    value: int | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: str | None = None,
    accepted: PaymentRequirements | None = None,
) -> str:
    """An authorization signed by hand the way the exact EVM client signs it, with any field
    overridden (the client itself only signs what the requirements say)."""
    message = {
        "from": payer.address,
        "to": to or asks.pay_to,
        "value": int(asks.amount) if value is None else value,
        "validAfter": valid_after,
        "validBefore": int(time.time()) + 300 if valid_before is None else valid_before,
        "nonce": nonce or "0x" + os.urandom(32).hex(),
    }
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": asks.extra["name"],
            "version": asks.extra["version"],
            "chainId": int(asks.network.split(":")[1]),
            "verifyingContract": asks.asset,
        },
        "message": message,
    }
    signature = (signer or payer).sign_typed_data(full_message=typed).signature
    authorization = {k: str(v) for k, v in message.items()}
    payload = PaymentPayload(
        x402_version=2,
        accepted=accepted or asks,
        resource=RESOURCE,
        payload={"authorization": authorization, "signature": "0x" + bytes(signature).hex()},
    )
    return encode_payment_signature_header(payload)


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as db:
        result = db.execute(text("SELECT * FROM x402_payments ORDER BY created_at"))
        return [dict(row._mapping) for row in result]


def pay(payments: Payments, header: str, asks: PaymentRequirements, slot: str = "slot-top"):
    return asyncio.run(payments.pay(header, 2, asks, slot_key=slot))


def fresh_address() -> str:
    address: str = Account.create().address
    return address
