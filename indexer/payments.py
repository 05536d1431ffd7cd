"""The payment token: x402 payments to Buzzer's publishers, not every transfer of the token.

On Base the token is Circle's USDC, with millions of transfers a day; the indexer reads only
`Transfer` logs whose receiver (topics[2]) is a payment wallet some publisher has now (the
`publishers_onchain` projection), plus, from the same transaction's receipt, the
`AuthorizationUsed` log just before each one (EIP-3009 emits it first; its indexed argument is
the payer, whom we do not know in advance). The token's logs are stored under the contract
name `PaymentToken`, whatever the deployment calls the token.

Which wallets are followed is a function of the chain, so indexing in pieces, rebuilding and
re-indexing keep the same rows:
- a wallet that becomes known has its whole history read (from the payment start block up to
  the block range that made it known), by a resumable backfill job (`payment_backfills`);
- a wallet that stops being any publisher's payment wallet keeps what it received up to the
  block where it stopped, and nothing after;
- a wallet known and dropped inside one range is backfilled up to the block it was dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from chain.decode import Decoder, Event
from chain.rpc import RangeTooLarge, Rpc

log = logging.getLogger("indexer")

TOKEN = "PaymentToken"
TOKEN_ABI: list[dict[str, Any]] = [
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "sender", "type": "address", "indexed": True},
            {"name": "receiver", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
    {
        "type": "event",
        "name": "AuthorizationUsed",
        "anonymous": False,
        "inputs": [
            {"name": "authorizer", "type": "address", "indexed": True},
            {"name": "nonce", "type": "bytes32", "indexed": True},
        ],
    },
]
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
# addresses per topic filter: providers accept long OR-lists, but keep requests modest
WALLETS_PER_QUERY = 500
RECEIPTS_PER_BATCH = 100


class ChainChanged(Exception):
    """Blocks moved while a range was being read; read it again."""


def wallet_topic(wallet: str) -> str:
    """An address as a 32-byte topic (left-padded), for a topic filter."""
    return "0x" + "00" * 12 + wallet.lower()[2:]


class PaymentToken:
    """Reads the token's logs that concern the given payment wallets."""

    def __init__(self, address: str, start_block: int) -> None:
        self.address = address.lower()
        self.start_block = start_block
        self.decoder = Decoder({self.address: TOKEN}, {TOKEN: TOKEN_ABI})

    def fetch(self, rpc: Rpc, wallets: Iterable[str], first: int, last: int) -> list[Event]:
        """Transfers to `wallets` in blocks [first, last], each with the authorization that
        paid it when there is one, in chain order."""
        ordered = sorted({w.lower() for w in wallets})
        if not ordered or first > last:
            return []
        logs: list[Any] = []
        for start in range(0, len(ordered), WALLETS_PER_QUERY):
            topics = [wallet_topic(w) for w in ordered[start : start + WALLETS_PER_QUERY]]
            logs.extend(self._logs(rpc, topics, first, last))
        transfers = self.decoder.decode_all(logs)
        return sorted(transfers + self._authorizations(rpc, transfers), key=lambda e: e.order)

    def cross_check(
        self,
        rpc: Rpc,
        events: list[Event],
        headers: Sequence[Any],
        wallets: Iterable[str],
    ) -> list[Event]:
        """A node may answer eth_getLogs with nothing for blocks that hold our logs. Inside
        the window each block's bloom filter says whether it may hold a transfer to one of
        `wallets`: such a block without one is asked again on its own (by hash)."""
        topics = [wallet_topic(w) for w in sorted({w.lower() for w in wallets})]
        if not topics:
            return events
        with_logs = {e.block_number for e in events}
        wanted = [bytes.fromhex(self.address[2:]), bytes.fromhex(TRANSFER_TOPIC[2:])]
        missed: list[Event] = []
        for header in headers:
            if header.number in with_logs:
                continue
            if header.logs_bloom:
                bloom = int(header.logs_bloom, 16)
                if not all(bloom_admits(bloom, item) for item in wanted) or not any(
                    bloom_admits(bloom, bytes.fromhex(t[2:])) for t in topics
                ):
                    continue
            logs: list[Any] = []
            for start in range(0, len(topics), WALLETS_PER_QUERY):
                query = {
                    "address": self.address,
                    "topics": [TRANSFER_TOPIC, None, topics[start : start + WALLETS_PER_QUERY]],
                    "blockHash": header.hash,
                }
                logs.extend(rpc.call("eth_getLogs", [query]))
            if logs:
                log.warning(
                    "node omitted %d payments of block %d; recovered", len(logs), header.number
                )
                missed.extend(self.decoder.decode_all(logs))
        if not missed:
            return events
        return sorted(events + missed + self._authorizations(rpc, missed), key=lambda e: e.order)

    def _logs(self, rpc: Rpc, topics: list[str], first: int, last: int) -> list[Any]:
        query = {
            "address": self.address,
            "topics": [TRANSFER_TOPIC, None, topics],
            "fromBlock": hex(first),
            "toBlock": hex(last),
        }
        try:
            result: list[Any] = rpc.call("eth_getLogs", [query])
            return result
        except RangeTooLarge:
            if first == last:
                raise
            middle = first + (last - first) // 2
            return self._logs(rpc, topics, first, middle) + self._logs(
                rpc, topics, middle + 1, last
            )

    def _authorizations(self, rpc: Rpc, transfers: Sequence[Event]) -> list[Event]:
        # EIP-3009 logs AuthorizationUsed, then the Transfer it authorizes
        wanted = {(t.tx_hash, t.log_index - 1): t for t in transfers}
        tx_hashes = sorted({t.tx_hash for t in transfers})
        found: list[Event] = []
        for start in range(0, len(tx_hashes), RECEIPTS_PER_BATCH):
            chunk = tx_hashes[start : start + RECEIPTS_PER_BATCH]
            receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            for tx_hash, receipt in zip(chunk, receipts, strict=True):
                if receipt is None:
                    raise ChainChanged(f"transaction {tx_hash} is no longer mined")
                for log in receipt["logs"]:
                    topics = log["topics"]
                    if (
                        log["address"].lower() != self.address
                        or not topics
                        or topics[0].lower() != AUTHORIZATION_USED_TOPIC
                    ):
                        continue
                    transfer = wanted.get((tx_hash, int(log["logIndex"], 16)))
                    if transfer is None:
                        continue
                    if log["blockHash"].lower() != transfer.block_hash:
                        raise ChainChanged(f"block {transfer.block_number} changed while read")
                    found.append(self.decoder.decode(log))
        return found


