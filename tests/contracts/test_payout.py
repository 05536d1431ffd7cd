"""PublisherPayout: funding, root posting with the on-chain solvency check, guardian veto,
and cumulative claims, path by path."""

from __future__ import annotations

import ape
import pytest

from api.settlement.merkle import Leaf, PayoutTree
from tests.contracts.conftest import CHALLENGE_PERIOD, USDC, ZERO, advance

POOL = 1_000 * USDC


@pytest.fixture
def funder(payout, admin):
    payout.grantRole(payout.FUNDER_ROLE(), admin, sender=admin)
    return admin


@pytest.fixture
def fund(payout, usdc, funder, mint_usdc):
    def fund_(amount: int, token=None) -> None:
        if token == ZERO:
            payout.fund(ZERO, amount, value=amount, sender=funder)
            return
        mint_usdc(funder, amount)
        usdc.approve(payout, amount, sender=funder)
        payout.fund(usdc, amount, sender=funder)

    return fund_


@pytest.fixture
def pool(fund):
    fund(POOL)
    return POOL


def claim(payout, tree: PayoutTree, epoch: int, account, token, sender=None):
    leaf = tree.leaf_for(str(account), str(token))
    return payout.claim(
        epoch,
        leaf.account,
        leaf.token,
        leaf.cumulative_amount,
        tree.proof(leaf.account, leaf.token),
        sender=sender or account,
    )


# ---------------------------------------------------------------- fund


def test_fund_pulls_tokens_and_records_the_total(payout, usdc, funder, fund):
    fund(40 * USDC)
    mint_amount = 60 * USDC
    usdc.mint(funder, mint_amount, sender=funder)
    usdc.approve(payout, mint_amount, sender=funder)
    tx = payout.fund(usdc, mint_amount, sender=funder)
    assert tx.events.filter(payout.Funded) == [
        payout.Funded(token=usdc, sender=funder, amount=mint_amount, total_funded=100 * USDC)
    ]
    assert payout.total_funded(usdc) == 100 * USDC
    assert usdc.balanceOf(payout) == 100 * USDC
    assert payout.funded_tokens(0) == usdc.address


def test_fund_eth(payout, funder):
    tx = payout.fund(ZERO, 5, value=5, sender=funder)
    assert tx.events == [payout.Funded(token=ZERO, sender=funder, amount=5, total_funded=5)]
    assert payout.balance == 5
    with ape.reverts("payout: value mismatch"):
        payout.fund(ZERO, 5, value=4, sender=funder)


def test_fund_rejects_bad_input(payout, usdc, funder, stranger):
    with ape.reverts("payout: caller is not funder"):
        payout.fund(ZERO, 1, value=1, sender=stranger)
    with ape.reverts("payout: zero amount"):
        payout.fund(ZERO, 0, sender=funder)
    with ape.reverts("payout: unexpected value"):
        payout.fund(usdc, 1, value=1, sender=funder)


def test_fund_accepts_at_most_sixteen_tokens(project, payout, admin, funder):
    for _ in range(16):
        token = project.HostileToken.deploy(sender=admin)
        token.mint(funder, 1, sender=admin)
        token.approve(payout, 1, sender=funder)
        payout.fund(token, 1, sender=funder)
    seventeenth = project.HostileToken.deploy(sender=admin)
    seventeenth.mint(funder, 1, sender=admin)
    seventeenth.approve(payout, 1, sender=funder)
    with ape.reverts("payout: too many tokens"):
        payout.fund(seventeenth, 1, sender=funder)


# ---------------------------------------------------------------- post_root


def test_post_root_records_root_totals_and_maturity(
    payout, usdc, settler, publisher, pool, build_tree
):
    tree = build_tree([(publisher, usdc, 300 * USDC)])

    tx = payout.post_root(7, tree.root, [usdc], [300 * USDC], "ipfs://epoch-7", sender=settler)

    claimable_at = ape.chain.blocks.head.timestamp + CHALLENGE_PERIOD
    assert tx.events == [
        payout.RootPosted(
            epoch=7,
            root=tree.root,
            claimable_at=claimable_at,
            tokens=[usdc.address],
            cumulative_totals=[300 * USDC],
            artefact_uri="ipfs://epoch-7",
        )
    ]
    root = payout.get_root(7)
    assert (root.root, root.claimable_at, root.parent_epoch) == (tree.root, claimable_at, 0)
    assert payout.root_total(7, usdc) == 300 * USDC
    assert (payout.latest_posted_epoch(), payout.head_epoch()) == (7, 7)


def test_post_root_may_promise_exactly_everything_funded(
    payout, usdc, settler, pool, post_tree, build_tree, publisher
):
    post_tree(1, build_tree([(publisher, usdc, POOL)]))
    assert payout.root_total(1, usdc) == POOL


