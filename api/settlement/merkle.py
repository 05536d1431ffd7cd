"""Cumulative-earnings Merkle tree, byte-for-byte what PublisherPayout verifies.

The leaf is OpenZeppelin's StandardMerkleTree leaf over
`(uint256 chain_id, address payout_contract, address account, address token,
uint256 cumulative_amount)`: `keccak256(keccak256(abi.encode(...)))`. Pairs are hashed
sorted, leaves are sorted by hash and laid out as OpenZeppelin does, so a tree built here
has the same root and proofs as `StandardMerkleTree.of(values, types)` and the `tree`
part of the artefact loads with `StandardMerkleTree.load`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import is_address, keccak, to_checksum_address

LEAF_TYPES = ("uint256", "address", "address", "address", "uint256")
ARTEFACT_FORMAT = "buzzer-payout-v1"
MAX_UINT256 = 2**256 - 1


class MerkleError(ValueError):
    """The leaves or the artefact cannot make a valid payout tree."""


@dataclass(frozen=True)
class Leaf:
    """One account's cumulative earnings in one token, in atomic units."""

    account: str
    token: str
    cumulative_amount: int


def _address(value: str, what: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise MerkleError(f"{what} {value!r} is not an address")
    return to_checksum_address(value)


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def leaf_hash(chain_id: int, payout_contract: str, leaf: Leaf) -> bytes:
    encoded = encode(
        list(LEAF_TYPES),
        [chain_id, payout_contract, leaf.account, leaf.token, leaf.cumulative_amount],
    )
    return keccak(keccak(encoded))


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """What the contract does: fold the proof into the leaf and compare with the root."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


class PayoutTree:
    """A Merkle tree over cumulative earnings for one payout contract on one chain."""

    def __init__(self, chain_id: int, payout_contract: str, leaves: Iterable[Leaf]) -> None:
        if not isinstance(chain_id, int) or chain_id <= 0:
            raise MerkleError(f"chain id {chain_id!r} must be a positive integer")
        self.chain_id = chain_id
        self.payout_contract = _address(payout_contract, "payout contract")
        checked: list[Leaf] = []
        seen: set[tuple[str, str]] = set()
        for leaf in leaves:
            account = _address(leaf.account, "account")
            token = _address(leaf.token, "token")
            amount = leaf.cumulative_amount
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise MerkleError(f"amount for {account} must be an integer, got {amount!r}")
            if not 0 <= amount <= MAX_UINT256:
                raise MerkleError(f"amount {amount} for {account} is outside uint256")
            key = (account, token)
            if key in seen:
                raise MerkleError(f"{account} appears twice for token {token}")
            seen.add(key)
            checked.append(Leaf(account, token, amount))
        if not checked:
            raise MerkleError("a payout tree needs at least one leaf")
        self.leaves: tuple[Leaf, ...] = tuple(checked)
        self._leaf_by_key = {(leaf.account, leaf.token): leaf for leaf in checked}

        hashes = [leaf_hash(chain_id, self.payout_contract, leaf) for leaf in checked]
        order = sorted(range(len(checked)), key=lambda i: hashes[i])
        size = 2 * len(checked) - 1
        tree: list[bytes] = [b""] * size
        self._tree_index: dict[tuple[str, str], int] = {}
        self._value_tree_index: list[int] = [0] * len(checked)
        for position, value_index in enumerate(order):
            tree_index = size - 1 - position
            tree[tree_index] = hashes[value_index]
            leaf = checked[value_index]
            self._tree_index[(leaf.account, leaf.token)] = tree_index
            self._value_tree_index[value_index] = tree_index
        for i in range(size - 1 - len(checked), -1, -1):
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self._tree = tree

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def totals(self) -> dict[str, int]:
        """Σ cumulative amounts per token: what `post_root` is told."""
        totals: dict[str, int] = {}
        for leaf in self.leaves:
            totals[leaf.token] = totals.get(leaf.token, 0) + leaf.cumulative_amount
        return totals

    def leaf_for(self, account: str, token: str) -> Leaf:
        key = (_address(account, "account"), _address(token, "token"))
        try:
            return self._leaf_by_key[key]
        except KeyError:
            raise MerkleError(f"{key[0]} has no leaf for token {key[1]}") from None

    def proof(self, account: str, token: str) -> list[bytes]:
        index = self._index(account, token)
        proof: list[bytes] = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            proof.append(self._tree[sibling])
            index = (index - 1) // 2
        return proof

    def _index(self, account: str, token: str) -> int:
        key = (_address(account, "account"), _address(token, "token"))
        try:
            return self._tree_index[key]
        except KeyError:
            raise MerkleError(f"{key[0]} has no leaf for token {key[1]}") from None

    def to_artefact(self, epoch: int, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON published for an epoch: root, totals, every claim with its proof, and
        the OpenZeppelin `standard-v1` dump of the tree. Amounts are decimal strings."""
        return {
            "format": ARTEFACT_FORMAT,
            "chain_id": self.chain_id,
            "payout_contract": self.payout_contract,
            "epoch": epoch,
            "root": "0x" + self.root.hex(),
            "totals": {token: str(total) for token, total in sorted(self.totals().items())},
            "claims": [
                {
                    "account": leaf.account,
                    "token": leaf.token,
                    "cumulative_amount": str(leaf.cumulative_amount),
                    "proof": ["0x" + node.hex() for node in self.proof(leaf.account, leaf.token)],
                }
                for leaf in self.leaves
            ],
            "tree": {
                "format": "standard-v1",
                "leafEncoding": list(LEAF_TYPES),
                "tree": ["0x" + node.hex() for node in self._tree],
                "values": [
                    {
                        "value": [
                            str(self.chain_id),
                            self.payout_contract,
                            leaf.account,
                            leaf.token,
                            str(leaf.cumulative_amount),
                        ],
                        "treeIndex": tree_index,
                    }
                    for leaf, tree_index in zip(self.leaves, self._value_tree_index, strict=True)
                ],
            },
            "metadata": metadata or {},
        }

    @classmethod
    def from_artefact(cls, artefact: dict[str, Any]) -> PayoutTree:
        """Rebuild a tree from its artefact, refusing one whose root does not match."""
        if artefact.get("format") != ARTEFACT_FORMAT:
            raise MerkleError(f"not a {ARTEFACT_FORMAT} artefact: {artefact.get('format')!r}")
        try:
            leaves = [
                Leaf(c["account"], c["token"], int(c["cumulative_amount"]))
                for c in artefact["claims"]
            ]
            tree = cls(int(artefact["chain_id"]), artefact["payout_contract"], leaves)
            expected = str(artefact["root"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MerkleError):
                raise
            raise MerkleError(f"malformed artefact: {exc!r}") from None
        if "0x" + tree.root.hex() != expected.lower():
            raise MerkleError(f"artefact root {expected} does not match its claims")
        return tree
