"""x402 payments for ad slots: the requirements a slot asks for, the `PAYMENT-REQUIRED` header,
and `Payments.pay`, which checks a payment against those requirements and settles it with an
in-process facilitator before anything is served, once per EIP-3009 authorization, answering
a signed, expiring receipt (api/ads/receipts.py).

    payments = Payments.from_settings(settings, engine, cache)   # once per app
    asks = requirements(chain_id=..., asset=..., asset_name="USD Coin", asset_version="2",
                        pay_to=..., amount=10_000, max_timeout_seconds=300)
    try:
        paid = await payments.pay(header, 2, asks, slot_key="slot_ab12:agent", page=None)
    except PaymentRejected as exc:  # 402; answer PAYMENT-REQUIRED again, with exc.code as error
        header = payment_required_header(asks, ResourceInfo(url=...), exc.code)
    response.headers.update(paid.headers)                     # PAYMENT-RESPONSE

Idempotency lives in `x402_payments`, unique on (chain_id, payer, nonce): the request that
inserts the row settles; concurrent duplicates wait for its outcome; a replay of the same
signed payload gets the same receipt while it is valid. Nothing is ever sent twice: a transfer
whose confirmation timed out stays `settling` with its tx hash and is resolved from the chain
(a later retry, or `reconcile()`), never by sending again.

The facilitator pays the gas, so a payer must not make it send what will revert: one
settlement per payer at a time across workers (a Redis lock with a token, expiring after the
settle timeout if a worker dies; a pending transfer keeps it until then), a different
authorization from a payer already settling is refused at once with `payer_busy` (retryable,
Retry-After) rather than queued, since it could only pay if the first one failed; the payer's
balance is read just before sending (`insufficient_funds`); a sent settlement that reverts is
counted in `/metrics` by reason and puts the payer in a cool-down that doubles per revert
(`payer_throttled`, Retry-After).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis
from eth_utils import is_address, keccak, to_checksum_address
from prometheus_client import Counter
from pydantic import ValidationError
from redis.lock import Lock
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col, select
from web3 import Web3
from web3.exceptions import TransactionNotFound
from x402 import x402FacilitatorSync
from x402.http.constants import PAYMENT_RESPONSE_HEADER, X_PAYMENT_RESPONSE_HEADER
from x402.http.utils import (
    encode_payment_required_header,
    encode_payment_response_header,
    safe_base64_decode,
)
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.constants import (
    AUTHORIZATION_STATE_ABI,
    ERR_AUTHORIZATION_VALUE_MISMATCH,
    ERR_NETWORK_MISMATCH,
    ERR_NONCE_ALREADY_USED,
    ERR_RECIPIENT_MISMATCH,
    ERR_SETTLEMENT_PENDING,
    ERR_TRANSACTION_FAILED,
    ERR_TRANSACTION_SIMULATION_FAILED,
    ERR_UNSUPPORTED_SCHEME,
    SCHEME_EXACT,
)
from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_facilitator
from x402.mechanisms.evm.exact.eip3009_utils import verify_eip3009_transfer_event
from x402.mechanisms.evm.types import ExactEIP3009Payload, is_permit2_payload
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS, V1_NETWORKS
from x402.payment_flow import apply_payment_flow_wire_extra, resolve_payment_flow
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequirements,
    PaymentRequirementsV1,
    ResourceInfo,
    SettleResponse,
)

from api.ads.models import FAILED, SETTLED, SETTLING, X402Payment
from api.ads.receipts import CASES, Grant, ReceiptKeys
from api.core.errors import ApiError, Unavailable
from api.core.fields import utcnow
from api.core.redis import connect as connect_redis
from api.core.settings import Settings

log = logging.getLogger(__name__)

# reason codes of our own checks (the facilitator's come from the SDK's constants)
ERR_INVALID_PAYLOAD = "invalid_payload"
ERR_INVALID_VERSION = "invalid_x402_version"
ERR_INVALID_NETWORK = "invalid_network"
ERR_ASSET_MISMATCH = "invalid_exact_evm_payload_asset_mismatch"
ERR_OTHER_SLOT = "payment_for_another_slot"
ERR_UNEXPECTED_SETTLE = "unexpected_settle_error"
ERR_INSUFFICIENT_FUNDS = "insufficient_funds"  # x402's code: our own balance read
ERR_PAYER_BUSY = "payer_busy"
ERR_PAYER_THROTTLED = "payer_throttled"

SETTLEMENT_REVERTS = Counter(
    "buzzer_x402_settlement_reverts",
    "x402 settlements sent by the facilitator that did not move the money (gas spent)",
    ["reason"],
)
PAYER_REFUSALS = Counter(
    "buzzer_x402_payer_refusals",
    "x402 payments refused before anything was sent, to spare the facilitator's gas",
    ["reason"],
)
BALANCE_OF_ABI = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]
REVERT_MEMORY_SECONDS = 86_400  # reverts count toward the cool-down for a day
BUSY_RETRY_SECONDS = 2

MAX_HEADER_CHARS = 16_384
MAX_PAYLOAD_DEPTH = 32  # an x402 payload nests 3 or 4 levels
POLL_SECONDS = 0.05
WAIT_MARGIN_SECONDS = 15.0  # beyond the settle timeout, how long a duplicate waits
MIN_LOOKBACK_BLOCKS = 1_000
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_V1_NAMES = {V1_NETWORK_CHAIN_IDS[n]: n for n in V1_NETWORKS if n in V1_NETWORK_CHAIN_IDS}

T = TypeVar("T")


class PaymentRejected(ApiError):
    """The payment does not pay for this request. `code` is the x402 reason; nothing was
    charged, except with `settlement_pending`: the transfer was sent and is not confirmed yet
    (`details["tx_hash"]`), and the same header may be presented again."""

    status = 402
    code = "payment_rejected"

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message, {"reason": reason, **details}, code=reason)


# -- requirements and the 402 header ---------------------------------------------------------


def requirements(
    *,
    chain_id: int,
    asset: str,
    asset_name: str,
    asset_version: str,
    pay_to: str,
    amount: int,
    max_timeout_seconds: int,
) -> PaymentRequirements:
    """What a slot asks for: exactly `amount` atomic units of the EIP-3009 token `asset`
    (whose EIP-712 domain is `asset_name`/`asset_version`) to `pay_to`, settled before the
    ad is served (`paymentFlow: upfront`)."""
    if amount <= 0:
        raise ValueError(f"a price must be positive, not {amount}")
    asks = PaymentRequirements(
        scheme=SCHEME_EXACT,
        network=f"eip155:{chain_id}",
        asset=to_checksum_address(asset),
        amount=str(amount),
        pay_to=to_checksum_address(pay_to),
        max_timeout_seconds=max_timeout_seconds,
        extra={"name": asset_name, "version": asset_version, "paymentFlow": "upfront"},
    )
    # the SDK's own rules: refuses a flow the exact scheme does not support, fixes the wire form
    scheme = ExactEvmServerScheme()  # type: ignore[no-untyped-call]  # untyped in the SDK
    flow = resolve_payment_flow(scheme, asks)  # type: ignore[arg-type]  # a dict, not a Mapping
    asks.extra = apply_payment_flow_wire_extra(asks.extra, flow)
    return asks


def payment_required_header(
    requirements: PaymentRequirements | Sequence[PaymentRequirements],
    resource: ResourceInfo,
    error: str | None = None,
) -> str:
    """The base64 `PAYMENT-REQUIRED` header: `{"x402Version": 2, "error", "resource",
    "accepts"}` (`error` left out when None)."""
    if isinstance(requirements, PaymentRequirements):
        requirements = [requirements]
    accepts = list(requirements)
    required = PaymentRequired(x402_version=2, error=error, resource=resource, accepts=accepts)
    return encode_payment_required_header(required)


# -- the payment -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Paid:
    """A settled payment: serve the request, and send `headers` (PAYMENT-RESPONSE)."""

    receipt: str
    valid_until: datetime
    tx_hash: str
    payer: str  # checksummed
    amount: int
    slot_key: str
    payment_response: str  # the base64 settle response
    x402_version: int = 2

    @property
    def headers(self) -> dict[str, str]:
        name = PAYMENT_RESPONSE_HEADER if self.x402_version == 2 else X_PAYMENT_RESPONSE_HEADER
        return {name: self.payment_response}


@dataclass(frozen=True)
class _Authorization:
    """The EIP-3009 authorization a payment carries (addresses and nonce lowercase)."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str

    @property
    def digest(self) -> str:
        """Tells a replay of this exact signed payload from another one with the same nonce."""
        fields = [self.payer, self.to, self.value, self.valid_after, self.valid_before]
        canonical = json.dumps([*fields, self.nonce, self.signature.lower()])
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class _Payment:
    version: int
    payload: PaymentPayload | PaymentPayloadV1
    requirements: PaymentRequirements | PaymentRequirementsV1  # as the facilitator takes them
    authorization: _Authorization
    network: str
    asset: str  # lowercase
    slot_key: str
    page: str | None = None  # the page the receipt is bound to, when the request named one