def test_root_that_would_make_the_contract_insolvent_reverts(
    payout, usdc, settler, publisher, other_publisher, pool, build_tree
):
    tree = build_tree([(publisher, usdc, POOL), (other_publisher, usdc, 1)])
    with ape.reverts("payout: root exceeds funding"):
        payout.post_root(1, tree.root, [usdc], [POOL + 1], "", sender=settler)
    assert payout.head_epoch() == 0


def test_root_with_a_lower_total_than_the_last_reverts(
    payout, usdc, settler, publisher, pool, post_tree, build_tree
):
    post_tree(1, build_tree([(publisher, usdc, 500 * USDC)]))
    lower = build_tree([(publisher, usdc, 499 * USDC)])
    with ape.reverts("payout: cumulative total decreased"):
        post_tree(2, lower)


def test_tokens_left_out_keep_their_previous_total(
    payout, usdc, settler, publisher, fund, pool, post_tree, build_tree
):
    fund(10**18, token=ZERO)
    post_tree(1, build_tree([(publisher, usdc, 100 * USDC), (publisher, ZERO, 10**18)]))
    tree = build_tree([(publisher, usdc, 200 * USDC), (publisher, ZERO, 10**18)])
    payout.post_root(2, tree.root, [usdc], [200 * USDC], "", sender=settler)
    assert payout.root_total(2, ZERO) == 10**18
    assert payout.root_total(2, usdc) == 200 * USDC


@pytest.mark.parametrize(
    ("tokens", "totals", "reason"),
    [
        ("usdc", [1, 2], "payout: length mismatch"),
        ("usdc,usdc", [1, 1], "payout: unknown or repeated token"),
        ("stranger", [0], "payout: unknown or repeated token"),
    ],
)
def test_post_root_rejects_malformed_totals(
    payout, usdc, settler, stranger, pool, tokens, totals, reason
):
    names = {"usdc": usdc.address, "stranger": stranger.address}
    token_list = [names[name] for name in tokens.split(",")]
    with ape.reverts(reason):
        payout.post_root(1, b"\x01" * 32, token_list, totals, "", sender=settler)


def test_post_root_rejects_empty_root_and_old_epochs(
    payout, usdc, settler, pool, post_tree, build_tree, publisher
):
    with ape.reverts("payout: empty root"):
        payout.post_root(1, b"\x00" * 32, [], [], "", sender=settler)
    with ape.reverts("payout: epoch not newer"):
        payout.post_root(0, b"\x01" * 32, [], [], "", sender=settler)
    post_tree(3, build_tree([(publisher, usdc, 1)]))
    with ape.reverts("payout: epoch not newer"):
        post_tree(3, build_tree([(publisher, usdc, 2)]))
    with ape.reverts("payout: epoch not newer"):
        post_tree(2, build_tree([(publisher, usdc, 2)]))


def test_post_root_by_non_settler_or_while_paused_reverts(payout, settler, guardian, stranger):
    with ape.reverts("payout: caller is not settler"):
        payout.post_root(1, b"\x01" * 32, [], [], "", sender=stranger)
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        payout.post_root(1, b"\x01" * 32, [], [], "", sender=settler)


# ---------------------------------------------------------------- revoke_root


