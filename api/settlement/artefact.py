"""The public payout artefact (`buzzer-payout-v2`): everything a stranger needs to recompute a
posted root from the chain — the `Spent` events it covers, how each campaign's publisher
share was allocated, the cumulative leaves, and the OpenZeppelin `standard-v1` tree dump.

    tree = PayoutTree(chain_id, payout, cumulative_leaves(previous.leaves, allocations))
    document = build(chain_id=..., payout_contract=payout, escrow_contract=escrow, root_id=3,
                     previous_root_id=2, epochs=[5, 6], spends=spends, allocations=allocations,
                     previous_leaves=previous.leaves, tree=tree, finalized_block=(123, "0x…"),
                     code_version="1f2e3d4")
    artefact = parse(load("https://…/root-3.json"))

Amounts are decimal strings and addresses checksummed in the JSON; in the dataclasses amounts
are ints and addresses checksummed strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from cchecksum import to_checksum_address as _checksum
from eth_utils import is_address, keccak

from api.settlement.merkle import LEAF_TYPES, Leaf, PayoutTree

FORMAT = "buzzer-payout-v2"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
FETCH_TIMEOUT = 30.0
MAX_UINT256 = 2**256 - 1


class ArtefactError(ValueError):
    """The artefact cannot be fetched, or is not a well-formed buzzer-payout-v2 document."""


@dataclass(frozen=True)
class Spend:
    """One `Spent` event of the escrow: what a campaign was charged in an epoch."""

    epoch: int
    campaign_id: int
    token: str
    charged: int
    publisher_share: int
    fee: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.campaign_id)


@dataclass(frozen=True)
class Allocation:
    """The part of one campaign's publisher share in one epoch credited to one wallet."""

    epoch: int
    campaign_id: int
    token: str
    account: str
    amount: int


@dataclass(frozen=True)
class LeafEntry:
    """One account's cumulative earnings in one token under the root."""

    account: str
    token: str
    cumulative_amount: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.token)


@dataclass(frozen=True)
class Artefact:
    chain_id: int
    payout_contract: str
    escrow_contract: str
    root_id: int
    previous_root_id: int | None
    root: str
    epochs: tuple[int, ...]
    totals: dict[str, int]
    spends: tuple[Spend, ...]
    allocations: tuple[Allocation, ...]
    leaves: tuple[LeafEntry, ...]
    inputs_hash: str
    finalized_block_number: int
    finalized_block_hash: str
    code_version: str
    tree: dict[str, Any] | None

    def payout_leaves(self) -> list[Leaf]:
        """The leaves as the tree builder takes them."""
        return [Leaf(e.account, e.token, e.cumulative_amount) for e in self.leaves]


# ------------------------------------------------------------------------------ building


def cumulative_leaves(
    previous: Iterable[LeafEntry | Leaf], allocations: Iterable[Allocation]
) -> list[Leaf]:
    """The next root's leaves: every previous leaf plus what was allocated to it since;
    an account that appears only in the allocations starts at zero."""
    amounts: dict[tuple[str, str], int] = {}
    for leaf in previous:
        key = (to_checksum_address(leaf.account), to_checksum_address(leaf.token))
        amounts[key] = leaf.cumulative_amount
    for allocation in allocations:
        key = (to_checksum_address(allocation.account), to_checksum_address(allocation.token))
        amounts[key] = amounts.get(key, 0) + allocation.amount
    return [Leaf(account, token, amount) for (account, token), amount in amounts.items()]


@lru_cache(maxsize=1 << 20)
def to_checksum_address(address: str) -> str:
    """EIP-55, once per distinct address (an artefact names each payee several times)."""
    return str(_checksum(address))


def _spend_json(spend: Spend) -> dict[str, Any]:
    return {
        "epoch": spend.epoch,
        "campaign_id": str(spend.campaign_id),
        "token": to_checksum_address(spend.token),
        "charged": str(spend.charged),
        "publisher_share": str(spend.publisher_share),
        "fee": str(spend.fee),
    }


def _allocation_json(allocation: Allocation) -> dict[str, Any]:
    return {
        "epoch": allocation.epoch,
        "campaign_id": str(allocation.campaign_id),
        "token": to_checksum_address(allocation.token),
        "account": to_checksum_address(allocation.account),
        "amount": str(allocation.amount),
    }


def _leaf_json(leaf: LeafEntry | Leaf) -> dict[str, Any]:
    return {
        "account": to_checksum_address(leaf.account),
        "token": to_checksum_address(leaf.token),
        "cumulative_amount": str(leaf.cumulative_amount),
    }