def bloom_admits(bloom: int, item: bytes) -> bool:
    """A block's logs bloom may hold `item` (an address or a topic); false positives happen,
    false negatives do not."""
    digest = keccak(item)
    return all(bloom >> (((digest[i] << 8) | digest[i + 1]) & 2047) & 1 for i in (0, 2, 4))


# ---------------------------------------------------------------- which wallets, when


@dataclass
class WalletChanges:
    """What one block range did to the set of payment wallets."""

    # followed before the range and not after it: the last block it was a payment wallet
    dropped: dict[str, int] = field(default_factory=dict)
    # not followed before the range: backfill its history up to this block
    backfill: dict[str, int] = field(default_factory=dict)


def touched_wallets(events: Iterable[Event]) -> set[str]:
    """Payment wallets the range's registry events name."""
    wallets: set[str] = set()
    for e in events:
        if e.contract != "PublisherRegistry":
            continue
        if e.name == "PublisherRegistered":
            wallets.add(e.args["payment_wallet"])
        elif e.name == "PaymentWalletUpdated":
            wallets.update((e.args["previous_wallet"], e.args["new_wallet"]))
    return wallets


def wallet_changes(
    events: Iterable[Event], publishers_before: Mapping[str, int], last: int
) -> WalletChanges:
    """Replay the range's registry events (in chain order) on the number of publishers each
    touched wallet served before the range (`publishers_before`; absent means none)."""
    counts = dict(publishers_before)
    dropped_at: dict[str, int] = {}
    for e in events:
        if e.contract != "PublisherRegistry":
            continue
        if e.name == "PublisherRegistered":
            wallet = e.args["payment_wallet"]
            counts[wallet] = counts.get(wallet, 0) + 1
        elif e.name == "PaymentWalletUpdated":
            previous, new = e.args["previous_wallet"], e.args["new_wallet"]
            counts[previous] = counts.get(previous, 0) - 1
            if counts[previous] <= 0:
                dropped_at[previous] = e.block_number
            counts[new] = counts.get(new, 0) + 1
    changes = WalletChanges()
    for wallet, count in counts.items():
        followed_before = publishers_before.get(wallet, 0) > 0
        if followed_before and count <= 0:
            changes.dropped[wallet] = dropped_at[wallet]
        elif not followed_before and count > 0:
            changes.backfill[wallet] = last
        elif not followed_before and wallet in dropped_at:
            changes.backfill[wallet] = dropped_at[wallet]
    return changes


def without_dropped(events: Sequence[Event], dropped: Mapping[str, int]) -> list[Event]:
    """The token's events minus transfers to a dropped wallet after the block it was dropped
    in (and the authorizations that paid them)."""
    if not dropped:
        return list(events)
    gone = {
        (e.tx_hash, e.log_index)
        for e in events
        if e.contract == TOKEN
        and e.name == "Transfer"
        and e.block_number > dropped.get(e.args["receiver"], e.block_number)
    }
    return [
        e
        for e in events
        if (e.tx_hash, e.log_index) not in gone
        and not (
            e.contract == TOKEN
            and e.name == "AuthorizationUsed"
            and (e.tx_hash, e.log_index + 1) in gone
        )
    ]
