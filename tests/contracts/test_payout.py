"""PublisherPayout: the token list, funding, root posting with the on-chain solvency check,
one pending root at a time, guardian veto, pause that stops the challenge clock, and
cumulative claims against the current root only, path by path."""

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


def claim(payout, tree: PayoutTree, account, token, sender=None):
    leaf = tree.leaf_for(str(account), str(token))
    return payout.claim(
        leaf.account,
        leaf.token,
        leaf.cumulative_amount,
        tree.proof(leaf.account, leaf.token),
        sender=sender or account,
    )


def request(tree: PayoutTree, account, token) -> tuple:
    leaf = tree.leaf_for(str(account), str(token))
    return (leaf.account, leaf.token, leaf.cumulative_amount, tree.proof(leaf.account, leaf.token))


def matured(post_tree, tree: PayoutTree) -> PayoutTree:
    post_tree(tree)
    advance(CHALLENGE_PERIOD)
    return tree


# ---------------------------------------------------------------- tokens and fund


def test_register_token_lists_it_once_and_at_most_sixteen(project, payout, admin, stranger):
    with ape.reverts("payout: token already registered"):
        payout.register_token(ZERO, sender=admin)
    with ape.reverts("guard: caller is not admin"):
        payout.register_token(project.HostileToken.deploy(sender=admin), sender=stranger)
    with ape.reverts("payout: token is not a contract"):
        payout.register_token(stranger, sender=admin)
    token = project.HostileToken.deploy(sender=admin)
    tx = payout.register_token(token, sender=admin)
    assert tx.events == [payout.TokenRegistered(token=token)]
    assert payout.is_registered_token(token)
    for _ in range(13):
        payout.register_token(project.HostileToken.deploy(sender=admin), sender=admin)
    with ape.reverts("payout: too many tokens"):
        payout.register_token(project.HostileToken.deploy(sender=admin), sender=admin)


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


def test_fund_eth(payout, funder):
    tx = payout.fund(ZERO, 5, value=5, sender=funder)
    assert tx.events == [payout.Funded(token=ZERO, sender=funder, amount=5, total_funded=5)]
    assert payout.balance == 5
    with ape.reverts("payout: value mismatch"):
        payout.fund(ZERO, 5, value=4, sender=funder)


def test_fund_rejects_bad_input(project, payout, usdc, admin, funder, stranger):
    with ape.reverts("payout: caller is not funder"):
        payout.fund(ZERO, 1, value=1, sender=stranger)
    with ape.reverts("payout: zero amount"):
        payout.fund(ZERO, 0, sender=funder)
    with ape.reverts("payout: unexpected value"):
        payout.fund(usdc, 1, value=1, sender=funder)
    unregistered = project.HostileToken.deploy(sender=admin)
    unregistered.mint(funder, 1, sender=admin)
    unregistered.approve(payout, 1, sender=funder)
    with ape.reverts("payout: token not registered"):
        payout.fund(unregistered, 1, sender=funder)


def test_a_funding_that_delivers_nothing_is_refused(project, payout, admin, funder):
    token = project.HostileToken.deploy(sender=admin)
    payout.register_token(token, sender=admin)
    token.mint(funder, 100, sender=admin)
    token.approve(payout, 100, sender=funder)
    token.set_fee_bps(10_000, sender=admin)
    with ape.reverts("payout: nothing received"):
        payout.fund(token, 100, sender=funder)
    assert payout.total_funded(token) == 0


# ---------------------------------------------------------------- post_root