def inputs_hash(
    spends: Iterable[Spend],
    allocations: Iterable[Allocation],
    previous_leaves: Iterable[LeafEntry | Leaf],
) -> str:
    """keccak256 of the canonical JSON of what the leaves were computed from: sorted keys,
    no whitespace, lowercase addresses, rows in a fixed order, so any builder gets the same
    hash from the same inputs."""

    document: dict[str, list[dict[str, Any]]] = {
        "spends": sorted(
            (
                {
                    "epoch": s.epoch,
                    "campaign_id": str(s.campaign_id),
                    "token": s.token.lower(),
                    "charged": str(s.charged),
                    "publisher_share": str(s.publisher_share),
                    "fee": str(s.fee),
                }
                for s in spends
            ),
            key=lambda r: (r["epoch"], int(r["campaign_id"])),
        ),
        "allocations": sorted(
            (
                {
                    "epoch": a.epoch,
                    "campaign_id": str(a.campaign_id),
                    "token": a.token.lower(),
                    "account": a.account.lower(),
                    "amount": str(a.amount),
                }
                for a in allocations
            ),
            key=lambda r: (r["epoch"], int(r["campaign_id"]), r["token"], r["account"]),
        ),
        "previous_leaves": sorted(
            (
                {
                    "account": leaf.account.lower(),
                    "token": leaf.token.lower(),
                    "cumulative_amount": str(leaf.cumulative_amount),
                }
                for leaf in previous_leaves
            ),
            key=lambda r: (r["account"], r["token"]),
        ),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "0x" + keccak(text=canonical).hex()


def build(
    *,
    chain_id: int,
    payout_contract: str,
    escrow_contract: str,
    root_id: int,
    previous_root_id: int | None,
    epochs: Sequence[int],
    spends: Sequence[Spend],
    allocations: Sequence[Allocation],
    previous_leaves: Sequence[LeafEntry | Leaf],
    tree: PayoutTree,
    finalized_block: tuple[int, str],
    code_version: str,
) -> dict[str, Any]:
    """The artefact document for `tree`, posted as `root_id`. The leaves and totals are the
    tree's; `previous_leaves` only enter the inputs hash."""
    number, block_hash = finalized_block
    return {
        "format": FORMAT,
        "chain_id": chain_id,
        "payout_contract": to_checksum_address(payout_contract),
        "escrow_contract": to_checksum_address(escrow_contract),
        "root_id": root_id,
        "previous_root_id": previous_root_id,
        "root": "0x" + tree.root.hex(),
        "epochs": sorted(set(epochs)),
        "totals": {token: str(total) for token, total in sorted(tree.totals().items())},
        "spends": [_spend_json(s) for s in sorted(spends, key=lambda s: s.key)],
        "allocations": [
            _allocation_json(a)
            for a in sorted(allocations, key=lambda a: (a.epoch, a.campaign_id, a.token, a.account))
        ],
        "leaves": [_leaf_json(leaf) for leaf in tree.leaves],
        "inputs_hash": inputs_hash(spends, allocations, previous_leaves),
        "finalized_block": {"number": number, "hash": block_hash.lower()},
        "code_version": code_version,
        "tree": tree.dump(),
    }


# ------------------------------------------------------------------------------ parsing


def _field(row: Mapping[str, Any], name: str, where: str) -> Any:
    if not isinstance(row, Mapping):
        raise ArtefactError(f"{where} must be an object, got {type(row).__name__}")
    if name not in row:
        raise ArtefactError(f"{where} has no {name!r}")
    return row[name]


def _amount(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ArtefactError(f"{where} must be a decimal string, got {value!r}")
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ArtefactError(f"{where} must be a decimal string, got {value!r}")
    amount = int(text)
    if amount > MAX_UINT256:
        raise ArtefactError(f"{where} {text} is outside uint256")
    return amount


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArtefactError(f"{where} must be a non-negative integer, got {value!r}")
    return value


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ArtefactError(f"{where} {value!r} is not an address")
    return to_checksum_address(value)


def _bytes32(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise ArtefactError(f"{where} {value!r} is not 32 bytes of 0x-hex")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ArtefactError(f"{where} {value!r} is not 32 bytes of 0x-hex") from None
    return value.lower()


def _block_hash(value: Any) -> str:
    # a builder whose node could not name the block's hash leaves it empty
    return "" if value in ("", None) else _bytes32(value, "finalized_block.hash")


def _list(document: Mapping[str, Any], name: str) -> list[Any]:
    value = _field(document, name, "artefact")
    if not isinstance(value, list):
        raise ArtefactError(f"artefact {name!r} must be a list, got {type(value).__name__}")
    return value


def parse(document: Mapping[str, Any]) -> Artefact:
    """Validate a buzzer-payout-v2 document and return it typed; raises ArtefactError naming
    the first field that is missing or malformed."""
    if not isinstance(document, Mapping):
        raise ArtefactError(f"an artefact is a JSON object, got {type(document).__name__}")
    if document.get("format") != FORMAT:
        raise ArtefactError(f"not a {FORMAT} artefact (format {document.get('format')!r})")
    chain_id = _integer(_field(document, "chain_id", "artefact"), "chain_id")
    root_id = _integer(_field(document, "root_id", "artefact"), "root_id")
    previous = _field(document, "previous_root_id", "artefact")
    previous_root_id = None if previous is None else _integer(previous, "previous_root_id")

    epochs = tuple(_integer(e, "epoch") for e in _list(document, "epochs"))
    totals_raw = _field(document, "totals", "artefact")
    if not isinstance(totals_raw, Mapping):
        raise ArtefactError("artefact 'totals' must be an object of token: amount")
    totals = {
        _address(token, "totals token"): _amount(amount, f"total of {token}")
        for token, amount in totals_raw.items()
    }
    spends = tuple(
        Spend(
            epoch=_integer(_field(row, "epoch", f"spends[{i}]"), f"spends[{i}].epoch"),
            campaign_id=_amount(
                _field(row, "campaign_id", f"spends[{i}]"), f"spends[{i}].campaign_id"
            ),
            token=_address(_field(row, "token", f"spends[{i}]"), f"spends[{i}].token"),
            charged=_amount(_field(row, "charged", f"spends[{i}]"), f"spends[{i}].charged"),
            publisher_share=_amount(
                _field(row, "publisher_share", f"spends[{i}]"), f"spends[{i}].publisher_share"
            ),
            fee=_amount(_field(row, "fee", f"spends[{i}]"), f"spends[{i}].fee"),
        )
        for i, row in enumerate(_list(document, "spends"))
    )
    allocations = tuple(
        Allocation(
            epoch=_integer(_field(row, "epoch", f"allocations[{i}]"), f"allocations[{i}].epoch"),
            campaign_id=_amount(
                _field(row, "campaign_id", f"allocations[{i}]"), f"allocations[{i}].campaign_id"
            ),
            token=_address(_field(row, "token", f"allocations[{i}]"), f"allocations[{i}].token"),
            account=_address(
                _field(row, "account", f"allocations[{i}]"), f"allocations[{i}].account"
            ),
            amount=_amount(_field(row, "amount", f"allocations[{i}]"), f"allocations[{i}].amount"),
        )
        for i, row in enumerate(_list(document, "allocations"))
    )
    leaves = tuple(
        LeafEntry(
            account=_address(_field(row, "account", f"leaves[{i}]"), f"leaves[{i}].account"),
            token=_address(_field(row, "token", f"leaves[{i}]"), f"leaves[{i}].token"),
            cumulative_amount=_amount(
                _field(row, "cumulative_amount", f"leaves[{i}]"), f"leaves[{i}].cumulative_amount"
            ),
        )
        for i, row in enumerate(_list(document, "leaves"))
    )
    block = _field(document, "finalized_block", "artefact")
    tree = document.get("tree")
    if tree is not None and not isinstance(tree, dict):
        raise ArtefactError("artefact 'tree' must be a standard-v1 dump object")
    if tree is not None and tree.get("format") != "standard-v1":
        raise ArtefactError(f"artefact tree is not a standard-v1 dump ({tree.get('format')!r})")
    if tree is not None and list(tree.get("leafEncoding", [])) != list(LEAF_TYPES):
        raise ArtefactError(f"artefact tree leaf encoding is not {list(LEAF_TYPES)}")
    code_version = document.get("code_version", "")
    return Artefact(
        chain_id=chain_id,
        payout_contract=_address(
            _field(document, "payout_contract", "artefact"), "payout_contract"
        ),
        escrow_contract=_address(
            _field(document, "escrow_contract", "artefact"), "escrow_contract"
        ),
        root_id=root_id,
        previous_root_id=previous_root_id,
        root=_bytes32(_field(document, "root", "artefact"), "root"),
        epochs=epochs,
        totals=totals,
        spends=spends,
        allocations=allocations,
        leaves=leaves,
        inputs_hash=_bytes32(_field(document, "inputs_hash", "artefact"), "inputs_hash"),
        finalized_block_number=_integer(
            _field(block, "number", "finalized_block"), "finalized_block.number"
        ),
        finalized_block_hash=_block_hash(_field(block, "hash", "finalized_block")),
        code_version=str(code_version),
        tree=tree,
    )


# ------------------------------------------------------------------------------ loading


def load(
    source: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, base_dir: Path | None = None
) -> dict[str, Any]:
    """The JSON document at a path, a file:// URL or an http(s):// URL, read up to
    `max_bytes` (a larger one is refused, not truncated). A relative path is taken from
    `base_dir` when given."""
    text = str(source)
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        raw = _fetch(text, max_bytes)
    elif scheme in ("", "file"):
        raw = _read(_local_path(text, base_dir), max_bytes)
    else:
        raise ArtefactError(f"cannot fetch artefact {text!r}: unsupported scheme {scheme!r}")
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtefactError(f"artefact {text} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ArtefactError(f"artefact {text} is not a JSON object")
    return document


def _local_path(text: str, base_dir: Path | None) -> Path:
    if text.lower().startswith("file://"):
        parts = urlsplit(text)
        # file://root-3.json names a relative file; file:///srv/a.json an absolute one
        text = unquote(parts.netloc + parts.path)
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ArtefactError(f"cannot read artefact {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ArtefactError(f"artefact {path} is larger than {max_bytes} bytes")
    return raw


def _fetch(url: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ArtefactError(f"cannot fetch artefact {url}: HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ArtefactError(f"artefact {url} is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ArtefactError(f"cannot fetch artefact {url}: {exc}") from None
    return b"".join(chunks)
