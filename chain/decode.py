"""Decode raw JSON-RPC logs of the followed contracts into named, JSON-safe arguments.

Built once from the ABIs; decoding a log is a dict lookup on topic0 plus one `eth_abi`
call for the data. Values are kept exact: integers stay Python ints (stored as JSONB
numbers, which Postgres keeps exact), addresses are lowercase hex, bytes are 0x-hex.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

# The argument that names what an event is about, in order of preference. It becomes the
# raw row's `subject`, the handle projections use to find every event of one entity.
SUBJECT_ARGS = (
    "campaign_id",
    "publisher",
    "account",
    "authorizer",
    "epoch",
    "token",
    "sender",
    "owner",
)


def canonical_type(param: Mapping[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@dataclass(frozen=True)
class EventSpec:
    contract: str
    name: str
    indexed: tuple[tuple[str, str], ...]
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]

    @property
    def data_is_static(self) -> bool:
        return all(_is_static_word(kind) for kind in self.data_types)


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded log, in chain order by (block_number, tx_index, log_index)."""

    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    address: str
    contract: str
    name: str
    args: dict[str, Any]

    @property
    def subject(self) -> str:
        for key in SUBJECT_ARGS:
            if key in self.args:
                return str(self.args[key])
        return self.name

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.block_number, self.tx_index, self.log_index)


def _json_safe(value: Any, kind: str) -> Any:
    if isinstance(value, tuple | list):
        if kind.endswith("]"):
            inner = kind[: kind.rindex("[")]
            return [_json_safe(v, inner) for v in value]
        inner_types = _split_tuple(kind)
        return [_json_safe(v, t) for v, t in zip(value, inner_types, strict=True)]
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if kind == "address":
        return str(value).lower()
    return value


def _split_tuple(kind: str) -> list[str]:
    body, depth, parts, current = kind[1:-1], 0, [], ""
    for char in body:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    parts.append(current)
    return parts


def _static_word(word: str, kind: str) -> Any:
    """One 32-byte ABI word (64 hex digits) of a static type, without eth_abi's overhead."""
    if kind == "address":
        return "0x" + word[24:].lower()
    if kind.startswith("uint"):
        return int(word, 16)
    if kind == "bool":
        return word[-1] == "1"
    if kind == "bytes32":
        return "0x" + word.lower()
    if kind.startswith("int"):
        value = int(word, 16)
        return value - (1 << 256) if value >= 1 << 255 else value
    fixed = int(kind[5:])  # bytes1..bytes31: left-aligned
    return "0x" + word[: 2 * fixed].lower()


def _is_static_word(kind: str) -> bool:
    return kind in ("address", "bool") or (
        kind[:4] in ("uint", "int", "byte") and not kind.endswith("]") and kind != "bytes"
    )


class UnknownEvent(Exception):
    """A log from a followed address whose topic0 is in none of the ABIs."""


class Decoder:
    """Decodes logs of the followed contracts (address → contract name)."""

    def __init__(self, contracts: Mapping[str, str], abis: Mapping[str, list[dict[str, Any]]]):
        self.contract_by_address = {address.lower(): name for address, name in contracts.items()}
        self._specs: dict[tuple[str, str], EventSpec] = {}
        self._static: dict[tuple[str, str], bool] = {}
        for name in set(self.contract_by_address.values()):
            for item in abis[name]:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                inputs = item["inputs"]
                signature = f"{item['name']}({','.join(canonical_type(i) for i in inputs)})"
                spec = EventSpec(
                    contract=name,
                    name=item["name"],
                    indexed=tuple((i["name"], canonical_type(i)) for i in inputs if i["indexed"]),
                    data_names=tuple(i["name"] for i in inputs if not i["indexed"]),
                    data_types=tuple(canonical_type(i) for i in inputs if not i["indexed"]),
                )
                topic0 = "0x" + keccak(text=signature).hex()
                self._specs[(name, topic0)] = spec
                self._static[(name, topic0)] = spec.data_is_static

    @property
    def addresses(self) -> list[str]:
        return sorted(self.contract_by_address)

    def decode(self, log: Mapping[str, Any]) -> Event:
        address = log["address"].lower()
        contract = self.contract_by_address[address]
        topics = log["topics"]
        topic0 = topics[0].lower() if topics else ""
        spec = self._specs.get((contract, topic0))
        if spec is None:
            raise UnknownEvent(f"{contract} at {address}: unknown event topic {topics[:1]}")
        args: dict[str, Any] = {}
        for (name, kind), topic in zip(spec.indexed, topics[1:], strict=True):
            if _is_static_word(kind):
                args[name] = _static_word(topic[2:], kind)
            else:
                args[name] = topic.lower()  # dynamic indexed values are stored as their hash
        if spec.data_types:
            data = log["data"]
            if self._static[(contract, topic0)]:
                for i, (name, kind) in enumerate(
                    zip(spec.data_names, spec.data_types, strict=True)
                ):
                    args[name] = _static_word(data[2 + 64 * i : 66 + 64 * i], kind)
            else:
                values = abi_decode(list(spec.data_types), bytes.fromhex(data[2:]))
                for name, kind, value in zip(spec.data_names, spec.data_types, values, strict=True):
                    args[name] = _json_safe(value, kind)
        return Event(
            block_number=int(log["blockNumber"], 16),
            block_hash=log["blockHash"].lower(),
            tx_hash=log["transactionHash"].lower(),
            tx_index=int(log["transactionIndex"], 16),
            log_index=int(log["logIndex"], 16),
            address=address,
            contract=contract,
            name=spec.name,
            args=args,
        )

    def decode_all(self, logs: Iterable[Mapping[str, Any]]) -> list[Event]:
        events = [self.decode(log) for log in logs if not log.get("removed")]
        events.sort(key=lambda e: e.order)
        return events
