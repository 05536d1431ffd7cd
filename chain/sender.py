"""The one way a backend key sends a transaction: its own nonce counter, fresh gas and fee
estimates, idempotent broadcasts, fee bumps of the same content, and the revert reason.

    sender = Sender(Rpc(url), settings.settler_private_key, chain_id)
    tx = sender.prepare(escrow, call_data("PaymentEscrow", "spend_batch", epoch, ids, amounts))
    save_step(tx.to_json())                      # persisted before it can reach the chain
    receipt = sender.send_prepared(tx, persist=save_step)

After a crash, `SignedTx.from_json(saved)` and `send_prepared` again: the same transaction is
broadcast once more (or a fee bump of it: same nonce, to, data, value and gas), never a
different one, so a step cannot run twice. `send(to, data)` does all of it in one call.

A revert is a `TxReverted` with the contract's reason, whether the node refused to estimate
the transaction or mined it with status 0 (the reason then comes from replaying the call at
the receipt's block).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import to_checksum_address

from chain.rpc import Rpc, RpcError

log = logging.getLogger(__name__)

GWEI = 10**9
DEFAULT_PRIORITY_FEE = GWEI
# geth refuses a replacement below +10 % on both fees; a margin above it
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8
ERROR_SELECTOR = "08c379a0"  # Error(string)
PANIC_SELECTOR = "4e487b71"  # Panic(uint256)
SEND_ATTEMPTS = 6

# How nodes word the outcomes of eth_sendRawTransaction that are not failures of ours.
_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "already exists")
_NONCE_TOO_LOW = ("nonce too low", "nonce has already been used", "oldnonce", "invalid nonce")
_UNDERPRICED = ("underpriced", "replacement fee too low")
_TRANSIENT = ("header not found", "timeout", "try again", "busy", "rate limit", "overloaded")


class ChainSendError(Exception):
    """A transaction could not be sent or did not succeed."""


class TxReverted(ChainSendError):
    """The call reverts: in estimation (`tx_hash` None) or mined with status 0."""

    def __init__(self, reason: str | None, tx_hash: str | None = None) -> None:
        where = f"transaction {tx_hash} reverted" if tx_hash else "transaction would revert"
        super().__init__(f"{where}: {reason or 'no reason given'}")
        self.reason = reason
        self.tx_hash = tx_hash


class NonceTaken(ChainSendError):
    """Another transaction, not one of this step's versions, was mined with its nonce: this
    one can never be mined. The caller decides whether the step still has to be done."""

    def __init__(self, tx: SignedTx) -> None:
        super().__init__(
            f"nonce {tx.nonce} of {tx.sender} was used by a transaction other than {tx.hash}"
            + (f" and its earlier versions {', '.join(tx.replaces)}" if tx.replaces else "")
        )
        self.tx = tx


class TxNotMined(ChainSendError):
    """No version of the transaction was mined in time; `tx` is the newest, to resume with."""

    def __init__(self, tx: SignedTx, waited: float) -> None:
        super().__init__(f"transaction {tx.hash} (nonce {tx.nonce}) not mined in {waited:.0f} s")
        self.tx = tx


@dataclass(frozen=True)
class SignedTx:
    """One signed transaction, ready to broadcast; `replaces` are the hashes of the earlier
    versions of the same step (same nonce and content, lower fees), any of which may be the
    one that gets mined. `type` 2 is EIP-1559; 0 is legacy, where both fees are the gas price.
    """

    hash: str
    raw: str
    sender: str
    chain_id: int
    nonce: int
    to: str
    data: str
    value: int
    gas: int
    max_fee: int
    priority_fee: int
    type: int = 2
    replaces: tuple[str, ...] = ()

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every version's hash, newest first."""
        return (self.hash, *reversed(self.replaces))

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "replaces": list(self.replaces)})

    @classmethod
    def from_json(cls, saved: str | Mapping[str, Any]) -> SignedTx:
        fields = json.loads(saved) if isinstance(saved, str) else dict(saved)
        return cls(**{**fields, "replaces": tuple(fields.get("replaces", ()))})