def test_post_root_records_root_totals_and_maturity(
    payout, usdc, settler, publisher, pool, build_tree
):
    tree = build_tree([(publisher, usdc, 300 * USDC)])

    tx = payout.post_root(1, tree.root, [usdc], [300 * USDC], "ipfs://root-1", sender=settler)

    claimable_at = ape.chain.blocks.head.timestamp + CHALLENGE_PERIOD
    assert tx.events == [
        payout.RootPosted(
            root_id=1,
            root=tree.root,
            claimable_at=claimable_at,
            tokens=[ZERO, usdc.address],
            cumulative_totals=[0, 300 * USDC],
            artefact_uri="ipfs://root-1",
        )
    ]
    root = payout.get_root(1)
    assert (root.root, root.claimable_at) == (tree.root, claimable_at)
    assert payout.root_total(1, usdc) == 300 * USDC
    assert (payout.latest_root_id(), payout.pending_root_id(), payout.current_root_id()) == (
        1,
        1,
        0,
    )
    advance(CHALLENGE_PERIOD)
    assert (payout.pending_root_id(), payout.current_root_id()) == (0, 1)


def test_root_ids_move_by_exactly_one(payout, usdc, settler, guardian, publisher, pool, build_tree):
    """Finding 4: an unbounded id (2**256 - 1) once blocked every later root."""
    tree = build_tree([(publisher, usdc, 1)])
    for root_id in (0, 2, 2**256 - 1):
        with ape.reverts("payout: root id not next"):
            payout.post_root(root_id, tree.root, [usdc], [1], "", sender=settler)
    payout.post_root(1, tree.root, [usdc], [1], "", sender=settler)
    payout.revoke_root(1, sender=guardian)
    with ape.reverts("payout: root id not next"):
        payout.post_root(1, tree.root, [usdc], [1], "", sender=settler)
    payout.post_root(2, tree.root, [usdc], [1], "", sender=settler)
    assert payout.latest_root_id() == 2


def test_only_one_root_is_pending_at_a_time(payout, usdc, publisher, pool, post_tree, build_tree):
    post_tree(build_tree([(publisher, usdc, 100 * USDC)]))
    with ape.reverts("payout: root pending"):
        post_tree(build_tree([(publisher, usdc, 200 * USDC)]))
    advance(CHALLENGE_PERIOD)
    post_tree(build_tree([(publisher, usdc, 200 * USDC)]))
    assert (payout.current_root_id(), payout.pending_root_id()) == (1, 2)


def test_post_root_may_promise_exactly_everything_funded(
    payout, usdc, pool, post_tree, build_tree, publisher
):
    post_tree(build_tree([(publisher, usdc, POOL)]))
    assert payout.root_total(1, usdc) == POOL


def test_root_that_would_make_the_contract_insolvent_reverts(
    payout, usdc, settler, publisher, other_publisher, pool, build_tree
):
    tree = build_tree([(publisher, usdc, POOL), (other_publisher, usdc, 1)])
    with ape.reverts("payout: root exceeds funding"):
        payout.post_root(1, tree.root, [usdc], [POOL + 1], "", sender=settler)
    assert payout.latest_root_id() == 0


def test_root_with_a_lower_total_than_the_current_reverts(
    payout, usdc, publisher, pool, post_tree, build_tree
):
    matured(post_tree, build_tree([(publisher, usdc, 500 * USDC)]))
    with ape.reverts("payout: cumulative total decreased"):
        post_tree(build_tree([(publisher, usdc, 499 * USDC)]))


def test_tokens_left_out_keep_their_previous_total(
    payout, usdc, settler, publisher, fund, pool, post_tree, build_tree
):
    fund(10**18, token=ZERO)
    matured(post_tree, build_tree([(publisher, usdc, 100 * USDC), (publisher, ZERO, 10**18)]))
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


def test_post_root_rejects_an_empty_root(payout, settler):
    with ape.reverts("payout: empty root"):
        payout.post_root(1, b"\x00" * 32, [], [], "", sender=settler)


def test_post_root_by_non_settler_or_while_paused_reverts(payout, settler, guardian, stranger):
    with ape.reverts("payout: caller is not settler"):
        payout.post_root(1, b"\x01" * 32, [], [], "", sender=stranger)
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        payout.post_root(1, b"\x01" * 32, [], [], "", sender=settler)


