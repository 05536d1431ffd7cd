"""The fast payout tree against a plain one built the obvious way (`eth_abi.encode`, one
keccak at a time): same roots, same proofs, same dump; and its dump and artefacts refuse
tampering. On-chain verification and OpenZeppelin's own trees: tests/contracts/test_merkle.py.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from api.settlement import merkle
from api.settlement.merkle import (
    LEAF_TYPES,
    Leaf,
    MerkleError,
    PayoutTree,
    hash_pair,
    leaf_hash,
    verify,
)

CHAIN_ID = 8453
PAYOUT = to_checksum_address("0x" + "5a" * 20)


def reference(chain_id: int, payout: str, leaves: list[Leaf]) -> tuple[list[bytes], list[int]]:
    """OpenZeppelin's StandardMerkleTree, written out: the nodes and each value's tree index."""
    hashes = [
        keccak(
            keccak(
                encode(
                    list(LEAF_TYPES),
                    [chain_id, payout, leaf.account, leaf.token, leaf.cumulative_amount],
                )
            )
        )
        for leaf in leaves
    ]
    order = sorted(range(len(leaves)), key=lambda i: hashes[i])
    size = 2 * len(leaves) - 1
    tree = [b""] * size
    tree_index = [0] * len(leaves)
    for position, value in enumerate(order):
        tree[size - 1 - position] = hashes[value]
        tree_index[value] = size - 1 - position
    for i in range(size - 1 - len(leaves), -1, -1):
        left, right = sorted((tree[2 * i + 1], tree[2 * i + 2]))
        tree[i] = keccak(left + right)
    return tree, tree_index


def reference_proof(tree: list[bytes], index: int) -> list[bytes]:
    proof = []
    while index > 0:
        proof.append(tree[index + 1 if index % 2 else index - 1])
        index = (index - 1) // 2
    return proof


def random_leaves(rng: random.Random, count: int, tokens: int = 3) -> list[Leaf]:
    """Distinct (account, token) pairs; addresses lowercase or checksummed at random."""
    token_addresses = [to_checksum_address(rng.randbytes(20)) for _ in range(tokens)]
    leaves = []
    for _ in range(count):
        raw = rng.randbytes(20)
        account = to_checksum_address(raw) if rng.random() < 0.5 else "0x" + raw.hex()
        leaves.append(Leaf(account, rng.choice(token_addresses), rng.randrange(0, 10**24)))
    return leaves


def checksummed(leaf: Leaf) -> Leaf:
    return Leaf(
        to_checksum_address(leaf.account), to_checksum_address(leaf.token), leaf.cumulative_amount
    )


def assert_matches_reference(tree: PayoutTree, leaves: list[Leaf]) -> None:
    nodes, tree_index = reference(tree.chain_id, tree.payout_contract, leaves)
    assert tree.root == nodes[0]
    assert tree.leaves == tuple(map(checksummed, leaves))
    for leaf, index in zip(leaves, tree_index, strict=True):
        assert tree.proof(leaf.account, leaf.token) == reference_proof(nodes, index)
    dump = tree.dump()
    assert dump["tree"] == ["0x" + node.hex() for node in nodes]
    assert [entry["treeIndex"] for entry in dump["values"]] == tree_index


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 257])
def test_roots_proofs_and_dump_match_the_plain_tree(size):
    leaves = random_leaves(random.Random(size), size)
    assert_matches_reference(PayoutTree(CHAIN_ID, PAYOUT, leaves), leaves)


leaf_sets = st.lists(
    st.tuples(
        st.binary(min_size=20, max_size=20),
        st.sampled_from([b"\x00" * 20, b"\xee" * 20, bytes(range(20))]),
        st.integers(min_value=0, max_value=2**256 - 1),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda row: (row[0], row[1]),
)


@settings(max_examples=60, deadline=None)
@given(rows=leaf_sets, chain_id=st.integers(min_value=1, max_value=2**256 - 1))
def test_any_leaf_set_matches_the_plain_tree(rows, chain_id):
    leaves = [
        Leaf(to_checksum_address(a) if cased else "0x" + a.hex(), "0x" + t.hex(), amount)
        for a, t, amount, cased in rows
    ]
    assert_matches_reference(PayoutTree(chain_id, PAYOUT, leaves), leaves)


def test_iter_proofs_streams_every_given_leaf_once_with_a_proof_that_verifies():
    leaves = random_leaves(random.Random(5), 300)
    tree = PayoutTree(CHAIN_ID, PAYOUT, leaves)

    streamed = list(tree.iter_proofs())

    assert sorted(leaf for leaf, _ in streamed) == sorted(leaves)  # as given, case and all
    for leaf, proof in streamed:
        assert proof == tree.proof(leaf.account, leaf.token)
        assert verify(proof, tree.root, leaf_hash(CHAIN_ID, PAYOUT, leaf))
    forged = Leaf(leaves[0].account, leaves[0].token, leaves[0].cumulative_amount + 1)
    assert not verify(tree.proof(forged.account, forged.token), tree.root,
                      leaf_hash(CHAIN_ID, PAYOUT, forged))  # fmt: skip


def streamed_in_tree_order(leaves: list[Leaf], nodes: list[bytes], tree_index: list[int]):
    """What `iter_proofs` has always streamed: the given leaves by descending tree index (by
    ascending leaf hash), each with its proof."""
    by_index = sorted(range(len(leaves)), key=lambda value: -tree_index[value])
    return [(leaves[value], reference_proof(nodes, tree_index[value])) for value in by_index]


@settings(max_examples=60, deadline=None)
@given(rows=leaf_sets, proof_slice=st.sampled_from([1, 2, 3, 4, 7, 1024]))
def test_proofs_streamed_a_slice_at_a_time_are_the_plain_trees(rows, proof_slice):
    leaves = [
        Leaf(to_checksum_address(a) if cased else "0x" + a.hex(), "0x" + t.hex(), amount)
        for a, t, amount, cased in rows
    ]
    tree = PayoutTree(CHAIN_ID, PAYOUT, leaves)
    nodes, tree_index = reference(CHAIN_ID, PAYOUT, leaves)
    saved = merkle._PROOF_SLICE
    merkle._PROOF_SLICE = proof_slice
    try:
        streamed = list(tree.iter_proofs())
        texts = list(tree.iter_proof_texts())
    finally:
        merkle._PROOF_SLICE = saved
    expected = streamed_in_tree_order(leaves, nodes, tree_index)
    assert streamed == expected
    assert texts == [
        (leaf, json.dumps(["0x" + n.hex() for n in proof])) for leaf, proof in expected
    ]


@pytest.mark.parametrize(("size", "proof_slice"), [(1000, 7), (1025, 64), (3000, 1024)])
def test_large_trees_stream_the_plain_trees_proofs(size, proof_slice, monkeypatch):
    leaves = random_leaves(random.Random(size), size)
    monkeypatch.setattr(merkle, "_PROOF_SLICE", proof_slice)
    tree = PayoutTree(CHAIN_ID, PAYOUT, leaves)
    nodes, tree_index = reference(CHAIN_ID, PAYOUT, leaves)

    assert tree.root == nodes[0]
    expected = streamed_in_tree_order(leaves, nodes, tree_index)
    assert list(tree.iter_proofs()) == expected
    assert list(tree.iter_proof_texts()) == [
        (leaf, json.dumps(["0x" + n.hex() for n in proof])) for leaf, proof in expected
    ]
    assert tree.dump()["tree"] == ["0x" + node.hex() for node in nodes]
    assert [entry["treeIndex"] for entry in tree.dump()["values"]] == tree_index


def test_hashes_alike_in_their_first_bytes_are_sorted_on_the_whole_hash():
    hashes = [bytes(8) + b"\x02" * 24, b"\x01" + bytes(31), bytes(8) + b"\x01" * 24]
    order = merkle._sorted_order(b"".join(hashes), hashes)
    assert order.tolist() == [2, 0, 1]


def test_accounts_alike_in_fingerprint_are_told_apart_and_a_token_in_two_cases_is_one():
    # the same 64-bit fingerprint (halves swapped), different accounts: both leaves stand
    token = "0x" + "cd" * 20
    one = "0x" + "11" * 4 + "22" * 8 + "33" * 8
    other = "0x" + "11" * 4 + "33" * 8 + "22" * 8
    leaves = [Leaf(one, token, 1), Leaf(other, token, 2)]
    assert_matches_reference(PayoutTree(CHAIN_ID, PAYOUT, leaves), leaves)
    with pytest.raises(MerkleError, match="appears twice"):
        PayoutTree(CHAIN_ID, PAYOUT, [Leaf(one, token, 1), Leaf(one, token.upper()[2:], 2)])


def test_one_leaf_is_the_root_and_two_leaves_prove_each_other():
    one, other = random_leaves(random.Random(1), 2)

    single = PayoutTree(CHAIN_ID, PAYOUT, [one])
    pair = PayoutTree(CHAIN_ID, PAYOUT, [one, other])

    assert single.root == leaf_hash(CHAIN_ID, PAYOUT, one)
    assert single.proof(one.account, one.token) == []
    assert list(single.iter_proofs()) == [(one, [])]
    assert list(single.iter_proof_texts()) == [(one, "[]")]
    hashes = [leaf_hash(CHAIN_ID, PAYOUT, leaf) for leaf in (one, other)]
    assert pair.root == hash_pair(*hashes)
    assert pair.proof(one.account, one.token) == [hashes[1]]
    assert pair.proof(other.account, other.token) == [hashes[0]]
    assert PayoutTree.from_dump(pair.dump()).root == pair.root


def test_dump_round_trips_through_json():
    leaves = random_leaves(random.Random(2), 50)
    tree = PayoutTree(CHAIN_ID, PAYOUT, leaves)
    dump = json.loads(json.dumps(tree.dump()))

    again = PayoutTree.from_dump(dump)

    assert again.root == tree.root
    assert again.leaves == tree.leaves
    assert again.chain_id == CHAIN_ID and again.payout_contract == PAYOUT
    assert again.dump() == dump


def _raise_amount(dump):
    dump["values"][3]["value"][4] = str(int(dump["values"][3]["value"][4]) + 1)


def _swap_nodes(dump):
    dump["tree"][1], dump["tree"][2] = dump["tree"][2], dump["tree"][1]


def _move_value(dump):
    dump["values"][0]["treeIndex"], dump["values"][1]["treeIndex"] = (
        dump["values"][1]["treeIndex"],
        dump["values"][0]["treeIndex"],
    )


def _other_payout(dump):
    dump["values"][0]["value"][1] = to_checksum_address("0x" + "77" * 20)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_raise_amount, "nodes do not match"),
        (_swap_nodes, "nodes do not match"),
        (_move_value, "wrong index"),
        (_other_payout, "more than one chain or payout"),
        (lambda d: d["tree"].pop(), "does not have the nodes"),
        (lambda d: d.update(leafEncoding=["uint256"] * 5), "encodes"),
        (lambda d: d.update(format="standard-v2"), "not a standard-v1"),
        (lambda d: d["values"].clear(), "at least one leaf"),
        (lambda d: d["values"][0].pop("value"), "malformed dump"),
    ],
)
def test_a_tampered_dump_is_refused(tamper, message):
    dump = PayoutTree(CHAIN_ID, PAYOUT, random_leaves(random.Random(3), 9)).dump()
    tamper(dump)
    with pytest.raises(MerkleError, match=message):
        PayoutTree.from_dump(dump)


def v2_artefact(tree: PayoutTree) -> dict:
    return {
        "format": "buzzer-payout-v2",
        "chain_id": tree.chain_id,
        "payout_contract": tree.payout_contract,
        "root_id": 3,
        "previous_root_id": 2,
        "root": "0x" + tree.root.hex(),
        "totals": {token: str(total) for token, total in tree.totals().items()},
        "leaves": [
            {"account": a, "token": t, "cumulative_amount": str(amount)}
            for a, t, amount in tree.leaves
        ],
        "tree": tree.dump(),
    }


def test_from_artefact_reads_v1_and_v2():
    tree = PayoutTree(CHAIN_ID, PAYOUT, random_leaves(random.Random(4), 12))

    v1 = PayoutTree.from_artefact(json.loads(json.dumps(tree.to_artefact(epoch=7))))
    v2 = PayoutTree.from_artefact(json.loads(json.dumps(v2_artefact(tree))))

    assert v1.root == v2.root == tree.root
    assert v1.leaves == v2.leaves == tree.leaves
    without_tree = v2_artefact(tree)
    del without_tree["tree"]
    assert PayoutTree.from_artefact(without_tree).root == tree.root


def test_a_v2_artefact_whose_leaves_root_or_tree_disagree_is_refused():
    tree = PayoutTree(CHAIN_ID, PAYOUT, random_leaves(random.Random(6), 12))
    artefact = v2_artefact(tree)

    raised = copy.deepcopy(artefact)
    raised["leaves"][0]["cumulative_amount"] = str(
        int(raised["leaves"][0]["cumulative_amount"]) + 1
    )
    with pytest.raises(MerkleError, match="does not match its leaves"):
        PayoutTree.from_artefact(raised)

    # the dump's values say something else than the leaves, though its nodes are right
    lying = copy.deepcopy(artefact)
    lying["tree"]["values"][0]["value"][4] = "999"
    with pytest.raises(MerkleError, match="is not the leaf at its place"):
        PayoutTree.from_artefact(lying)

    other = copy.deepcopy(artefact)
    other["tree"] = PayoutTree(CHAIN_ID, PAYOUT, random_leaves(random.Random(7), 12)).dump()
    with pytest.raises(MerkleError, match="nodes do not match"):
        PayoutTree.from_artefact(other)

    with pytest.raises(MerkleError, match="not a buzzer-payout"):
        PayoutTree.from_artefact({**artefact, "format": "buzzer-payout-v3"})
    with pytest.raises(MerkleError, match="not a decimal integer"):
        PayoutTree.from_artefact(
            {**artefact, "leaves": [{**artefact["leaves"][0], "cumulative_amount": "0x10"}]}
        )


def test_addresses_are_checked_and_checksummed_at_the_edges():
    raw = bytes(range(1, 21))
    lower, cased = "0x" + raw.hex(), to_checksum_address(raw)
    token = "0x" + "ab" * 20
    tree = PayoutTree(CHAIN_ID, PAYOUT.lower(), [Leaf(lower, token, 5)])

    assert tree.payout_contract == PAYOUT
    assert tree.leaves == (Leaf(cased, to_checksum_address(token), 5),)
    assert tree.totals() == {to_checksum_address(token): 5}
    assert tree.leaf_for(cased, token.upper().replace("0X", "0x")) == tree.leaves[0]
    assert tree.proof(lower, to_checksum_address(token)) == []
    with pytest.raises(MerkleError, match="has no leaf"):
        tree.proof(token, token)

    bare = PayoutTree(CHAIN_ID, PAYOUT, [Leaf(raw.hex(), token.upper().replace("0X", "0x"), 5)])
    assert bare.root == tree.root and bare.leaves == tree.leaves  # no 0x, or upper case: the same

    wrong_case = cased[:2] + cased[2:].swapcase()
    with pytest.raises(MerkleError, match="checksum is wrong"):
        PayoutTree(CHAIN_ID, PAYOUT, [Leaf(wrong_case, token, 1), Leaf(token, token, 1)])
    with pytest.raises(MerkleError, match="appears twice"):
        PayoutTree(CHAIN_ID, PAYOUT, [Leaf(lower, token, 1), Leaf(cased, token, 2)])
    with pytest.raises(MerkleError, match="not an address"):
        PayoutTree(CHAIN_ID, PAYOUT, [Leaf(lower, token, 1), Leaf(lower[:-1] + "g", token, 1)])
    with pytest.raises(MerkleError, match="not an address"):
        PayoutTree(CHAIN_ID, PAYOUT, [Leaf(lower, 7, 1)])  # type: ignore[arg-type]
    with pytest.raises(MerkleError, match="chain id"):
        PayoutTree(2**256, PAYOUT, [Leaf(lower, token, 1)])


def test_totals_add_up_per_token_whatever_the_case():
    token = "0x" + "cd" * 20
    leaves = [
        Leaf("0x" + "01" * 20, token, 10),
        Leaf("0x" + "02" * 20, to_checksum_address(token), 32),
        Leaf("0x" + "03" * 20, "0x" + "00" * 20, 7),
    ]
    assert PayoutTree(CHAIN_ID, PAYOUT, leaves).totals() == {
        to_checksum_address(token): 42,
        "0x" + "00" * 20: 7,
    }
