"""Cumulative-earnings Merkle tree, byte-for-byte what PublisherPayout verifies.

    tree = PayoutTree(chain_id, payout_contract, [Leaf(account, token, cumulative_amount), ...])
    tree.root, tree.totals()                   # what post_root is told
    for leaf, proof in tree.iter_proofs():     # every claim, streamed: COPY them into Postgres
        ...
    artefact["tree"] = tree.dump()             # OpenZeppelin `standard-v1`
    PayoutTree.from_dump(artefact["tree"])     # rebuilds it and refuses one that does not add up

The leaf is OpenZeppelin's StandardMerkleTree leaf over
`(uint256 chain_id, address payout_contract, address account, address token,
uint256 cumulative_amount)`: `keccak256(keccak256(abi.encode(...)))`. Pairs are hashed
sorted, leaves are sorted by hash and laid out as OpenZeppelin does, so a tree built here
has the same root and proofs as `StandardMerkleTree.of(values, types)` and its dump loads
with `StandardMerkleTree.load`.

A million leaves take seconds, not minutes: the ABI words are packed by hand (all five
types are static, so `abi.encode` is their concatenation, laid out as rows of a numpy array),
the leaves are sorted in numpy, and every per-leaf step runs in C through `map`. Addresses
are checksummed only at the edges (`leaves`, `dump`) and then once per distinct address.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from cchecksum import to_checksum_address, to_checksum_address_many
from sha3 import keccak_256

LEAF_TYPES = ("uint256", "address", "address", "address", "uint256")
ARTEFACT_FORMAT = "buzzer-payout-v1"
ARTEFACT_FORMAT_V2 = "buzzer-payout-v2"
DUMP_FORMAT = "standard-v1"
MAX_UINT256 = 2**256 - 1

_ADDRESS = re.compile(r"(?:0[xX])?([0-9a-fA-F]{40})")
_PAD = bytes(12)
_digest = keccak_256.digest
_BLOCK = 1 << 16  # leaves encoded at a time
_PROOF_SLICE = 1 << 10  # leaves whose proofs are made together
_ENCODING = np.dtype((np.void, 160))  # one leaf's abi.encode, a row of bytes
_NODE = np.dtype((np.void, 32))
_PAIR = np.dtype((np.void, 64))  # two nodes, as one is hashed
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # spreads a token's number over 64 bits
_Indices = npt.NDArray[np.intp]
_T = TypeVar("_T")
_Slice = tuple[list["Leaf"], list[bytes], list[_T]]  # leaves, their siblings, their parents' parts


class MerkleError(ValueError):
    """The leaves or the artefact cannot make a valid payout tree."""


class Leaf(NamedTuple):
    """One account's cumulative earnings in one token, in atomic units."""

    account: str
    token: str
    cumulative_amount: int


def keccak(data: bytes) -> bytes:
    return _digest(keccak_256(data))  # type: ignore[no-any-return]


def keccak_many(items: Iterable[bytes]) -> Iterator[bytes]:
    """keccak256 of each item, the loop in C: what the tree spends its time on."""
    return map(_digest, map(keccak_256, items))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return _digest(keccak_256(a + b) if a < b else keccak_256(b + a))  # type: ignore[no-any-return]