def test_guardian_revokes_a_pending_root(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(1, tree)

    tx = payout.revoke_root(1, sender=guardian)

    assert tx.events == [payout.RootRevoked(epoch=1, root=tree.root, guardian=guardian)]
    assert payout.revoked(1)
    assert payout.head_epoch() == 0
    advance(CHALLENGE_PERIOD + 1)
    with ape.reverts("payout: root revoked"):
        claim(payout, tree, 1, publisher, usdc)
    assert usdc.balanceOf(publisher) == 0


def test_after_a_revoke_the_next_root_is_checked_against_the_last_good_one(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    post_tree(1, build_tree([(publisher, usdc, 100 * USDC)]))
    post_tree(2, build_tree([(publisher, usdc, 900 * USDC)]))  # inflated
    payout.revoke_root(2, sender=guardian)
    post_tree(3, build_tree([(publisher, usdc, 150 * USDC)]))
    assert payout.get_root(3).parent_epoch == 1
    assert payout.head_epoch() == 3


def test_revoke_only_while_pending_and_newest_first(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    post_tree(1, build_tree([(publisher, usdc, 100 * USDC)]))
    post_tree(2, build_tree([(publisher, usdc, 200 * USDC)]))
    with ape.reverts("payout: revoke newer roots first"):
        payout.revoke_root(1, sender=guardian)
    payout.revoke_root(2, sender=guardian)
    with ape.reverts("payout: root revoked"):
        payout.revoke_root(2, sender=guardian)
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: root already claimable"):
        payout.revoke_root(1, sender=guardian)
    with ape.reverts("payout: unknown epoch"):
        payout.revoke_root(9, sender=guardian)


def test_revoke_by_non_guardian_reverts(
    payout, usdc, settler, admin, publisher, pool, post_tree, build_tree
):
    post_tree(1, build_tree([(publisher, usdc, 100 * USDC)]))
    for caller in (settler, admin, publisher):
        with ape.reverts("payout: caller is not guardian"):
            payout.revoke_root(1, sender=caller)


def test_changing_the_challenge_period_does_not_move_a_pending_root(
    payout, usdc, admin, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(1, tree)
    tx = payout.set_challenge_period(10 * CHALLENGE_PERIOD, sender=admin)
    assert tx.events == [
        payout.ChallengePeriodUpdated(
            previous_period=CHALLENGE_PERIOD, new_period=10 * CHALLENGE_PERIOD
        )
    ]
    advance(CHALLENGE_PERIOD)
    claim(payout, tree, 1, publisher, usdc)
    assert usdc.balanceOf(publisher) == 100 * USDC
    with ape.reverts("payout: period too long"):
        payout.set_challenge_period(30 * 86_400 + 1, sender=admin)


# ---------------------------------------------------------------- claim


def test_claim_pays_the_cumulative_amount_once(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 120 * USDC), (other_publisher, usdc, 80 * USDC)])
    post_tree(1, tree)
    with ape.reverts("payout: root not claimable yet"):
        claim(payout, tree, 1, publisher, usdc)
    advance(CHALLENGE_PERIOD)

    tx = claim(payout, tree, 1, publisher, usdc)

    assert tx.events.filter(payout.Claimed) == [
        payout.Claimed(
            epoch=1, account=publisher, token=usdc, amount=120 * USDC, cumulative_amount=120 * USDC
        )
    ]
    assert usdc.balanceOf(publisher) == 120 * USDC
    assert payout.get_total_paid(publisher, usdc) == 120 * USDC
    with ape.reverts("payout: nothing to claim"):
        claim(payout, tree, 1, publisher, usdc)
    assert usdc.balanceOf(publisher) == 120 * USDC


def test_a_later_root_pays_only_the_difference(
    payout, usdc, publisher, pool, post_tree, build_tree
):
    first = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(1, first)
    advance(CHALLENGE_PERIOD)
    claim(payout, first, 1, publisher, usdc)
    second = build_tree([(publisher, usdc, 175 * USDC)])
    post_tree(2, second)
    advance(CHALLENGE_PERIOD)

    tx = claim(payout, second, 2, publisher, usdc)

    assert tx.events.filter(payout.Claimed)[0].amount == 75 * USDC
    assert usdc.balanceOf(publisher) == 175 * USDC
    with ape.reverts("payout: nothing to claim"):
        claim(payout, first, 1, publisher, usdc)


def test_claim_is_permissionless_and_pays_the_leaf_account(
    payout, usdc, publisher, stranger, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 10 * USDC)])
    post_tree(1, tree)
    advance(CHALLENGE_PERIOD)
    claim(payout, tree, 1, publisher, usdc, sender=stranger)
    assert usdc.balanceOf(publisher) == 10 * USDC
    assert usdc.balanceOf(stranger) == 0


def test_claim_in_eth(payout, publisher, stranger, fund, post_tree, build_tree):
    fund(10**18, token=ZERO)
    tree = build_tree([(publisher, ZERO, 4 * 10**17)])
    post_tree(1, tree)
    advance(CHALLENGE_PERIOD)
    before = publisher.balance
    claim(payout, tree, 1, publisher, ZERO, sender=stranger)
    assert publisher.balance == before + 4 * 10**17
    assert payout.balance == 6 * 10**17


def test_a_root_where_an_amount_went_down_pays_nothing(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    first = build_tree([(publisher, usdc, 100 * USDC), (other_publisher, usdc, 1)])
    post_tree(1, first)
    advance(CHALLENGE_PERIOD)
    claim(payout, first, 1, publisher, usdc)
    lowered = build_tree([(publisher, usdc, 60 * USDC), (other_publisher, usdc, 100 * USDC)])
    post_tree(2, lowered)
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: nothing to claim"):
        claim(payout, lowered, 2, publisher, usdc)
    assert payout.get_total_paid(publisher, usdc) == 100 * USDC


def test_claim_while_paused_or_unknown_epoch_reverts(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 10 * USDC)])
    post_tree(1, tree)
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: unknown epoch"):
        claim(payout, tree, 2, publisher, usdc)
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        claim(payout, tree, 1, publisher, usdc)