class Sender:
    """Sends transactions signed with one private key. Thread-safe: concurrent callers get
    distinct nonces."""

    def __init__(
        self,
        rpc: Rpc,
        private_key: str,
        chain_id: int,
        *,
        gas_margin: float = 1.25,
        receipt_timeout: float = 120.0,
        bump_after: float = 30.0,
        poll_interval: float = 0.5,
    ) -> None:
        if not private_key:
            raise ChainSendError("no private key is configured for this sender")
        self.rpc = rpc
        self.chain_id = chain_id
        self.gas_margin = gas_margin
        self.receipt_timeout = receipt_timeout
        self.bump_after = bump_after
        self.poll_interval = poll_interval
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_checked = False

    # ---------------------------------------------------------------- building

    def prepare(
        self,
        to: str,
        data: str,
        value: int = 0,
        nonce: int | None = None,
        gas: int | None = None,
    ) -> SignedTx:
        """Estimate, price and sign a call without sending it. A call that reverts in
        estimation raises `TxReverted` and takes no nonce. `gas` skips the estimate."""
        self._check_chain()
        to = to_checksum_address(to)
        if gas is None:
            gas = math.ceil(self._estimate_gas(to, data, value) * self.gas_margin)
        max_fee, priority_fee, tx_type = self._fees()
        if nonce is None:
            nonce = self._take_nonce()
        return self._sign(
            SignedTx(
                hash="",
                raw="",
                sender=self.address,
                chain_id=self.chain_id,
                nonce=nonce,
                to=to,
                data=data,
                value=value,
                gas=gas,
                max_fee=max_fee,
                priority_fee=priority_fee,
                type=tx_type,
            )
        )

    def bump(self, tx: SignedTx) -> SignedTx:
        """The same transaction (nonce, to, data, value, gas) with fees raised by at least an
        eighth, or to today's fees if they are higher; it replaces `tx` in the node's pool."""
        max_fee, priority_fee, _ = self._fees()
        bumped_priority = max(_raised(tx.priority_fee), priority_fee)
        bumped_max = max(_raised(tx.max_fee), max_fee, bumped_priority)
        if tx.type == 0:
            bumped_priority = bumped_max
        return self._sign(
            replace(
                tx,
                max_fee=bumped_max,
                priority_fee=bumped_priority,
                replaces=(*tx.replaces, tx.hash),
            )
        )

    # ---------------------------------------------------------------- sending

    def broadcast(self, tx: SignedTx) -> str:
        """Hand `tx` to the node; safe to repeat. Returns the hash of the version the node
        holds or mined: `tx.hash`, or an earlier version's if that one was mined already.
        Raises `NonceTaken` when a different transaction used the nonce."""
        if tx.sender != self.address:
            raise ChainSendError(f"{tx.hash} is signed by {tx.sender}, not by {self.address}")
        reply = self._request("eth_sendRawTransaction", [tx.raw])
        error = reply.get("error")
        if error is None:
            log.info("sent %s (nonce %d) from %s", tx.hash, tx.nonce, self.address)
            return tx.hash
        message = str(error.get("message", "")).lower()
        if _says(message, _ALREADY_KNOWN):
            return tx.hash
        if _says(message, _NONCE_TOO_LOW):
            for _ in range(3):  # a node behind a load balancer may lag on receipts
                mined = self._mined_version(tx)
                if mined is not None:
                    return mined
                time.sleep(self.poll_interval)
            self._resync_nonce()
            raise NonceTaken(tx)
        if _says(message, _UNDERPRICED):
            held = self._known_version(tx)
            if held is not None:  # an earlier broadcast of a pricier version of ours
                return held
            raise ChainSendError(
                f"another pending transaction of {self.address} holds nonce {tx.nonce} "
                f"at a higher price than {tx.hash}: {error.get('message')}"
            )
        self._resync_nonce()  # a refused transaction leaves a gap in our counter
        raise ChainSendError(f"node refused {tx.hash} (nonce {tx.nonce}): {error}")

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        return result

    def wait(self, tx: SignedTx | str, timeout: float | None = None) -> dict[str, Any]:
        """The receipt of `tx` (of whichever version of it was mined). Raises `TxReverted`
        for status 0, `NonceTaken` when another transaction took the nonce and `TxNotMined`
        (or a `ChainSendError` for a bare hash) when nothing was mined within `timeout`."""
        timeout = self.receipt_timeout if timeout is None else timeout
        hashes = (tx,) if isinstance(tx, str) else tx.hashes
        deadline = time.monotonic() + timeout
        nonce_moved = False
        while True:
            calls: list[tuple[str, Sequence[Any]]] = [
                ("eth_getTransactionReceipt", [h]) for h in hashes
            ]
            if isinstance(tx, SignedTx):
                calls.append(("eth_getTransactionCount", [tx.sender, "latest"]))
            replies = self.rpc.batch(calls)
            receipt: dict[str, Any] | None = next((r for r in replies[: len(hashes)] if r), None)
            if receipt is not None:
                self._check_status(receipt, tx)
                return receipt
            if isinstance(tx, SignedTx) and int(replies[-1], 16) > tx.nonce:
                # the nonce moved on without any of ours: ask again once, then give up
                if nonce_moved:
                    raise NonceTaken(tx)
                nonce_moved = True
            now = time.monotonic()
            if now >= deadline:
                if isinstance(tx, SignedTx):
                    raise TxNotMined(tx, timeout)
                raise ChainSendError(f"transaction {tx} not mined in {timeout:.0f} s")
            time.sleep(min(self.poll_interval, deadline - now))

    def send_prepared(
        self, tx: SignedTx, persist: Callable[[SignedTx], None] | None = None
    ) -> dict[str, Any]:
        """Broadcast `tx` and wait for its receipt; while it is not mined, replace it every
        `bump_after` seconds by a fee bump of the same content, handed to `persist` before it
        is broadcast. Gives up with `TxNotMined` after `receipt_timeout`."""
        deadline = time.monotonic() + self.receipt_timeout
        self.broadcast(tx)
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self.wait(tx, timeout=max(0.0, min(self.bump_after, remaining)))
            except TxNotMined:
                if time.monotonic() >= deadline:
                    raise TxNotMined(tx, self.receipt_timeout) from None
            bumped = self.bump(tx)
            log.warning(
                "%s (nonce %d) not mined after %.0f s: replacing it by %s at max fee %d",
                tx.hash,
                tx.nonce,
                self.bump_after,
                bumped.hash,
                bumped.max_fee,
            )
            if persist is not None:
                persist(bumped)
            tx = bumped
            self.broadcast(tx)

    def send(
        self,
        to: str,
        data: str,
        value: int = 0,
        *,
        gas: int | None = None,
        persist: Callable[[SignedTx], None] | None = None,
    ) -> dict[str, Any]:
        """Prepare, persist, broadcast and wait: the receipt of a successful transaction.
        `NonceTaken` is raised, not retried with a new nonce: the transaction that took the
        nonce may have done this very step (another instance with the same key), and only
        the caller can tell from the chain whether it still has to be done."""
        tx = self.prepare(to, data, value, gas=gas)
        if persist is not None:
            persist(tx)
        return self.send_prepared(tx, persist)

    # ---------------------------------------------------------------- internals

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        """The node's whole reply, error data included (which `Rpc.call` drops). Transport
        faults and passing node errors are retried (a repeated broadcast is harmless); other
        errors ('nonce too low', reverts, -32000 among them) are left to the caller to read,
        where `Rpc.call` would retry them as transient."""
        for attempt in range(SEND_ATTEMPTS):
            payload = {"jsonrpc": "2.0", "id": next(self.rpc._ids), "method": method}
            reply: dict[str, Any] = self.rpc._with_retries(
                {**payload, "params": list(params)}, method
            )
            message = str((reply.get("error") or {}).get("message", "")).lower()
            if not (message and _says(message, _TRANSIENT)) or attempt + 1 == SEND_ATTEMPTS:
                return reply
            log.debug("%s failed (%s); retry %d", method, message, attempt + 1)
            time.sleep(self.poll_interval * (attempt + 1))
        raise AssertionError("unreachable")

    def _check_chain(self) -> None:
        if self._chain_checked:
            return
        actual = self.rpc.chain_id()
        if actual != self.chain_id:
            raise ChainSendError(
                f"the node at {self.rpc.url} is chain {actual}, not {self.chain_id}: "
                "refusing to sign for the wrong chain"
            )
        self._chain_checked = True

    def _estimate_gas(self, to: str, data: str, value: int) -> int:
        call = {"from": self.address, "to": to, "data": data, "value": hex(value)}
        reply = self._request("eth_estimateGas", [call])
        error = reply.get("error")
        if error is None:
            return int(reply["result"], 16)
        reverted, reason = _revert_reason(error)
        if reverted:
            raise TxReverted(reason)
        raise ChainSendError(f"cannot estimate gas for a call to {to}: {error}")

    def _fees(self) -> tuple[int, int, int]:
        """(max fee, priority fee, tx type): EIP-1559 where the chain has a base fee, else
        the legacy gas price for both."""
        latest = self.rpc.block("latest") or {}
        if latest.get("baseFeePerGas") is None:
            price = int(self.rpc.call("eth_gasPrice"), 16)
            return price, price, 0
        history = self.rpc.call("eth_feeHistory", [1, "latest", []])
        base = int((history or {}).get("baseFeePerGas", [latest["baseFeePerGas"]])[-1], 16)
        try:
            priority = int(self.rpc.call("eth_maxPriorityFeePerGas", retries=2), 16)
        except RpcError:
            priority = DEFAULT_PRIORITY_FEE
        return 2 * base + priority, priority, 2

    def _take_nonce(self) -> int:
        """The next nonce: our own counter, moved up to the node's pending count when other
        senders of this key went ahead."""
        with self._lock:
            pending = int(self.rpc.call("eth_getTransactionCount", [self.address, "pending"]), 16)
            nonce = pending if self._next_nonce is None else max(self._next_nonce, pending)
            self._next_nonce = nonce + 1
            return nonce

    def _resync_nonce(self) -> None:
        with self._lock:
            self._next_nonce = None

    def _sign(self, tx: SignedTx) -> SignedTx:
        fields: dict[str, Any] = {
            "chainId": tx.chain_id,
            "nonce": tx.nonce,
            "to": tx.to,
            "data": tx.data,
            "value": tx.value,
            "gas": tx.gas,
        }
        if tx.type == 0:
            fields["gasPrice"] = tx.max_fee
        else:
            fields.update(type=2, maxFeePerGas=tx.max_fee, maxPriorityFeePerGas=tx.priority_fee)
        signed = self._account.sign_transaction(fields)
        return replace(tx, hash=_hex(signed.hash), raw=_hex(signed.raw_transaction))

    def _mined_version(self, tx: SignedTx) -> str | None:
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in tx.hashes])
        return next((h for h, r in zip(tx.hashes, receipts, strict=True) if r), None)

    def _known_version(self, tx: SignedTx) -> str | None:
        found = self.rpc.batch([("eth_getTransactionByHash", [h]) for h in tx.hashes])
        return next((h for h, t in zip(tx.hashes, found, strict=True) if t), None)

    def _check_status(self, receipt: Mapping[str, Any], tx: SignedTx | str) -> None:
        if int(receipt["status"], 16) == 1:
            return
        tx_hash = str(receipt["transactionHash"])
        mined = self.rpc.call("eth_getTransactionByHash", [tx_hash])
        call = {
            "from": mined["from"],
            "to": mined["to"],
            "data": mined["input"],
            "value": mined["value"],
            "gas": mined["gas"],
        }
        reply = self._request("eth_call", [call, receipt["blockNumber"]])
        error = reply.get("error")
        reason = _revert_reason(error)[1] if error else None
        if reason is None and int(receipt["gasUsed"], 16) >= int(mined["gas"], 16):
            reason = "out of gas"
        raise TxReverted(reason, tx_hash)