def leaf_hash(chain_id: int, payout_contract: str, leaf: Leaf) -> bytes:
    head = _uint256(chain_id, "chain id") + _address_word(payout_contract, "payout contract")
    return keccak(keccak(head + _leaf_words(leaf)))


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """What the contract does: fold the proof into the leaf and compare with the root."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


class PayoutTree:
    """A Merkle tree over cumulative earnings for one payout contract on one chain."""

    def __init__(self, chain_id: int, payout_contract: str, leaves: Iterable[Leaf]) -> None:
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
            raise MerkleError(f"chain id {chain_id!r} must be a positive integer")
        head = _uint256(chain_id, "chain id") + _address_word(payout_contract, "payout contract")
        self.chain_id = chain_id
        self.payout_contract = to_checksum_address(head[44:])
        given = tuple(leaves)
        if not given:
            raise MerkleError("a payout tree needs at least one leaf")
        accounts, account_words, checksummed = _addresses(
            list(map(attrgetter("account"), given)), "account"
        )
        tokens = list(map(attrgetter("token"), given))
        token_word = _token_words(tokens)
        amounts = _amounts(given)
        count = len(given)
        token_of = _token_positions(tokens, token_word)
        if _may_repeat(account_words, token_of, token_word):
            _refuse_duplicates(account_words, tokens, token_word)
        self._given = given
        self._accounts = accounts
        self._accounts_checksummed = checksummed
        self._account_words = account_words
        self._tokens = tokens
        self._amounts = amounts
        self._token_word = token_word
        self._leaves: tuple[Leaf, ...] | None = None
        self._index: dict[bytes, int] | None = None
        self._tree_index_of: array[int] | None = None

        hashes = _leaf_hashes(head, account_words, token_word, token_of, amounts)

        # OpenZeppelin's layout: leaves sorted by hash fill the tail of the array backwards,
        # inner node i hashes nodes 2i+1 and 2i+2, and each level is contiguous
        joined = b"".join(hashes)
        order = _sorted_order(joined, hashes)
        del hashes
        ascending = np.frombuffer(joined, _NODE)[order]
        del joined
        tree: list[bytes] = [b""] * (count - 1)
        tree.extend(ascending[::-1].tolist())
        # Nodes from `first` on have two leaves below, the right one the smaller, so each hashes
        # two neighbours among the sorted leaves as they lie: no compare, no concatenation
        first = (count - 1) // 2
        pairs = ascending[: 2 * (count - 1 - first)].view(_PAIR).tolist()
        del ascending
        tree[first : count - 1] = reversed(list(keccak_many(pairs)))
        del pairs
        for level in range(first.bit_length() - 1, -1, -1):
            low, high = 2**level - 1, min(2 ** (level + 1) - 1, first)
            left = tree[2 * low + 1 : 2 * high + 1 : 2]
            right = tree[2 * low + 2 : 2 * high + 2 : 2]
            tree[low:high] = map(hash_pair, left, right)
        self._tree = tree
        self._order: list[int] = order.tolist()  # value index by position among sorted leaves

    @property
    def _tree_index(self) -> array[int]:
        """Tree index by value index (the inverse of `_order`), made when first needed."""
        if self._tree_index_of is None:
            size, count = len(self._tree), len(self._order)
            tree_index = np.empty(count, np.int64)
            tree_index[self._order] = np.arange(size - 1, size - 1 - count, -1, dtype=np.int64)
            self._tree_index_of = array("q", tree_index.tobytes())
        return self._tree_index_of

    @property
    def root(self) -> bytes:
        return self._tree[0]

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """The leaves in the order given, addresses checksummed."""
        if self._leaves is None:
            accounts = self._accounts
            if not self._accounts_checksummed:
                accounts = list(map(_checksummed(accounts).__getitem__, accounts))
            token = self._checksummed_tokens()
            tokens = list(map(token.__getitem__, self._tokens))
            if (
                accounts == list(map(attrgetter("account"), self._given))
                and tokens == list(map(attrgetter("token"), self._given))
                and set(map(type, self._given)) == {Leaf}
            ):
                self._leaves = self._given
            else:
                self._leaves = tuple(map(Leaf, accounts, tokens, self._amounts))
        return self._leaves

    def totals(self) -> dict[str, int]:
        """Σ cumulative amounts per token: what `post_root` is told."""
        checksummed = self._checksummed_tokens()
        totals: dict[str, int] = {}
        tokens = map(checksummed.__getitem__, self._tokens)
        for token, amount in zip(tokens, self._amounts, strict=True):
            totals[token] = totals.get(token, 0) + amount
        return totals

    def leaf_for(self, account: str, token: str) -> Leaf:
        value = self._value(account, token)
        if self._leaves is not None:
            return self._leaves[value]
        return Leaf(
            to_checksum_address(self._accounts[value]),
            self._checksummed_tokens()[self._tokens[value]],
            self._amounts[value],
        )

    def proof(self, account: str, token: str) -> list[bytes]:
        return self._proof_at(self._tree_index[self._value(account, token)])

    def iter_proofs(self) -> Iterator[tuple[Leaf, list[bytes]]]:
        """Every leaf with its proof, in tree order (by leaf hash), one at a time.

        The leaves are the ones given, not checksummed again: rows read from Postgres come
        back lowercase, ready to be stored beside their proofs. Neighbouring leaves share most
        of their path, so the proofs are made a slice of leaves at a time: the part above the
        leaves once for the slice (`_proofs_of`), then each leaf's as it is asked for."""
        if len(self._tree) == 1:
            yield self._given[0], []
            return
        for leaves, siblings, above in self._slices(self._proofs_of):
            yield from zip(leaves, map(list.__add__, map(list, zip(siblings)), above), strict=True)

    def iter_proof_texts(self) -> Iterator[tuple[Leaf, str]]:
        """`iter_proofs` with each proof as the JSON text of its `0x` hex nodes, as
        `json.dumps` writes it: what is stored. A node's hex is made once for all the proofs of
        a slice that hold it, not once per proof."""
        if len(self._tree) == 1:
            yield self._given[0], "[]"
            return
        for leaves, siblings, tails in self._slices(self._tails_of):
            texts = map('["0x{}"{}]'.format, map(bytes.hex, siblings), tails)
            yield from zip(leaves, texts, strict=True)

    def _slices(self, above_of: Callable[[int, int], list[_T]]) -> Iterator[_Slice[_T]]:
        """The leaves in tree order a slice at a time (two leaves or more): the leaves as
        given, each one's sibling, and its parent's part as `above_of` makes it (a proof, or
        its text)."""
        tree, leaves, order = self._tree, self._given, self._order
        size, count = len(tree), len(order)
        # position p among the sorted leaves is tree index size - 1 - p
        for stop in range(size, count - 1, -_PROOF_SLICE):
            start = max(stop - _PROOF_SLICE, count - 1)
            siblings, above = self._proof_parts(start, stop, above_of)
            siblings.reverse()
            above.reverse()
            yield list(map(leaves.__getitem__, order[size - stop : size - start])), siblings, above

    def _proofs_of(self, start: int, stop: int) -> list[list[bytes]]:
        """The proofs of tree indices start to stop - 1."""
        if stop <= 1:
            return [[]]  # the root
        siblings, above = self._proof_parts(max(start, 1), stop, self._proofs_of)
        proofs = list(map(list.__add__, map(list, zip(siblings)), above))
        return [[], *proofs] if start == 0 else proofs

    def _tails_of(self, start: int, stop: int) -> list[str]:
        """The proofs of tree indices start to stop - 1 as JSON text, each node after a comma
        (the text of a proof that has one more node before them)."""
        if stop <= 1:
            return [""]  # the root
        siblings, above = self._proof_parts(max(start, 1), stop, self._tails_of)
        tails = list(map(', "0x{}"{}'.format, map(bytes.hex, siblings), above))
        return ["", *tails] if start == 0 else tails

    def _proof_parts(
        self, start: int, stop: int, above_of: Callable[[int, int], list[_T]]
    ) -> tuple[list[bytes], list[_T]]:
        """For tree indices start to stop - 1 (not the root): each one's sibling, and its
        parent's part as `above_of` makes it. Made with slices and list operations in C."""
        first_parent = (start - 1) // 2
        parents = above_of(first_parent, (stop - 2) // 2 + 1)
        tree, width = self._tree, stop - start
        # an odd index i has sibling i + 1 and parent (i - 1) / 2, an even one i - 1 and (i - 2) / 2
        odd = start | 1
        even = start + (start & 1)
        odds, evens = len(range(odd, stop, 2)), len(range(even, stop, 2))
        siblings: list[bytes] = [b""] * width
        siblings[odd - start :: 2] = tree[odd + 1 : odd + 1 + 2 * odds : 2]
        siblings[even - start :: 2] = tree[even - 1 : even - 1 + 2 * evens : 2]
        above: list[_T] = [parents[0]] * width
        low = (odd - 1) // 2 - first_parent
        above[odd - start :: 2] = parents[low : low + odds]
        low = (even - 2) // 2 - first_parent
        above[even - start :: 2] = parents[low : low + evens]
        return siblings, above

    def dump(self) -> dict[str, Any]:
        """OpenZeppelin's `standard-v1` dump: what `StandardMerkleTree.load` reads."""
        chain_id = str(self.chain_id)
        return {
            "format": DUMP_FORMAT,
            "leafEncoding": list(LEAF_TYPES),
            "tree": list(self._hex_nodes()),
            "values": [
                {
                    "value": [
                        chain_id,
                        self.payout_contract,
                        leaf.account,
                        leaf.token,
                        str(leaf.cumulative_amount),
                    ],
                    "treeIndex": tree_index,
                }
                for leaf, tree_index in zip(self.leaves, self._tree_index, strict=True)
            ],
        }

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> PayoutTree:
        """Rebuild a tree from its `standard-v1` dump, refusing one whose nodes or indices are
        not what its values make."""
        try:
            values = [entry["value"] for entry in dump["values"]]
            if not values:
                raise MerkleError("a payout tree needs at least one leaf")
            chain_id, payout = values[0][0], values[0][1]
            if any(v[0] != chain_id or v[1] != payout or len(v) != 5 for v in values):
                raise MerkleError("dump values are for more than one chain or payout contract")
            amounts = _decimals([v[4] for v in values])
            leaves = list(map(Leaf, [v[2] for v in values], [v[3] for v in values], amounts))
            tree = cls(_decimal(chain_id), payout, leaves)
        except (KeyError, TypeError, IndexError) as exc:
            raise MerkleError(f"malformed dump: {exc!r}") from None
        tree._check_dump(dump)
        return tree

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
                    "proof": ["0x" + node.hex() for node in self._proof_at(tree_index)],
                }
                for leaf, tree_index in zip(self.leaves, self._tree_index, strict=True)
            ],
            "tree": self.dump(),
            "metadata": metadata or {},
        }

    @classmethod
    def from_artefact(cls, artefact: dict[str, Any]) -> PayoutTree:
        """Rebuild a tree from a v1 artefact (its claims) or a v2 one (its leaves, and its
        tree dump when present), refusing one whose root or tree does not match."""
        kind = artefact.get("format")
        if kind not in (ARTEFACT_FORMAT, ARTEFACT_FORMAT_V2):
            raise MerkleError(f"not a {ARTEFACT_FORMAT} or {ARTEFACT_FORMAT_V2} artefact: {kind!r}")
        rows = "claims" if kind == ARTEFACT_FORMAT else "leaves"
        try:
            leaves = [
                Leaf(row["account"], row["token"], _decimal(row["cumulative_amount"]))
                for row in artefact[rows]
            ]
            tree = cls(_decimal(artefact["chain_id"]), artefact["payout_contract"], leaves)
            expected = str(artefact["root"])
        except (KeyError, TypeError) as exc:
            raise MerkleError(f"malformed artefact: {exc!r}") from None
        if "0x" + tree.root.hex() != expected.lower():
            raise MerkleError(f"artefact root {expected} does not match its {rows}")
        if kind == ARTEFACT_FORMAT_V2 and artefact.get("tree") is not None:
            tree._check_dump(artefact["tree"])
            tree._check_values(artefact["tree"]["values"])
        return tree

    def _check_dump(self, dump: dict[str, Any]) -> None:
        """Refuse a dump that is not exactly this tree's, compared as it streams."""
        if not isinstance(dump, dict) or dump.get("format") != DUMP_FORMAT:
            raise MerkleError(f"not a {DUMP_FORMAT} tree dump")
        if dump.get("leafEncoding") != list(LEAF_TYPES):
            raise MerkleError(f"tree dump encodes {dump.get('leafEncoding')!r}, not {LEAF_TYPES}")
        nodes = dump.get("tree")
        if not isinstance(nodes, list) or len(nodes) != len(self._tree):
            raise MerkleError("tree dump does not have the nodes its values make")
        if any(theirs != ours for theirs, ours in zip(nodes, self._hex_nodes(), strict=True)):
            raise MerkleError("tree dump's nodes do not match its values")
        entries = dump.get("values")
        if not isinstance(entries, list) or len(entries) != len(self._tree_index):
            raise MerkleError("tree dump does not have one value per leaf")
        try:
            indices = [entry["treeIndex"] for entry in entries]
        except (KeyError, TypeError):
            raise MerkleError("tree dump has a value without its treeIndex") from None
        if indices != self._tree_index.tolist():
            raise MerkleError("tree dump places a value at the wrong index")

    def _check_values(self, entries: list[Any]) -> None:
        """Refuse dump values that are not this tree's leaves, in order (addresses in any case)."""
        chain_id, payout = str(self.chain_id), self.payout_contract.lower()
        leaves = zip(self._accounts, self._tokens, self._amounts, strict=True)
        for entry, (account, token, amount) in zip(entries, leaves, strict=True):
            value = entry.get("value")
            if not (
                isinstance(value, list)
                and len(value) == 5
                and all(isinstance(part, str) for part in value)
                and value[0] == chain_id
                and value[1].lower() == payout
                and value[2].lower() == account.lower()
                and value[3].lower() == token.lower()
                and value[4] == str(amount)
            ):
                raise MerkleError(f"tree dump value {value!r} is not the leaf at its place")

    def _hex_nodes(self) -> Iterator[str]:
        return map("0x".__add__, map(bytes.hex, self._tree))

    def _proof_at(self, index: int) -> list[bytes]:
        proof: list[bytes] = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            proof.append(self._tree[sibling])
            index = (index - 1) // 2
        return proof

    def _value(self, account: str, token: str) -> int:
        key = _address_word(account, "account") + _address_word(token, "token")
        if self._index is None:
            count = len(self._amounts)
            words = map(self._account_words.__getitem__, _slices(count, 32))
            tokens = map(self._token_word.__getitem__, self._tokens)
            self._index = dict(zip(map(bytes.__add__, words, tokens), range(count), strict=True))
        try:
            return self._index[key]
        except KeyError:
            raise MerkleError(
                f"{to_checksum_address(key[12:32])} has no leaf for token "
                f"{to_checksum_address(key[44:])}"
            ) from None

    def _checksummed_tokens(self) -> dict[str, str]:
        return {token: to_checksum_address(word[12:]) for token, word in self._token_word.items()}