@dataclass(frozen=True)
class _Transfer:
    """What must have moved on-chain for a payment to count as settled."""

    asset: str
    payer: str
    nonce: str
    pay_to: str
    amount: int
    valid_before: int
    since: datetime  # no transfer of this authorization happened before (roughly)


Outcome = tuple[str, str | None]  # (SETTLED | FAILED | UNKNOWN, tx hash when settled)
UNKNOWN = "unknown"


class Payments:
    """Verifies and settles x402 payments with an in-process facilitator (one per app)."""

    def __init__(
        self,
        *,
        rpc_url: str,
        chain_id: int,
        facilitator_private_key: str,
        receipts: ReceiptKeys,
        engine: Engine,
        cache: redis.Redis,
        settle_timeout_seconds: float = 30.0,
        receipt_ttl_seconds: int = 3600,
        max_timeout_seconds: int = 300,
        revert_cooldown_seconds: float = 60.0,
        revert_cooldown_max_seconds: float = 86_400.0,
    ) -> None:
        if not facilitator_private_key:
            raise ValueError("no facilitator key is configured (BUZZER_FACILITATOR_PRIVATE_KEY)")
        self.chain_id = chain_id
        self.network = f"eip155:{chain_id}"
        self._v1_network = _V1_NAMES.get(chain_id)
        self._engine = engine
        self._cache = cache
        self.receipts = receipts
        self._receipt_ttl = timedelta(seconds=receipt_ttl_seconds)
        self._max_timeout = max_timeout_seconds
        self._wait_seconds = settle_timeout_seconds + WAIT_MARGIN_SECONDS
        # a payer's turn outlives any settle, so a worker that dies mid-settle frees it late,
        # never early
        self._turn_seconds = self._wait_seconds
        self._cooldown = revert_cooldown_seconds
        self._cooldown_max = revert_cooldown_max_seconds
        self.signer = FacilitatorWeb3Signer(
            private_key=facilitator_private_key,
            rpc_url=rpc_url,
            confirmation_timeout_seconds=settle_timeout_seconds,
        )
        # the sync facilitator, run in threads: the async one calls the same blocking
        # web3 code straight on the event loop
        self.facilitator = x402FacilitatorSync()
        register_exact_evm_facilitator(
            self.facilitator, self.signer, networks=self.network, simulate_in_settle=True
        )
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, cache: redis.Redis | None = None
    ) -> Payments:
        return cls(
            rpc_url=settings.rpc_url,
            chain_id=settings.chain_id,
            facilitator_private_key=settings.facilitator_private_key,
            receipts=ReceiptKeys.from_settings(settings),
            engine=engine,
            cache=cache if cache is not None else connect_redis(settings.redis_url),
            settle_timeout_seconds=settings.x402_settle_timeout_seconds,
            receipt_ttl_seconds=settings.x402_receipt_ttl_seconds,
            max_timeout_seconds=settings.x402_max_timeout_seconds,
            revert_cooldown_seconds=settings.x402_revert_cooldown_seconds,
            revert_cooldown_max_seconds=settings.x402_revert_cooldown_max_seconds,
        )

    # -- paying ------------------------------------------------------------------------------

    async def pay(
        self,
        header_value: str,
        version: int,
        requirements: PaymentRequirements,
        *,
        slot_key: str,
        page: str | None = None,
    ) -> Paid:
        """Settle the payment in `header_value` (`PAYMENT-SIGNATURE` with `version` 2,
        `X-PAYMENT` with 1) for `requirements` and `slot_key` (`<slot id>:<case>`), or raise
        `PaymentRejected`. Returns only once the transfer is confirmed; the same payload again
        returns the same `Paid` while its receipt is valid. The receipt is bound to `page`
        when given."""
        if requirements.network != self.network:
            raise ValueError(f"these payments settle on {self.network}, not {requirements.network}")
        payment = replace(self._payment(header_value, version, requirements, slot_key), page=page)
        row = await _io(self._load, payment)
        if row is not None:
            return await self._answer_existing(row, payment)
        await _io(self._check_cooldown, payment.authorization.payer)
        turn = await self._take_turn(payment)
        if isinstance(turn, X402Payment):  # a twin of this authorization settled it meanwhile
            return await self._answer_existing(turn, payment)
        # settle to the end even if the client goes away: the row must learn the outcome,
        # and the payer's turn must be given back
        task = asyncio.ensure_future(self._pay_in_turn(turn, payment))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _pay_in_turn(self, turn: Lock, payment: _Payment) -> Paid:
        """Verify, read the balance, claim and settle, holding the payer's turn; the turn is
        given back after, except while a sent transfer is unconfirmed (it expires then)."""
        keep_turn = False
        try:
            return await self._verify_and_settle(payment)
        except PaymentRejected as exc:
            keep_turn = exc.code == ERR_SETTLEMENT_PENDING
            raise
        finally:
            if not keep_turn:
                await _io(_give_back, turn)

    async def _verify_and_settle(self, payment: _Payment) -> Paid:
        row = await _io(self._load, payment)
        if row is not None:
            return await self._answer_existing(row, payment)
        try:
            verdict = await _io(self.facilitator.verify, payment.payload, payment.requirements)
        except Exception:
            log.exception("x402 verify raised for payer %s", payment.authorization.payer)
            raise Unavailable(
                "the payment cannot be verified now; present it again shortly",
                code="unexpected_verify_error",
            ) from None
        if not verdict.is_valid:
            reason = verdict.invalid_reason or ERR_TRANSACTION_SIMULATION_FAILED
            # a duplicate may fail verification because its twin just settled
            row = await _io(self._load, payment)
            if row is not None:
                return await self._answer_existing(row, payment)
            if reason in (ERR_NONCE_ALREADY_USED, ERR_TRANSACTION_SIMULATION_FAILED):
                # someone else may have submitted this very authorization: the money arrived
                state, tx_hash = await self._outcome(self._transfer(payment), None)
                if state == SETTLED and tx_hash:
                    return await self._record_settled_elsewhere(payment, tx_hash)
            raise PaymentRejected(reason, _explain(reason, verdict.invalid_message))
        await self._check_balance(payment)

        claimed = await _io(self._claim, payment)
        if claimed is None:
            row = await _io(self._load, payment)
            assert row is not None  # the unique key said it exists
            return await self._answer_existing(row, payment)
        return await self._settle(claimed, payment)

    async def reconcile(self) -> int:
        """Resolve, from the chain, rows left `settling` by a timeout, a crash or a handover;
        the number resolved (settled or failed)."""
        rows = await _io(self._stale_rows)
        resolved = 0
        for row in rows:
            if (await self._resolve(row)).state != SETTLING:
                resolved += 1
        return resolved

    # -- checks before anything is sent ------------------------------------------------------

    def _payment(
        self, header_value: str, version: int, requirements: PaymentRequirements, slot_key: str
    ) -> _Payment:
        if version not in (1, 2):
            raise PaymentRejected(ERR_INVALID_VERSION, f"x402 version {version} is not supported")
        if not header_value or len(header_value) > MAX_HEADER_CHARS:
            raise PaymentRejected(ERR_INVALID_PAYLOAD, "the payment header is empty or too long")
        payload = _decode_header(header_value)
        if payload.x402_version != version:
            raise PaymentRejected(
                ERR_INVALID_VERSION,
                f"the header carries an x402 v{version} payment, the payload says "
                f"v{payload.x402_version}",
            )
        facilitator_requirements: PaymentRequirements | PaymentRequirementsV1
        if isinstance(payload, PaymentPayload):
            _check_terms(payload.accepted, requirements)
            facilitator_requirements = requirements
            network = self.network
        else:
            network = self._v1_check(payload)
            facilitator_requirements = PaymentRequirementsV1(
                scheme=requirements.scheme,
                network=network,
                max_amount_required=requirements.amount,
                resource="",
                pay_to=requirements.pay_to,
                max_timeout_seconds=requirements.max_timeout_seconds,
                asset=requirements.asset,
                extra=requirements.extra,
            )
        authorization = _authorization(payload.payload)
        if authorization.to != requirements.pay_to.lower():
            raise PaymentRejected(
                ERR_RECIPIENT_MISMATCH,
                f"the authorization pays {to_checksum_address(authorization.to)}, this slot is "
                f"paid to {requirements.pay_to}",
            )
        if authorization.value != int(requirements.amount):
            raise PaymentRejected(
                ERR_AUTHORIZATION_VALUE_MISMATCH,
                f"the authorization pays {authorization.value}, this slot costs "
                f"{requirements.amount}",
            )
        return _Payment(
            version=version,
            payload=payload,
            requirements=facilitator_requirements,
            authorization=authorization,
            network=network,
            asset=requirements.asset.lower(),
            slot_key=slot_key,
        )

    def _v1_check(self, payload: PaymentPayloadV1) -> str:
        if self._v1_network is None:
            raise PaymentRejected(
                ERR_INVALID_NETWORK,
                f"x402 v1 has no name for chain {self.chain_id}: pay with x402 v2 "
                "(PAYMENT-SIGNATURE)",
            )
        if payload.scheme != SCHEME_EXACT:
            raise PaymentRejected(ERR_UNSUPPORTED_SCHEME, f"scheme {payload.scheme!r} is not paid")
        if payload.network != self._v1_network:
            raise PaymentRejected(
                ERR_NETWORK_MISMATCH,
                f"the payment is on {payload.network}, this slot is paid on {self._v1_network}",
            )
        return self._v1_network

    # -- sparing the facilitator's gas --------------------------------------------------------

    def _turn_key(self, payer: str) -> str:
        return f"x402:turn:{self.chain_id}:{payer}"

    def _cooldown_key(self, payer: str) -> str:
        return f"x402:cooldown:{self.chain_id}:{payer}"

    async def _take_turn(self, payment: _Payment) -> Lock | X402Payment:
        """The payer's turn to settle (a lock to give back), or the row of this very
        authorization when a twin holding the turn recorded it first. Another authorization
        holding the turn: `payer_busy`."""
        auth = payment.authorization
        deadline = time.monotonic() + self._wait_seconds
        while True:
            turn, holder = await _io(self._try_turn, auth)
            if turn is not None:
                return turn
            if holder is not None and not holder.startswith(f"{auth.nonce}:"):
                PAYER_REFUSALS.labels(reason=ERR_PAYER_BUSY).inc()
                raise _busy(ERR_PAYER_BUSY, BUSY_RETRY_SECONDS)
            row = await _io(self._load, payment)  # a twin settles it: its outcome is ours
            if row is not None:
                return row
            if time.monotonic() >= deadline:
                raise _busy(ERR_PAYER_BUSY, BUSY_RETRY_SECONDS)
            await asyncio.sleep(POLL_SECONDS)

    def _try_turn(self, auth: _Authorization) -> tuple[Lock | None, str | None]:
        """(the lock, None) when taken; else (None, who holds it: `<nonce>:<token>`)."""
        key = self._turn_key(auth.payer)
        try:
            turn = self._cache.lock(
                key, timeout=self._turn_seconds, blocking=False, thread_local=False
            )
            if turn.acquire(token=f"{auth.nonce}:{uuid.uuid4().hex}"):
                return turn, None
            holder = self._cache.get(key)
        except (redis.RedisError, OSError):
            log.exception("cannot take payer %s's turn in Redis", auth.payer)
            raise Unavailable(
                "payments are paused for a moment; present the payment again shortly",
                code="payer_lock_unavailable",
                headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
            ) from None
        if isinstance(holder, bytes):
            holder = holder.decode()
        return None, holder

    def _check_cooldown(self, payer: str) -> None:
        """`payer_throttled` while the payer is cooling down after a revert."""
        try:
            left_ms = int(self._cache.pttl(self._cooldown_key(payer)))
        except (redis.RedisError, OSError):
            log.exception("cannot read payer %s's cool-down in Redis", payer)
            raise Unavailable(
                "payments are paused for a moment; present the payment again shortly",
                code="payer_lock_unavailable",
                headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
            ) from None
        if left_ms > 0:
            PAYER_REFUSALS.labels(reason=ERR_PAYER_THROTTLED).inc()
            raise _busy(ERR_PAYER_THROTTLED, math.ceil(left_ms / 1000))

    def _record_revert(self, payer: str, reason: str, tx_hash: str) -> None:
        """Count a sent settlement that moved nothing, and cool the payer down: the first
        cool-down, doubled for each further revert within a day, up to the max."""
        SETTLEMENT_REVERTS.labels(reason=reason).inc()
        key = f"x402:reverts:{self.chain_id}:{payer}"
        try:
            count = int(self._cache.incr(key))
            self._cache.expire(key, REVERT_MEMORY_SECONDS)
            seconds = min(self._cooldown * 2 ** min(count - 1, 32), self._cooldown_max)
            self._cache.set(self._cooldown_key(payer), count, px=max(1, int(seconds * 1000)))
        except (redis.RedisError, OSError):
            log.exception("cannot record payer %s's revert in Redis", payer)
            return
        log.warning(
            "x402 settlement reverted: payer %s tx %s (%s); revert %d, cool-down %.0f s",
            payer,
            tx_hash,
            reason,
            count,
            seconds,
        )

    async def _check_balance(self, payment: _Payment) -> None:
        """Nothing is sent for a payer that no longer holds the amount (read in its turn, so
        no other settlement of ours for it is in flight)."""
        auth = payment.authorization
        try:
            held = await _io(self._balance_of, payment.asset, auth.payer)
        except Exception:
            log.exception("cannot read payer %s's balance", auth.payer)
            raise Unavailable(
                "the payment cannot be checked now; present it again shortly",
                code="unexpected_verify_error",
            ) from None
        if held < auth.value:
            PAYER_REFUSALS.labels(reason=ERR_INSUFFICIENT_FUNDS).inc()
            raise PaymentRejected(
                ERR_INSUFFICIENT_FUNDS,
                f"the payer holds {held} of the token, the payment is {auth.value}",
                balance=str(held),
            )

    def _balance_of(self, asset: str, payer: str) -> int:
        token = self._w3.eth.contract(address=Web3.to_checksum_address(asset), abi=BALANCE_OF_ABI)
        return int(token.functions.balanceOf(Web3.to_checksum_address(payer)).call())

    # -- settling ----------------------------------------------------------------------------

    async def _settle(self, row: X402Payment, payment: _Payment) -> Paid:
        result: SettleResponse | None
        try:
            result = await _io(self.facilitator.settle, payment.payload, payment.requirements)
        except Exception:
            log.exception("x402 settle raised for payer %s nonce %s", row.payer, row.nonce)
            result = None
        if result is not None and result.success:
            row = await _io(self._mark_settled, row.id, result.transaction)
            log.info("x402 payment settled for %s: tx %s", row.slot_key, row.tx_hash)
            return self._paid(row, payment)

        tx_hash = (result.transaction if result is not None else "") or None
        reason = (result.error_reason if result is not None else None) or ERR_UNEXPECTED_SETTLE
        state, settled_tx = await self._outcome(self._transfer(payment), tx_hash)
        if state == SETTLED and settled_tx:
            return self._paid(await _io(self._mark_settled, row.id, settled_tx), payment)
        # without a tx hash, only the facilitator's own refusals say nothing was sent
        refused = tx_hash is None and result is not None and reason not in _UNSURE_REASONS
        if state == FAILED or refused:
            await _io(self._mark_failed, row.id, reason, tx_hash)
            if state == FAILED and tx_hash:
                await _io(self._record_revert, row.payer, reason, tx_hash)
            message = result.error_message if result is not None else None
            raise PaymentRejected(reason, _explain(reason, message))
        await _io(self._hand_over, row.id, reason, tx_hash)
        log.warning("x402 payment pending: payer %s nonce %s tx %s", row.payer, row.nonce, tx_hash)
        raise _pending(tx_hash)

    async def _record_settled_elsewhere(self, payment: _Payment, tx_hash: str) -> Paid:
        claimed = await _io(self._claim, payment)
        if claimed is None:
            row = await _io(self._load, payment)
            assert row is not None
            return await self._answer_existing(row, payment)
        row = await _io(self._mark_settled, claimed.id, tx_hash)
        log.info("x402 payment settled by someone else: payer %s tx %s", row.payer, tx_hash)
        return self._paid(row, payment)

    async def _answer_existing(self, row: X402Payment, payment: _Payment) -> Paid:
        """A payment whose authorization we have seen: the same answer as the first time."""
        if row.payload_hash != payment.authorization.digest:
            raise PaymentRejected(
                ERR_NONCE_ALREADY_USED, "another payment already used this authorization nonce"
            )
        if row.slot_key != payment.slot_key:
            raise PaymentRejected(ERR_OTHER_SLOT, "this payment was made for another slot")
        deadline = time.monotonic() + self._wait_seconds
        while row.state == SETTLING and row.error is None and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            row = await _io(self._reload, row.id)
        if row.state == SETTLING:
            row = await self._resolve(row)
        if row.state == SETTLED:
            assert row.valid_until is not None
            if row.valid_until <= utcnow():
                raise PaymentRejected(
                    ERR_NONCE_ALREADY_USED,
                    f"this payment was settled and its access ended at "
                    f"{row.valid_until.isoformat()}: sign a new one",
                )
            return self._paid(row, payment)
        if row.state == FAILED:
            reason = row.error or ERR_TRANSACTION_FAILED
            raise PaymentRejected(reason, _explain(reason, None))
        raise _pending(row.tx_hash)

    async def _resolve(self, row: X402Payment) -> X402Payment:
        state, tx_hash = await self._outcome(_transfer_of(row), row.tx_hash)
        if state == SETTLED and tx_hash:
            return await _io(self._mark_settled, row.id, tx_hash)
        if state == FAILED:
            reason = row.error or ERR_TRANSACTION_FAILED
            if row.tx_hash:
                await _io(self._record_revert, row.payer, reason, row.tx_hash)
            return await _io(self._mark_failed, row.id, reason, None)
        return row

    async def _outcome(self, transfer: _Transfer, tx_hash: str | None) -> Outcome:
        """`_chain_outcome`, unknown while the chain cannot be asked."""
        try:
            return await _io(self._chain_outcome, transfer, tx_hash)
        except Exception:
            log.exception(
                "cannot read payer %s nonce %s from the chain", transfer.payer, transfer.nonce
            )
            return UNKNOWN, None

    # -- the chain (blocking; run in threads) ------------------------------------------------

    def _chain_outcome(self, transfer: _Transfer, tx_hash: str | None) -> Outcome:
        """Whether `transfer` happened (and in which tx), cannot happen any more, or may
        still happen (a sent transaction not mined yet)."""
        receipt = None
        if tx_hash:
            try:
                receipt = self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                receipt = None
            if receipt is not None and self._moved(receipt, transfer):
                return SETTLED, tx_hash
        token = self._w3.eth.contract(
            address=Web3.to_checksum_address(transfer.asset), abi=AUTHORIZATION_STATE_ABI
        )
        payer = Web3.to_checksum_address(transfer.payer)
        used = token.functions.authorizationState(payer, bytes.fromhex(transfer.nonce[2:])).call()
        if used:
            # by whom? our own tx, someone else submitting the same authorization, or another
            # authorization with this nonce (or a cancellation): only a matching Transfer counts
            for log_entry in self._authorization_logs(transfer):
                used_in = self._w3.eth.get_transaction_receipt(log_entry["transactionHash"])
                if self._moved(used_in, transfer):
                    return SETTLED, "0x" + bytes(log_entry["transactionHash"]).hex()
            return FAILED, None
        if receipt is not None:
            return FAILED, None  # mined, reverted: it can never succeed
        if transfer.valid_before <= int(self._w3.eth.get_block("latest")["timestamp"]):
            return FAILED, None  # expired unused
        return UNKNOWN, None

    def _moved(self, receipt: Any, transfer: _Transfer) -> bool:
        return int(receipt["status"]) == 1 and verify_eip3009_transfer_event(
            list(receipt["logs"]),
            transfer.asset,
            from_address=transfer.payer,
            to=transfer.pay_to,
            value=transfer.amount,
        )

    def _authorization_logs(self, transfer: _Transfer) -> list[Any]:
        latest = self._w3.eth.get_block("latest")
        seconds_back = int(latest["timestamp"]) - int(transfer.since.timestamp())
        # at least one second per block on the chains we serve
        first = max(0, int(latest["number"]) - max(MIN_LOOKBACK_BLOCKS, seconds_back))
        logs = self._w3.eth.get_logs(
            {
                "address": Web3.to_checksum_address(transfer.asset),
                "fromBlock": first,
                "toBlock": int(latest["number"]),
                "topics": [
                    AUTHORIZATION_USED_TOPIC,
                    "0x" + "00" * 12 + transfer.payer[2:],
                    transfer.nonce,
                ],
            }
        )
        return list(logs)

    def _transfer(self, payment: _Payment) -> _Transfer:
        auth = payment.authorization
        return _Transfer(
            asset=payment.asset,
            payer=auth.payer,
            nonce=auth.nonce,
            pay_to=auth.to,
            amount=auth.value,
            valid_before=auth.valid_before,
            since=_since(auth.valid_before, self._max_timeout),
        )

    # -- the table (blocking; run in threads) ------------------------------------------------

    def _load(self, payment: _Payment) -> X402Payment | None:
        with Session(self._engine) as session:
            return session.exec(
                select(X402Payment).where(
                    X402Payment.chain_id == self.chain_id,
                    X402Payment.payer == payment.authorization.payer,
                    X402Payment.nonce == payment.authorization.nonce,
                )
            ).first()

    def _reload(self, row_id: uuid.UUID) -> X402Payment:
        with Session(self._engine) as session:
            return session.exec(select(X402Payment).where(X402Payment.id == row_id)).one()

    def _stale_rows(self) -> list[X402Payment]:
        quiet_since = utcnow() - timedelta(seconds=self._wait_seconds)
        with Session(self._engine) as session:
            rows = session.exec(
                select(X402Payment).where(
                    X402Payment.chain_id == self.chain_id,
                    X402Payment.state == SETTLING,
                    col(X402Payment.error).is_not(None)
                    | (col(X402Payment.updated_at) < quiet_since),
                )
            ).all()
            return list(rows)

    def _claim(self, payment: _Payment) -> X402Payment | None:
        """Insert the payment's row as `settling`; None when it exists already."""
        auth = payment.authorization
        row = X402Payment(
            chain_id=self.chain_id,
            payer=auth.payer,
            nonce=auth.nonce,
            payload_hash=auth.digest,
            slot_key=payment.slot_key,
            pay_to=auth.to,
            asset=payment.asset,
            amount=auth.value,
            authorization_expires_at=datetime.fromtimestamp(auth.valid_before, UTC),
            state=SETTLING,
        )
        statement = (
            pg_insert(X402Payment)
            .values(**row.model_dump())
            .on_conflict_do_nothing(constraint="uq_x402_payments_authorization")
            .returning(col(X402Payment.id))
        )
        with Session(self._engine) as session:
            inserted = session.exec(statement).scalar_one_or_none()
            session.commit()
        return row if inserted is not None else None

    def _update(self, row_id: uuid.UUID, change: Callable[[X402Payment], None]) -> X402Payment:
        """Apply `change` to a row still `settling` (locked); the row as it is after."""
        with Session(self._engine) as session:
            row = session.exec(
                select(X402Payment).where(X402Payment.id == row_id).with_for_update()
            ).one()
            if row.state == SETTLING:
                change(row)
                row.updated_at = utcnow()
                session.add(row)
                session.commit()
                session.refresh(row)
            return row

    def _mark_settled(self, row_id: uuid.UUID, tx_hash: str) -> X402Payment:
        def settle(row: X402Payment) -> None:
            row.state, row.tx_hash, row.error = SETTLED, tx_hash, None
            row.valid_until = (utcnow() + self._receipt_ttl).replace(microsecond=0)
            row.receipt = self.receipts.sign(self._grant(row, None))  # the slot-wide one

        return self._update(row_id, settle)

    def _mark_failed(self, row_id: uuid.UUID, reason: str, tx_hash: str | None) -> X402Payment:
        def fail(row: X402Payment) -> None:
            row.state, row.error = FAILED, reason
            row.tx_hash = tx_hash or row.tx_hash

        return self._update(row_id, fail)

    def _hand_over(self, row_id: uuid.UUID, reason: str, tx_hash: str | None) -> X402Payment:
        """Leave the row `settling` for whoever asks next (or `reconcile`) to resolve."""

        def hand_over(row: X402Payment) -> None:
            row.error = reason
            row.tx_hash = tx_hash or row.tx_hash

        return self._update(row_id, hand_over)

    def _grant(self, row: X402Payment, page: str | None) -> Grant:
        assert row.tx_hash and row.valid_until
        slot_id, _, case = row.slot_key.partition(":")
        return Grant(
            payer=to_checksum_address(row.payer),
            slot_id=slot_id,
            case=case if case in CASES else None,
            page=page,
            tx_hash=row.tx_hash,
            amount=int(row.amount),
            nonce=row.nonce,
            issued_at=row.valid_until - self._receipt_ttl,
            valid_until=row.valid_until,
        )

    def _paid(self, row: X402Payment, payment: _Payment) -> Paid:
        assert row.tx_hash and row.valid_until
        version = payment.version
        network = self.network if version == 2 else (self._v1_network or self.network)
        payer = to_checksum_address(row.payer)
        response = SettleResponse(
            success=True,
            transaction=row.tx_hash,
            network=network,
            payer=payer,
            amount=str(int(row.amount)),
        )
        return Paid(
            receipt=self.receipts.sign(self._grant(row, payment.page)),
            valid_until=row.valid_until,
            tx_hash=row.tx_hash,
            payer=payer,
            amount=int(row.amount),
            slot_key=row.slot_key,
            payment_response=encode_payment_response_header(response),
            x402_version=version,
        )


