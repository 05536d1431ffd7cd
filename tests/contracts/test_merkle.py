"""The Python payout tree against the contract and against OpenZeppelin's own library:
same leaves, same roots, same proofs, and proofs that verify on-chain."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import ape
import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.settlement.merkle import Leaf, MerkleError, PayoutTree, leaf_hash, verify
from tests.contracts.conftest import CHALLENGE_PERIOD, advance

ROOT = Path(__file__).resolve().parents[2]
OZ_SCRIPT = ROOT / "tests" / "support" / "oz_merkle.js"

addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
amounts = st.integers(min_value=0, max_value=2**256 - 1)


def random_leaves(rng: random.Random, count: int, tokens: list[str]) -> list[Leaf]:
    return [
        Leaf(
            to_checksum_address(rng.randbytes(20)),
            rng.choice(tokens),
            rng.randrange(0, 10**12),
        )
        for _ in range(count)
    ]


def oz_trees(trees: list[PayoutTree]) -> list[dict]:
    values = [
        [
            [
                str(t.chain_id),
                t.payout_contract,
                leaf.account,
                leaf.token,
                str(leaf.cumulative_amount),
            ]
            for leaf in t.leaves
        ]
        for t in trees
    ]
    done = subprocess.run(
        ["node", str(OZ_SCRIPT)],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(account=addresses, token=addresses, amount=amounts)
def test_python_leaf_equals_the_contracts_leaf(payout, account, token, amount):
    expected = leaf_hash(ape.chain.chain_id, payout.address, Leaf(account, token, amount))
    assert payout.leaf(account, token, amount) == expected


def test_trees_match_openzeppelin_byte_for_byte():
    rng = random.Random(7)
    tokens = [to_checksum_address(rng.randbytes(20)) for _ in range(3)]
    trees = [
        PayoutTree(8453, to_checksum_address(rng.randbytes(20)), random_leaves(rng, n, tokens))
        for n in (1, 2, 3, 4, 5, 7, 8, 9, 31, 100, 1_000)
    ]
    for ours, theirs in zip(trees, oz_trees(trees), strict=True):
        assert "0x" + ours.root.hex() == theirs["root"]
        for leaf, proof in zip(ours.leaves, theirs["proofs"], strict=True):
            assert ["0x" + node.hex() for node in ours.proof(leaf.account, leaf.token)] == proof
        assert ours.to_artefact(epoch=1)["tree"] == theirs["dump"]


@pytest.mark.parametrize("size", [1, 2, 3, 6, 7, 1_000])
def test_python_proofs_verify_on_chain(payout, usdc, admin, settler, size):
    rng = random.Random(size)
    leaves = random_leaves(rng, size, [usdc.address, "0x" + "00" * 20])
    paid = leaves[0] = Leaf(leaves[0].account, usdc.address, 12_345)
    tree = PayoutTree(ape.chain.chain_id, payout.address, leaves)
    totals = tree.totals()
    payout.grantRole(payout.FUNDER_ROLE(), admin, sender=admin)
    usdc.mint(admin, totals.get(usdc.address, 0) + 1, sender=admin)
    usdc.approve(payout, totals.get(usdc.address, 0) + 1, sender=admin)
    payout.fund(usdc, totals.get(usdc.address, 0) + 1, sender=admin)
    eth_total = totals.get("0x" + "00" * 20, 0)
    if eth_total:
        payout.fund("0x" + "00" * 20, eth_total, value=eth_total, sender=admin)
    tokens = list(totals)
    payout.post_root(1, tree.root, tokens, [totals[t] for t in tokens], "", sender=settler)
    advance(CHALLENGE_PERIOD)

    sample = tree.leaves if size <= 10 else [paid, *rng.sample(tree.leaves, 25)]
    for leaf in sample:
        proof = tree.proof(leaf.account, leaf.token)
        assert verify(proof, tree.root, leaf_hash(tree.chain_id, tree.payout_contract, leaf))
        assert payout.claimable(leaf.account, leaf.token, leaf.cumulative_amount, proof) == (
            leaf.cumulative_amount
        )
    payout.claim(
        paid.account,
        paid.token,
        paid.cumulative_amount,
        tree.proof(paid.account, paid.token),
        sender=admin,
    )
    assert usdc.balanceOf(paid.account) == paid.cumulative_amount


def test_artefact_round_trips_and_refuses_tampering():
    rng = random.Random(3)
    token = to_checksum_address(rng.randbytes(20))
    tree = PayoutTree(1337, to_checksum_address(rng.randbytes(20)), random_leaves(rng, 9, [token]))
    artefact = json.loads(json.dumps(tree.to_artefact(epoch=4, metadata={"finalized_block": 12})))

    again = PayoutTree.from_artefact(artefact)

    assert again.root == tree.root
    assert artefact["totals"] == {token: str(sum(leaf.cumulative_amount for leaf in tree.leaves))}
    assert artefact["metadata"] == {"finalized_block": 12}
    artefact["claims"][0]["cumulative_amount"] = str(
        int(artefact["claims"][0]["cumulative_amount"]) + 1
    )
    with pytest.raises(MerkleError, match="does not match its claims"):
        PayoutTree.from_artefact(artefact)


@pytest.mark.parametrize(
    ("leaves", "message"),
    [
        ([], "at least one leaf"),
        ([Leaf("0x" + "11" * 20, "0x" + "22" * 20, -1)], "outside uint256"),
        ([Leaf("0x" + "11" * 20, "0x" + "22" * 20, 2**256)], "outside uint256"),
        ([Leaf("0x" + "11" * 20, "0x" + "22" * 20, True)], "must be an integer"),
        ([Leaf("0x" + "11" * 20, "0x" + "22" * 20, 1.5)], "must be an integer"),  # type: ignore[arg-type]
        ([Leaf("not-an-address", "0x" + "22" * 20, 1)], "not an address"),
        (
            [
                Leaf("0x" + "11" * 20, "0x" + "22" * 20, 1),
                Leaf("0x" + "11" * 20, "0x" + "22" * 20, 2),
            ],
            "appears twice",
        ),
    ],
)
def test_bad_leaves_are_refused_with_a_clear_error(leaves, message):
    with pytest.raises(MerkleError, match=message):
        PayoutTree(1337, "0x" + "33" * 20, leaves)