def _address_word(value: object, what: str) -> bytes:
    """The 32-byte ABI word of one address, refusing a non-address and a bad checksum."""
    match = _ADDRESS.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MerkleError(f"{what} {value!r} is not an address")
    body = match.group(1)
    word = _PAD + bytes.fromhex(body)
    if (
        body != body.lower()
        and body != body.upper()
        and to_checksum_address(word[12:]) != ("0x" + body)
    ):
        raise MerkleError(f"{what} {value!r} is not an address (its checksum is wrong)")
    return word


def _addresses(values: list[Any], what: str) -> tuple[list[str], bytes, bool]:
    """The addresses as `0x` strings, their ABI words back to back, and whether the strings
    are checksummed already.

    The usual input, `0x` and 40 hex digits each, is checked for the whole list at once;
    anything else goes one by one (and so does the error)."""
    count = len(values)
    try:
        joined = "".join(values)
    except TypeError:
        joined = ""
    if (
        len(joined) == 42 * count
        and set(map(len, values)) == {42}
        and joined[1::42] == "x" * count
        and joined.count("x") == count
        and joined[0::42] == "0" * count
    ):
        # 'x' is only in the prefixes, so the replace pads exactly the prefixes
        try:
            words = bytes.fromhex(joined.replace("0x", "00" * 12))
        except ValueError:
            words = b""
        if len(words) == 32 * count:
            # past fromhex, an upper-case letter can only be a hex digit
            cased = any(map(joined.__contains__, "ABCDEF"))
            checksummed = cased and _check_checksums(values, what)
            return values, words, checksummed
    words = b"".join(_address_word(value, what) for value in values)
    lowercase = ["0x" + words[i + 12 : i + 32].hex() for i in range(0, len(words), 32)]
    return lowercase, words, False