# reasons that do not say whether a transaction went out
_UNSURE_REASONS = {ERR_TRANSACTION_FAILED, ERR_SETTLEMENT_PENDING, ERR_UNEXPECTED_SETTLE}

_MESSAGES = {
    ERR_NONCE_ALREADY_USED: "this authorization's nonce is already used on-chain",
    "invalid_exact_evm_insufficient_balance": "the payer does not hold enough of the token",
    "invalid_exact_evm_payload_signature": "the payment's signature is not valid",
    "invalid_exact_evm_payload_authorization_valid_before": (
        "the authorization has expired or expires too soon"
    ),
    "invalid_exact_evm_payload_authorization_valid_after": "the authorization is not valid yet",
    ERR_TRANSACTION_FAILED: "the transfer failed on-chain",
}


def _explain(reason: str, detail: str | None) -> str:
    message = _MESSAGES.get(reason, f"the payment was refused ({reason})")
    return f"{message}: {detail[:200]}" if detail and reason not in _MESSAGES else message


def _busy(reason: str, retry_after: int) -> PaymentRejected:
    if reason == ERR_PAYER_THROTTLED:
        message = (
            f"a settlement of this payer's reverted on-chain; it may pay again in {retry_after} s"
        )
    else:
        message = (
            "another payment of this payer's is being settled: present this one again once "
            "it is done"
        )
    rejected = PaymentRejected(reason, message, retry_after=retry_after)
    rejected.headers = {"Retry-After": str(retry_after)}
    return rejected