# ---------------------------------------------------------------- revoke_root


def test_guardian_revokes_the_pending_root(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(tree)

    tx = payout.revoke_root(1, sender=guardian)

    assert tx.events == [payout.RootRevoked(root_id=1, root=tree.root, guardian=guardian)]
    assert payout.revoked(1)
    assert (payout.pending_root_id(), payout.current_root_id()) == (0, 0)
    advance(CHALLENGE_PERIOD + 1)
    with ape.reverts("payout: no current root"):
        claim(payout, tree, publisher, usdc)
    assert usdc.balanceOf(publisher) == 0


def test_after_a_revoke_the_current_root_stays_and_the_next_is_checked_against_it(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    first = matured(post_tree, build_tree([(publisher, usdc, 100 * USDC)]))
    post_tree(build_tree([(publisher, usdc, 900 * USDC)]))  # inflated
    payout.revoke_root(2, sender=guardian)
    assert payout.current_root_id() == 1
    claim(payout, first, publisher, usdc)
    post_tree(build_tree([(publisher, usdc, 150 * USDC)]))
    assert payout.latest_root_id() == 3
    assert payout.root_total(3, usdc) == 150 * USDC


def test_revoke_only_the_pending_root_before_it_matures(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    post_tree(build_tree([(publisher, usdc, 100 * USDC)]))
    with ape.reverts("payout: root not pending"):
        payout.revoke_root(2, sender=guardian)
    advance(CHALLENGE_PERIOD)
    with ape.reverts("payout: root not pending"):
        payout.revoke_root(1, sender=guardian)
    post_tree(build_tree([(publisher, usdc, 200 * USDC)]))
    payout.revoke_root(2, sender=guardian)
    with ape.reverts("payout: root not pending"):
        payout.revoke_root(2, sender=guardian)


def test_revoke_by_non_guardian_reverts(
    payout, usdc, settler, admin, publisher, pool, post_tree, build_tree
):
    post_tree(build_tree([(publisher, usdc, 100 * USDC)]))
    for caller in (settler, admin, publisher):
        with ape.reverts("payout: caller is not guardian"):
            payout.revoke_root(1, sender=caller)


# ---------------------------------------------------------------- pause stops the clock


def test_a_paused_payout_does_not_mature_its_pending_root(
    payout, usdc, admin, guardian, publisher, pool, post_tree, build_tree
):
    """Finding 5: a guardian who paused over a bad root but missed the window could only
    unpause and let it pay. Now paused time does not count, and the root stays revocable."""
    tree = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(tree)
    claimable_at = payout.get_root(1).claimable_at
    advance(CHALLENGE_PERIOD // 2)
    payout.pause(sender=guardian)
    advance(3 * CHALLENGE_PERIOD)
    assert payout.pending_root_id() == 1
    assert payout.current_root_id() == 0

    tx = payout.unpause(sender=admin)

    paused_for = tx.events.filter(payout.PausedTimeAdded)[0].duration
    assert paused_for >= 3 * CHALLENGE_PERIOD
    assert tx.events.filter(payout.RootMaturityDelayed) == [
        payout.RootMaturityDelayed(root_id=1, claimable_at=claimable_at + paused_for)
    ]
    assert payout.get_root(1).claimable_at == claimable_at + paused_for
    with ape.reverts("payout: no current root"):
        claim(payout, tree, publisher, usdc)
    payout.revoke_root(1, sender=guardian)


def test_a_root_can_be_revoked_while_paused_after_its_window(
    payout, usdc, guardian, publisher, pool, post_tree, build_tree
):
    post_tree(build_tree([(publisher, usdc, 100 * USDC)]))
    payout.pause(sender=guardian)
    advance(2 * CHALLENGE_PERIOD)
    payout.revoke_root(1, sender=guardian)
    assert payout.revoked(1)


def test_a_root_matured_before_the_pause_keeps_its_maturity(
    payout, usdc, admin, guardian, publisher, pool, post_tree, build_tree
):
    tree = matured(post_tree, build_tree([(publisher, usdc, 100 * USDC)]))
    payout.pause(sender=guardian)
    advance(CHALLENGE_PERIOD)
    tx = payout.unpause(sender=admin)
    assert tx.events.filter(payout.RootMaturityDelayed) == []
    claim(payout, tree, publisher, usdc)
    assert usdc.balanceOf(publisher) == 100 * USDC


# ---------------------------------------------------------------- challenge period


def test_challenge_period_has_a_floor_and_a_ceiling(project, payout, admin, stranger):
    """Finding 6: a zero challenge period let a root pay in the block it was posted."""
    for period, reason in ((0, "payout: period too short"), (3_599, "payout: period too short")):
        with ape.reverts(reason):
            project.PublisherPayout.deploy(period, sender=admin)
        with ape.reverts(reason):
            payout.set_challenge_period(period, sender=admin)
    with ape.reverts("payout: period too long"):
        payout.set_challenge_period(30 * 86_400 + 1, sender=admin)
    with ape.reverts("guard: caller is not admin"):
        payout.set_challenge_period(7_200, sender=stranger)
    deployed = project.PublisherPayout.deploy(3_600, sender=admin)
    assert deployed.challenge_period() == 3_600


def test_changing_the_challenge_period_does_not_move_a_pending_root(
    payout, usdc, admin, publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 100 * USDC)])
    post_tree(tree)
    tx = payout.set_challenge_period(10 * CHALLENGE_PERIOD, sender=admin)
    assert tx.events == [
        payout.ChallengePeriodUpdated(
            previous_period=CHALLENGE_PERIOD, new_period=10 * CHALLENGE_PERIOD
        )
    ]
    advance(CHALLENGE_PERIOD)
    claim(payout, tree, publisher, usdc)
    assert usdc.balanceOf(publisher) == 100 * USDC


# ---------------------------------------------------------------- claim


def test_claim_pays_the_cumulative_amount_once(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    tree = build_tree([(publisher, usdc, 120 * USDC), (other_publisher, usdc, 80 * USDC)])
    post_tree(tree)
    with ape.reverts("payout: no current root"):
        claim(payout, tree, publisher, usdc)
    advance(CHALLENGE_PERIOD)

    tx = claim(payout, tree, publisher, usdc)

    assert tx.events.filter(payout.Claimed) == [
        payout.Claimed(
            root_id=1,
            account=publisher,
            token=usdc,
            recipient=publisher,
            amount=120 * USDC,
            cumulative_amount=120 * USDC,
        )
    ]
    assert usdc.balanceOf(publisher) == 120 * USDC
    assert payout.get_total_paid(publisher, usdc) == 120 * USDC
    assert payout.total_claimed(usdc) == 120 * USDC
    with ape.reverts("payout: nothing to claim"):
        claim(payout, tree, publisher, usdc)
    assert usdc.balanceOf(publisher) == 120 * USDC


def test_a_later_root_pays_only_the_difference(
    payout, usdc, publisher, pool, post_tree, build_tree
):
    first = matured(post_tree, build_tree([(publisher, usdc, 100 * USDC)]))
    claim(payout, first, publisher, usdc)
    second = matured(post_tree, build_tree([(publisher, usdc, 175 * USDC)]))

    tx = claim(payout, second, publisher, usdc)

    assert tx.events.filter(payout.Claimed)[0].amount == 75 * USDC
    assert tx.events.filter(payout.Claimed)[0].root_id == 2
    assert usdc.balanceOf(publisher) == 175 * USDC


def test_a_pending_root_does_not_pay_but_the_current_one_still_does(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    first = matured(post_tree, build_tree([(publisher, usdc, 100 * USDC)]))
    second = build_tree([(publisher, usdc, 100 * USDC), (other_publisher, usdc, 50 * USDC)])
    post_tree(second)
    with ape.reverts("payout: invalid proof"):
        claim(payout, second, other_publisher, usdc)
    claim(payout, first, publisher, usdc)
    assert usdc.balanceOf(publisher) == 100 * USDC


def test_a_superseded_root_pays_nothing_once_its_correction_matures(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    """Finding 1: a correction (A 1,000 -> A 400, B 600) still let A take 1,000 under the
    old root, and B found the pool empty."""
    wrong = matured(post_tree, build_tree([(publisher, usdc, POOL)]))
    corrected = matured(
        post_tree,
        build_tree([(publisher, usdc, 400 * USDC), (other_publisher, usdc, 600 * USDC)]),
    )

    with ape.reverts("payout: invalid proof"):
        claim(payout, wrong, publisher, usdc)
    claim(payout, corrected, publisher, usdc)
    claim(payout, corrected, other_publisher, usdc)

    assert usdc.balanceOf(publisher) == 400 * USDC
    assert usdc.balanceOf(other_publisher) == 600 * USDC
    assert payout.total_claimed(usdc) == POOL


def test_a_claim_above_the_current_roots_total_reverts(
    payout, usdc, settler, publisher, other_publisher, pool, build_tree
):
    """A tree whose leaves sum above its declared total pays only up to the total."""
    tree = build_tree([(publisher, usdc, 600 * USDC), (other_publisher, usdc, 600 * USDC)])
    payout.post_root(1, tree.root, [usdc], [POOL], "", sender=settler)
    advance(CHALLENGE_PERIOD)
    claim(payout, tree, publisher, usdc)
    with ape.reverts("payout: claims exceed root total"):
        claim(payout, tree, other_publisher, usdc)
    assert payout.total_claimed(usdc) == 600 * USDC
    assert usdc.balanceOf(other_publisher) == 0


def test_claim_is_permissionless_and_pays_the_leaf_account(
    payout, usdc, publisher, stranger, pool, post_tree, build_tree
):
    tree = matured(post_tree, build_tree([(publisher, usdc, 10 * USDC)]))
    claim(payout, tree, publisher, usdc, sender=stranger)
    assert usdc.balanceOf(publisher) == 10 * USDC
    assert usdc.balanceOf(stranger) == 0


def test_claim_to_lets_the_account_send_its_earnings_elsewhere(
    payout, usdc, publisher, other_publisher, stranger, pool, post_tree, build_tree
):
    """Finding 8: earnings could not be redirected, e.g. from a wallet being retired."""
    tree = matured(post_tree, build_tree([(publisher, usdc, 10 * USDC)]))
    leaf = tree.leaf_for(publisher.address, usdc.address)
    proof = tree.proof(publisher.address, usdc.address)
    with ape.reverts("payout: invalid proof"):
        payout.claim_to(stranger, usdc, 10 * USDC, proof, sender=stranger)
    with ape.reverts("payout: zero recipient"):
        payout.claim_to(ZERO, usdc, 10 * USDC, proof, sender=publisher)

    tx = payout.claim_to(other_publisher, usdc, leaf.cumulative_amount, proof, sender=publisher)

    assert tx.events.filter(payout.Claimed) == [
        payout.Claimed(
            root_id=1,
            account=publisher,
            token=usdc,
            recipient=other_publisher,
            amount=10 * USDC,
            cumulative_amount=10 * USDC,
        )
    ]
    assert usdc.balanceOf(other_publisher) == 10 * USDC
    assert usdc.balanceOf(publisher) == 0
    with ape.reverts("payout: nothing to claim"):
        claim(payout, tree, publisher, usdc)


def test_claim_in_eth(payout, publisher, stranger, fund, post_tree, build_tree):
    fund(10**18, token=ZERO)
    tree = matured(post_tree, build_tree([(publisher, ZERO, 4 * 10**17)]))
    before = publisher.balance
    claim(payout, tree, publisher, ZERO, sender=stranger)
    assert publisher.balance == before + 4 * 10**17
    assert payout.balance == 6 * 10**17


def test_eth_reaches_a_safe_like_proxy_wallet(project, payout, admin, fund, post_tree, build_tree):
    """The stipend covers a Safe proxy's receive (delegatecall into a singleton that logs)."""
    singleton = project.SafeLikeSingleton.deploy(sender=admin)
    wallet = project.SafeLikeProxy.deploy(singleton, sender=admin)
    fund(10**18, token=ZERO)
    tree = matured(post_tree, build_tree([(wallet.address, ZERO, 3 * 10**17)]))
    tx = claim(payout, tree, wallet.address, ZERO, sender=admin)
    assert wallet.balance == 3 * 10**17
    # the singleton's log is emitted in the proxy's context
    assert [log["address"] for log in tx.logs if log["address"] != payout.address] == [
        wallet.address
    ]


def test_a_root_where_an_amount_went_down_pays_nothing(
    payout, usdc, publisher, other_publisher, pool, post_tree, build_tree
):
    first = matured(
        post_tree, build_tree([(publisher, usdc, 100 * USDC), (other_publisher, usdc, 1)])
    )
    claim(payout, first, publisher, usdc)
    lowered = matured(
        post_tree, build_tree([(publisher, usdc, 60 * USDC), (other_publisher, usdc, 100 * USDC)])
    )
    with ape.reverts("payout: nothing to claim"):
        claim(payout, lowered, publisher, usdc)
    assert payout.get_total_paid(publisher, usdc) == 100 * USDC
    # the lowered tree sums to 160 while 100 is already out: paying B its 100 would
    # promise 200 under a root whose total is 160, so the claim is refused
    with ape.reverts("payout: claims exceed root total"):
        claim(payout, lowered, other_publisher, usdc)
    assert payout.total_claimed(usdc) == 100 * USDC


def test_claim_while_paused_reverts(payout, usdc, guardian, publisher, pool, post_tree, build_tree):
    tree = matured(post_tree, build_tree([(publisher, usdc, 10 * USDC)]))
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        claim(payout, tree, publisher, usdc)


def test_claimable_view_matches_what_claim_pays(
    payout, usdc, publisher, pool, post_tree, build_tree
):
    tree = matured(post_tree, build_tree([(publisher, usdc, 33 * USDC)]))
    proof = tree.proof(publisher.address, usdc.address)
    assert payout.claimable(publisher, usdc, 33 * USDC, proof) == 33 * USDC
    claim(payout, tree, publisher, usdc)
    with ape.reverts("payout: nothing to claim"):
        payout.claimable(publisher, usdc, 33 * USDC, proof)


# ---------------------------------------------------------------- bad proofs


@pytest.fixture
def posted(payout, usdc, publisher, other_publisher, stranger, pool, post_tree, build_tree):
    return matured(
        post_tree,
        build_tree(
            [
                (publisher, usdc, 100 * USDC),
                (other_publisher, usdc, 50 * USDC),
                (stranger, usdc, 25 * USDC),
            ]
        ),
    )


def test_empty_proof_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(publisher, usdc, 100 * USDC, [], sender=publisher)


def test_another_accounts_proof_reverts(payout, usdc, publisher, other_publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            publisher,
            usdc,
            50 * USDC,
            posted.proof(other_publisher.address, usdc.address),
            sender=publisher,
        )


def test_amount_above_the_leaf_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            publisher,
            usdc,
            100 * USDC + 1,
            posted.proof(publisher.address, usdc.address),
            sender=publisher,
        )


def test_another_tokens_leaf_reverts(payout, usdc, publisher, posted):
    with ape.reverts("payout: invalid proof"):
        payout.claim(
            publisher,
            ZERO,
            100 * USDC,
            posted.proof(publisher.address, usdc.address),
            sender=publisher,
        )


def test_old_roots_proof_against_a_new_root_reverts(
    payout, usdc, publisher, other_publisher, stranger, posted, post_tree, build_tree
):
    matured(
        post_tree,
        build_tree(
            [
                (publisher, usdc, 150 * USDC),
                (other_publisher, usdc, 50 * USDC),
                (stranger, usdc, 25 * USDC),
            ]
        ),
    )
    with ape.reverts("payout: invalid proof"):
        payout.claim(
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
        payout.claim(publisher, usdc, int.from_bytes(proof[0], "big"), proof[1:], sender=publisher)


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
    matured(post_tree, foreign)
    with ape.reverts("payout: invalid proof"):
        claim(payout, foreign, publisher, usdc)


# ---------------------------------------------------------------- claim_many


def test_claim_many_pushes_to_every_account_and_skips_the_paid(
    payout, usdc, publisher, other_publisher, stranger, posted
):
    claim(payout, posted, publisher, usdc)
    requests = [request(posted, leaf.account, leaf.token) for leaf in posted.leaves]

    tx = payout.claim_many(requests, sender=stranger)

    assert [event.account for event in tx.events.filter(payout.Claimed)] == [
        other_publisher.address,
        stranger.address,
    ]
    assert tx.events.filter(payout.ClaimSkipped) == [
        payout.ClaimSkipped(
            account=publisher,
            token=usdc,
            cumulative_amount=100 * USDC,
            reason="payout: nothing to claim",
        )
    ]
    assert usdc.balanceOf(publisher) == 100 * USDC
    assert usdc.balanceOf(other_publisher) == 50 * USDC
    assert usdc.balanceOf(stranger) == 25 * USDC


def test_claim_many_skips_a_bad_item_and_pays_the_rest(
    payout, usdc, publisher, other_publisher, posted
):
    """Finding 7: one failing item used to revert the push for everyone."""
    bad = (
        other_publisher.address,
        usdc.address,
        51 * USDC,
        posted.proof(other_publisher.address, usdc.address),
    )
    tx = payout.claim_many([bad, request(posted, publisher, usdc)], sender=publisher)
    assert tx.events.filter(payout.ClaimSkipped) == [
        payout.ClaimSkipped(
            account=other_publisher,
            token=usdc,
            cumulative_amount=51 * USDC,
            reason="payout: invalid proof",
        )
    ]
    assert usdc.balanceOf(publisher) == 100 * USDC
    assert usdc.balanceOf(other_publisher) == 0


def test_claim_many_skips_a_payee_that_refuses_eth(
    project, payout, admin, publisher, fund, post_tree, build_tree
):
    refuser = project.HostileReceiver.deploy(sender=admin)
    refuser.set_refuse_eth(True, sender=admin)
    fund(10**18, token=ZERO)
    tree = matured(
        post_tree, build_tree([(refuser.address, ZERO, 10**17), (publisher, ZERO, 10**17)])
    )
    before = publisher.balance

    tx = payout.claim_many(
        [request(tree, refuser.address, ZERO), request(tree, publisher, ZERO)], sender=admin
    )

    assert tx.events.filter(payout.ClaimSkipped) == [
        payout.ClaimSkipped(
            account=refuser, token=ZERO, cumulative_amount=10**17, reason="transfer failed"
        )
    ]
    assert publisher.balance == before + 10**17
    assert payout.get_total_paid(refuser, ZERO) == 0
    assert payout.total_claimed(ZERO) == 10**17


def test_claim_many_while_paused_or_before_a_root_reverts(
    payout, guardian, publisher, settler, usdc, pool, post_tree, build_tree
):
    with ape.reverts("payout: no current root"):
        payout.claim_many([], sender=publisher)
    payout.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        payout.claim_many([], sender=publisher)