def _slices(count: int, width: int) -> Iterator[slice]:
    return map(slice, range(0, count * width, width), range(width, (count + 1) * width, width))


def _check_checksums(values: list[str], what: str) -> bool:
    """Refuse mixed-case addresses whose case is not their checksum (all-lower and all-upper
    ones carry none); whether all of them are checksummed."""
    distinct = list(dict.fromkeys(values))
    checksummed = to_checksum_address_many(distinct)
    if checksummed == distinct:
        return True
    for value, expected in zip(distinct, checksummed, strict=True):
        body = value[2:]
        if value != expected and body != body.lower() and body != body.upper():
            raise MerkleError(f"{what} {value!r} is not an address (its checksum is wrong)")
    return False


def _token_words(tokens: list[Any]) -> dict[str, bytes]:
    try:
        distinct = dict.fromkeys(tokens)
    except TypeError:
        distinct = dict.fromkeys(t for t in tokens if not isinstance(t, str))
    return {token: _address_word(token, "token") for token in distinct}


def _amounts(leaves: tuple[Leaf, ...]) -> list[int]:
    amounts = list(map(attrgetter("cumulative_amount"), leaves))
    if set(map(type, amounts)) != {int}:
        for leaf, amount in zip(leaves, amounts, strict=True):
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise MerkleError(f"amount for {leaf.account} must be an integer, got {amount!r}")
    if min(amounts) < 0 or max(amounts) > MAX_UINT256:
        leaf = next(
            leaf for leaf, a in zip(leaves, amounts, strict=True) if not 0 <= a <= MAX_UINT256
        )
        raise MerkleError(f"amount {leaf.cumulative_amount} for {leaf.account} is outside uint256")
    return amounts