def _give_back(turn: Lock) -> None:
    try:
        turn.release()  # only if still ours: compare-and-delete on the token
    except (redis.RedisError, OSError):
        log.warning("a payer's turn was not given back (expired or Redis down); it expires")


def _pending(tx_hash: str | None) -> PaymentRejected:
    return PaymentRejected(
        ERR_SETTLEMENT_PENDING,
        "the transfer was sent but is not confirmed yet: present the same payment again shortly",
        tx_hash=tx_hash,
    )


def _decode_header(header_value: str) -> PaymentPayload | PaymentPayloadV1:
    """The payload in a payment header (base64 of JSON, the SDK's models), or `invalid_payload`
    for anything else, including JSON nested deeper than any client's payload (about 1,000
    levels exhaust the parser's recursion; fewer, what handles the payload after it)."""
    try:
        data = json.loads(safe_base64_decode(header_value.strip()))
    except (ValueError, RecursionError):
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "the header is not base64 JSON") from None
    if not isinstance(data, dict) or _deeper_than(data, MAX_PAYLOAD_DEPTH):
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "the payment header is not an x402 payload")
    try:
        if data.get("x402Version", 2) == 1:  # as the SDK's decode_payment_signature_header
            return PaymentPayloadV1.model_validate(data)
        return PaymentPayload.model_validate(data)
    except ValidationError:
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "the payment header is not valid") from None