def decode_revert(data: str | bytes | None) -> str | None:
    """The reason in revert data: Error(string)'s text, "panic 0x11" for Panic(uint256), the
    raw hex of a custom error, None for an empty revert."""
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data or b""
    if not raw:
        return None
    selector, body = raw[:4].hex(), raw[4:]
    try:
        if selector == ERROR_SELECTOR:
            text: str = abi_decode(["string"], body)[0]
            return text
        if selector == PANIC_SELECTOR:
            return f"panic {hex(abi_decode(['uint256'], body)[0])}"
    except Exception:  # malformed standard error: show it as it is
        pass
    return "0x" + raw.hex()


def _revert_reason(error: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(whether a JSON-RPC error is a revert, its reason). Nodes put the revert data in
    `data` as hex, as {"data": hex} or as "Reverted 0x…"; some only in the message."""
    message = str(error.get("message", ""))
    data = error.get("data")
    if isinstance(data, Mapping):
        data = data.get("data") or data.get("result")
    if isinstance(data, str):
        data = data.removeprefix("Reverted ").strip()
    is_hex = isinstance(data, str) and data.startswith("0x")
    reverted = int(error.get("code", 0)) == 3 or "revert" in message.lower()
    if not reverted:
        return False, None
    if is_hex:
        return True, decode_revert(data)
    detail = message.split("execution reverted", 1)[-1].lstrip(": ").strip()
    return True, detail or None


def _raised(fee: int) -> int:
    return -(-fee * BUMP_NUMERATOR // BUMP_DENOMINATOR)


def _says(message: str, phrases: Sequence[str]) -> bool:
    return any(phrase in message for phrase in phrases)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()