def _duplicate(keys: list[bytes]) -> MerkleError:
    seen: set[bytes] = set()
    for key in keys:
        if key in seen:
            account = to_checksum_address(key[12:32])
            return MerkleError(f"{account} appears twice for token {to_checksum_address(key[44:])}")
        seen.add(key)
    raise AssertionError("no duplicate among the keys")


def _token_positions(tokens: list[str], token_word: dict[str, bytes]) -> _Indices:
    """Each leaf's token as its place among `token_word`'s keys."""
    position = {token: place for place, token in enumerate(token_word)}
    return np.fromiter(map(position.__getitem__, tokens), np.intp, len(tokens))


def _may_repeat(account_words: bytes, token_of: _Indices, token_word: dict[str, bytes]) -> bool:
    """False when no (account, token) pair can appear twice: a 64-bit fingerprint of each
    pair, sorted, has no two alike. Two alike send the caller to the exact check."""
    words = np.frombuffer(account_words, np.uint64).reshape(-1, 4)
    distinct = {word: place for place, word in enumerate(dict.fromkeys(token_word.values()))}
    token_id = np.array([distinct[word] for word in token_word.values()], np.uint64)[token_of]
    prints = np.sort(words[:, 1] ^ words[:, 2] ^ words[:, 3] ^ (token_id * _SPREAD))
    return bool((prints[1:] == prints[:-1]).any())