def _deeper_than(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _authorization(payload: dict[str, Any]) -> _Authorization:
    if is_permit2_payload(payload):
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "only EIP-3009 authorizations are accepted")
    if not isinstance(payload.get("authorization"), dict):
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "the payload has no EIP-3009 authorization")
    parsed = ExactEIP3009Payload.from_dict(payload)
    auth, signature = parsed.authorization, parsed.signature or ""
    numbers = (auth.value, auth.valid_after, auth.valid_before)
    if not (
        is_address(auth.from_address)
        and is_address(auth.to)
        and all(isinstance(n, str) and _UINT.match(n) for n in numbers)
        and isinstance(auth.nonce, str)
        and _NONCE.match(auth.nonce)
        and isinstance(signature, str)
        and _HEX.match(signature)
    ):
        raise PaymentRejected(ERR_INVALID_PAYLOAD, "the authorization is incomplete or malformed")
    return _Authorization(
        payer=auth.from_address.lower(),
        to=auth.to.lower(),
        value=int(auth.value),
        valid_after=int(auth.valid_after),
        valid_before=int(auth.valid_before),
        nonce=auth.nonce.lower(),
        signature=signature,
    )


def _check_terms(accepted: PaymentRequirements, asks: PaymentRequirements) -> None:
    """The requirements the client says it accepted must be ours (the authorization is
    checked against ours separately)."""
    if accepted.scheme != asks.scheme:
        raise PaymentRejected(ERR_UNSUPPORTED_SCHEME, f"scheme {accepted.scheme!r} is not paid")
    if accepted.network != asks.network:
        raise PaymentRejected(
            ERR_NETWORK_MISMATCH,
            f"the payment is on {accepted.network}, this slot is paid on {asks.network}",
        )
    if accepted.asset.lower() != asks.asset.lower():
        raise PaymentRejected(
            ERR_ASSET_MISMATCH,
            f"the payment is in {accepted.asset}, this slot is paid in {asks.asset}",
        )
    if accepted.pay_to.lower() != asks.pay_to.lower():
        raise PaymentRejected(
            ERR_RECIPIENT_MISMATCH,
            f"the payment pays {accepted.pay_to}, this slot is paid to {asks.pay_to}",
        )
    if accepted.amount != asks.amount:
        raise PaymentRejected(
            ERR_AUTHORIZATION_VALUE_MISMATCH,
            f"the payment pays {accepted.amount}, this slot costs {asks.amount}",
        )


def _since(valid_before: int, max_timeout_seconds: int) -> datetime:
    """Roughly when the authorization was signed: the client signs `validBefore` =
    now + maxTimeoutSeconds."""
    latest = min(valid_before, int(time.time()))
    return datetime.fromtimestamp(latest - max_timeout_seconds - 600, UTC)


def _transfer_of(row: X402Payment) -> _Transfer:
    return _Transfer(
        asset=row.asset,
        payer=row.payer,
        nonce=row.nonce,
        pay_to=row.pay_to,
        amount=int(row.amount),
        valid_before=int(row.authorization_expires_at.timestamp()),
        since=row.created_at - timedelta(seconds=600),
    )


async def _io(fn: Callable[..., T], *args: Any) -> T:
    """Blocking work (web3, the database) off the event loop."""
    return await asyncio.to_thread(fn, *args)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller may be gone: do not warn about an unread rejection