def test_claimable_view_matches_what_claim_pays(
    payout, usdc, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 33 * USDC)])
    post_tree(1, tree)
    advance(CHALLENGE_PERIOD)
    proof = tree.proof(publisher.address, usdc.address)
    assert payout.claimable(1, publisher, usdc, 33 * USDC, proof) == 33 * USDC
    claim(payout, tree, 1, publisher, usdc)
    assert payout.claimable(1, publisher, usdc, 33 * USDC, proof) == 0


# ---------------------------------------------------------------- bad proofs


@pytest.fixture
def posted(payout, usdc, publisher, other_publisher, stranger, pool, post_tree, build_tree):
    tree = build_tree(
        [
            (publisher, usdc, 100 * USDC),
            (other_publisher, usdc, 50 * USDC),
            (stranger, usdc, 25 * USDC),
        ]
    )
    post_tree(1, tree)
    advance(CHALLENGE_PERIOD)
    return tree


def test_empty_proof_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(1, publisher, usdc, 100 * USDC, [], sender=publisher)


def test_another_accounts_proof_reverts(payout, usdc, publisher, other_publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            1,
            publisher,
            usdc,
            50 * USDC,
            posted.proof(other_publisher.address, usdc.address),
            sender=publisher,
        )


def test_amount_above_the_leaf_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            1,
            publisher,
            usdc,
            100 * USDC + 1,
            posted.proof(publisher.address, usdc.address),
            sender=publisher,
        )


def test_another_tokens_leaf_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            1,
            publisher,
            ZERO,
            100 * USDC,
            posted.proof(publisher.address, usdc.address),
            sender=publisher,
        )


def test_old_roots_proof_against_a_new_root_reverts(
    payout, usdc, publisher, other_publisher, stranger, posted, post_tree, build_tree
):
    post_tree(
        2,
        build_tree(
            [
                (publisher, usdc, 150 * USDC),
                (other_publisher, usdc, 50 * USDC),
                (stranger, usdc, 25 * USDC),
            ]
        ),
    )
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            2,
            publisher,
            usdc,
            100 * USDC,
            posted.proof(publisher.address, usdc.address),
            sender=publisher,
        )


def test_inner_node_as_leaf_reverts(payout, usdc, publisher, posted):
    """An inner node cannot pose as a leaf: the double-hashed leaf of a 160-byte
    encoding never equals the hash of a 64-byte pair."""
    proof = posted.proof(publisher.address, usdc.address)
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            1, publisher, usdc, int.from_bytes(proof[0], "big"), proof[1:], sender=publisher
        )


@pytest.mark.parametrize("other", ["chain", "contract"])
def test_tree_for_another_chain_or_deployment_reverts(
    payout, usdc, publisher, pool, post_tree, other
):
    chain_id = ape.chain.chain_id + (1 if other == "chain" else 0)
    contract = usdc.address if other == "contract" else payout.address
    foreign = PayoutTree(
        chain_id,
        contract,
        [Leaf(publisher.address, usdc.address, 10 * USDC), Leaf(usdc.address, usdc.address, 1)],
    )
    post_tree(1, foreign)
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: invalid proof"):
        claim(payout, foreign, 1, publisher, usdc)


# ---------------------------------------------------------------- claim_many


def test_claim_many_pushes_to_every_account_and_skips_the_paid(
    payout, usdc, publisher, other_publisher, stranger, posted
):
    claim(payout, posted, 1, publisher, usdc)
    requests = [
        (leaf.account, leaf.token, leaf.cumulative_amount, posted.proof(leaf.account, leaf.token))
        for leaf in posted.leaves
    ]

    tx = payout.claim_many(1, requests, sender=stranger)

    assert [event.account for event in tx.events.filter(payout.Claimed)] == [
        other_publisher.address,
        stranger.address,
    ]
    assert usdc.balanceOf(publisher) == 100 * USDC
    assert usdc.balanceOf(other_publisher) == 50 * USDC
    assert usdc.balanceOf(stranger) == 25 * USDC


def test_claim_many_with_one_bad_proof_pays_no_one(
    payout, usdc, publisher, other_publisher, posted
):
    requests = [
        (
            publisher.address,
            usdc.address,
            100 * USDC,
            posted.proof(publisher.address, usdc.address),
        ),
        (
            other_publisher.address,
            usdc.address,
            51 * USDC,
            posted.proof(other_publisher.address, usdc.address),
        ),
    ]
    with ape.reverts("payout: invalid proof"):
        payout.claim_many(1, requests, sender=publisher)
    assert usdc.balanceOf(publisher) == 0


def test_claim_many_while_paused_reverts(payout, usdc, guardian, publisher, posted):
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        payout.claim_many(1, [], sender=publisher)