def _refuse_duplicates(
    account_words: bytes, tokens: list[str], token_word: dict[str, bytes]
) -> None:
    """The exact check: (account, token) as 64 ABI bytes, unique per leaf."""
    keys = list(
        map(
            bytes.__add__,
            map(account_words.__getitem__, _slices(len(tokens), 32)),
            map(token_word.__getitem__, tokens),
        )
    )
    if len(set(keys)) != len(keys):
        raise _duplicate(keys)


def _leaf_hashes(
    head: bytes,
    account_words: bytes,
    token_word: dict[str, bytes],
    token_of: _Indices,
    amounts: list[int],
) -> list[bytes]:
    """Each leaf's hash, in the order given. The ABI encodings are laid out a block at a time
    as rows of one array (head, account, token, amount), so only the hashing is per leaf."""
    count = len(amounts)
    token_rows = np.frombuffer(b"".join(token_word.values()), np.uint8).reshape(-1, 32)
    account_rows = np.frombuffer(account_words, np.uint8).reshape(count, 32)
    block = np.empty((min(count, _BLOCK), 160), np.uint8)
    block[:, :64] = np.frombuffer(head, np.uint8)
    hashes: list[bytes] = []
    for start in range(0, count, _BLOCK):
        stop = min(start + _BLOCK, count)
        rows = block[: stop - start]
        rows[:, 64:96] = account_rows[start:stop]
        rows[:, 96:128] = token_rows[token_of[start:stop]]
        words = b"".join(map(int.to_bytes, amounts[start:stop], repeat(32)))
        rows[:, 128:] = np.frombuffer(words, np.uint8).reshape(-1, 32)
        hashes.extend(keccak_many(keccak_many(rows.view(_ENCODING).ravel().tolist())))
    return hashes


def _sorted_order(joined: bytes, hashes: list[bytes]) -> _Indices:
    """Value indices by ascending hash (`joined` is the hashes back to back). Sorted on each
    hash's first 8 bytes in numpy; should two share them, sorted on the whole hashes instead."""
    prefixes = np.frombuffer(joined, ">u8")[::4].astype(np.uint64)
    order = np.argsort(prefixes)
    ranked = prefixes[order]
    if (ranked[1:] == ranked[:-1]).any():
        return np.array(sorted(range(len(hashes)), key=hashes.__getitem__), np.intp)
    return order


def _checksummed(addresses: list[str]) -> dict[str, str]:
    """Each distinct address with its checksum, computed once."""
    distinct = list(dict.fromkeys(addresses))
    return dict(zip(distinct, to_checksum_address_many(distinct), strict=True))


def _uint256(value: int, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT256:
        raise MerkleError(f"{what} {value!r} is not a uint256")
    return value.to_bytes(32)


def _leaf_words(leaf: Leaf) -> bytes:
    return (
        _address_word(leaf.account, "account")
        + _address_word(leaf.token, "token")
        + _uint256(leaf.cumulative_amount, f"amount for {leaf.account}")
    )


def _decimals(values: list[Any]) -> list[int]:
    """`_decimal` of each, the usual all-digit strings converted at C speed."""
    if set(map(type, values)) == {str}:
        digits = "".join(values)
        if digits.isascii() and digits.isdigit():
            try:
                return list(map(int, values))
            except ValueError:  # an empty string
                pass
    return [_decimal(value) for value in values]


def _decimal(value: Any) -> int:
    """An integer from JSON: an int or a decimal string, nothing else (no floats, no hex)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MerkleError(f"{value!r} is not an integer")
    try:
        return int(value, 10) if isinstance(value, str) else value
    except ValueError:
        raise MerkleError(f"{value!r} is not a decimal integer") from None
