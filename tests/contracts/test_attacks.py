"""Attacks on the money paths: reentrancy through a hostile token and a hostile ETH
receiver, and awkward tokens (no return value, false, fee on transfer, blocklist, stopped)."""

from __future__ import annotations

import ape
import pytest

from tests.contracts.conftest import (
    CHALLENGE_PERIOD,
    MAX_SPEND,
    USDC,
    WITHDRAW_DELAY,
    ZERO,
    advance,
    end_epoch,
)


@pytest.fixture
def hostile_token(project, admin, escrow, payout):
    token = project.HostileToken.deploy(sender=admin)
    payout.register_token(token, sender=admin)
    escrow.set_token_allowed(token, True, sender=admin)
    return token


@pytest.fixture
def receiver(project, admin):
    return project.HostileReceiver.deploy(sender=admin)


def fund_hostile_campaign(escrow, token, advertiser, register_campaign, amount: int) -> int:
    campaign_id = register_campaign(advertiser, token=token.address)
    token.mint(advertiser, amount, sender=advertiser)
    token.approve(escrow, amount, sender=advertiser)
    escrow.deposit(campaign_id, amount, token, sender=advertiser)
    return campaign_id


def as_receiver(receiver, caller, contract, method: str, *args, value: int = 0):
    """Make the contract wallet `receiver` call `contract.method(*args)`."""
    calldata = getattr(contract, method).encode_input(*args)
    return receiver.execute(contract, calldata, value, value=value, sender=caller)


# ---------------------------------------------------------------- reentrancy


def test_eth_receiver_reentering_withdraw_is_paid_once(
    escrow, campaign_registry, receiver, admin, register_campaign
):
    # the contract wallet is the advertiser, so a re-entered withdraw passes every role check
    calldata = campaign_registry.register.encode_input(ZERO, 0, 1, b"\x11" * 32, MAX_SPEND)
    receiver.execute(campaign_registry, calldata, 0, sender=admin)
    campaign_id = campaign_registry.campaign_count()
    as_receiver(receiver, admin, escrow, "deposit", campaign_id, 10**18, ZERO, value=10**18)
    as_receiver(receiver, admin, escrow, "request_withdraw", campaign_id, ZERO, 4 * 10**17)
    advance(WITHDRAW_DELAY)
    receiver.arm_reentry(escrow, escrow.withdraw.encode_input(campaign_id, ZERO), sender=admin)

    as_receiver(receiver, admin, escrow, "withdraw", campaign_id, ZERO)

    assert receiver.reentry_attempts() == 1
    assert receiver.reentry_successes() == 0
    assert receiver.balance == 4 * 10**17
    assert escrow.get_balance(campaign_id, ZERO) == 6 * 10**17
    assert escrow.balance == 6 * 10**17


def test_eth_receiver_cannot_reenter_claim_within_the_stipend(
    payout, receiver, admin, build_tree, post_tree
):
    """ETH goes out with a Safe-sized gas stipend: a receiver that tries to re-enter claim or
    claim_many has no gas to do it, its claim fails whole, and nothing is marked paid."""
    payout.grantRole(payout.FUNDER_ROLE(), admin, sender=admin)
    payout.fund(ZERO, 10**18, value=10**18, sender=admin)
    tree = build_tree([(receiver.address, ZERO, 3 * 10**17), (admin.address, ZERO, 10**17)])
    post_tree(tree)
    advance(CHALLENGE_PERIOD)
    proof = tree.proof(receiver.address, ZERO)
    args = (receiver.address, ZERO, 3 * 10**17, proof)
    for reentry in (
        payout.claim.encode_input(*args),
        payout.claim_many.encode_input([args]),
    ):
        receiver.arm_reentry(payout, reentry, sender=admin)
        with ape.reverts("payout: transfer failed"):
            payout.claim(*args, sender=admin)
        assert payout.get_total_paid(receiver, ZERO) == 0
        assert payout.balance == 10**18

    # disarmed, the same wallet is paid exactly once
    receiver.arm_reentry(ZERO, b"", sender=admin)
    payout.claim(*args, sender=admin)
    with ape.reverts("payout: nothing to claim"):
        payout.claim(*args, sender=admin)
    assert receiver.balance == 3 * 10**17
    assert payout.balance == 7 * 10**17


def test_hostile_token_reentering_spend_batch_moves_nothing_twice(
    escrow, payout, hostile_token, admin, settler, advertiser, register_campaign
):
    campaign_id = fund_hostile_campaign(
        escrow, hostile_token, advertiser, register_campaign, 100 * USDC
    )
    # the token's callback replays the settler's batch while the first one is paying out
    escrow.grantRole(escrow.SETTLER_ROLE(), hostile_token, sender=admin)
    hostile_token.arm_reentry(
        escrow, escrow.spend_batch.encode_input(2, [campaign_id], [10 * USDC]), sender=admin
    )
    end_epoch(escrow, 2)

    escrow.spend_batch(1, [campaign_id], [10 * USDC], sender=settler)

    assert hostile_token.reentry_attempts() == 1
    assert hostile_token.reentry_successes() == 0
    assert escrow.get_total_spent(campaign_id, hostile_token) == 10 * USDC
    assert payout.total_funded(hostile_token) == 8_500_000


def test_hostile_token_reentering_claim_pays_once(
    payout, hostile_token, admin, publisher, build_tree, post_tree
):
    payout.grantRole(payout.FUNDER_ROLE(), admin, sender=admin)
    hostile_token.mint(admin, 100, sender=admin)
    hostile_token.approve(payout, 100, sender=admin)
    payout.fund(hostile_token, 100, sender=admin)
    tree = build_tree([(publisher, hostile_token, 60), (admin, hostile_token, 40)])
    post_tree(tree)
    advance(CHALLENGE_PERIOD)
    args = (
        publisher.address,
        hostile_token.address,
        60,
        tree.proof(publisher.address, hostile_token.address),
    )
    hostile_token.arm_reentry(payout, payout.claim.encode_input(*args), sender=admin)

    payout.claim(*args, sender=publisher)

    assert hostile_token.reentry_successes() == 0
    assert hostile_token.balanceOf(publisher) == 60
    assert hostile_token.balanceOf(payout) == 40


# ---------------------------------------------------------------- awkward tokens


def test_token_without_return_value_works_end_to_end(
    project,
    escrow,
    payout,
    admin,
    settler,
    advertiser,
    publisher,
    register_campaign,
    build_tree,
    post_tree,
):
    token = project.NoReturnToken.deploy(sender=admin)
    payout.register_token(token, sender=admin)
    escrow.set_token_allowed(token, True, sender=admin)
    campaign_id = fund_hostile_campaign(escrow, token, advertiser, register_campaign, 1_000)
    end_epoch(escrow, 1)
    escrow.spend_batch(1, [campaign_id], [200], sender=settler)
    tree = build_tree([(publisher, token, 170)])
    post_tree(tree)
    advance(CHALLENGE_PERIOD)
    payout.claim(
        publisher, token, 170, tree.proof(publisher.address, token.address), sender=publisher
    )
    escrow.request_withdraw(campaign_id, token, 800, sender=advertiser)
    advance(WITHDRAW_DELAY)
    escrow.withdraw(campaign_id, token, sender=advertiser)
    assert token.balanceOf(publisher) == 170
    assert token.balanceOf(advertiser) == 800
    assert token.balanceOf(escrow) == 0


def test_token_returning_false_is_refused(escrow, hostile_token, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=hostile_token.address)
    hostile_token.mint(advertiser, 100, sender=advertiser)
    hostile_token.approve(escrow, 100, sender=advertiser)
    hostile_token.set_return_false(True, sender=advertiser)
    with ape.reverts("escrow: transfer failed"):
        escrow.deposit(campaign_id, 100, hostile_token, sender=advertiser)
    assert escrow.get_balance(campaign_id, hostile_token) == 0


def test_fee_on_transfer_token_is_credited_what_arrived(
    escrow, payout, hostile_token, admin, settler, advertiser, register_campaign
):
    hostile_token.set_fee_bps(100, sender=admin)  # 1% lost on every transfer
    campaign_id = fund_hostile_campaign(
        escrow, hostile_token, advertiser, register_campaign, 10_000
    )

    assert escrow.get_balance(campaign_id, hostile_token) == 9_900
    assert hostile_token.balanceOf(escrow) == 9_900
    end_epoch(escrow, 1)
    tx = escrow.spend_batch(1, [campaign_id], [1_000], sender=settler)
    assert tx.events.filter(escrow.Spent)[0].charged == 1_000
    # the payout counts what reached it, so its solvency check stays honest
    assert payout.total_funded(hostile_token) == 850 - 8
    assert hostile_token.balanceOf(payout) == payout.total_funded(hostile_token)


def test_blocklisted_payee_claim_fails_and_stays_claimable(
    payout, hostile_token, admin, publisher, build_tree, post_tree
):
    payout.grantRole(payout.FUNDER_ROLE(), admin, sender=admin)
    hostile_token.mint(admin, 100, sender=admin)
    hostile_token.approve(payout, 100, sender=admin)
    payout.fund(hostile_token, 100, sender=admin)
    tree = build_tree([(publisher, hostile_token, 70)])
    post_tree(tree)
    advance(CHALLENGE_PERIOD)
    proof = tree.proof(publisher.address, hostile_token.address)
    hostile_token.set_blocked(publisher, True, sender=admin)

    with ape.reverts("hostile: blocked"):
        payout.claim(publisher, hostile_token, 70, proof, sender=publisher)

    assert payout.get_total_paid(publisher, hostile_token) == 0
    hostile_token.set_blocked(publisher, False, sender=admin)
    payout.claim(publisher, hostile_token, 70, proof, sender=publisher)
    assert hostile_token.balanceOf(publisher) == 70


def test_stopped_token_blocks_deposit_without_state_change(
    escrow, hostile_token, admin, advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, token=hostile_token.address)
    hostile_token.mint(advertiser, 100, sender=advertiser)
    hostile_token.approve(escrow, 100, sender=advertiser)
    hostile_token.set_stopped(True, sender=admin)
    with ape.reverts("hostile: stopped"):
        escrow.deposit(campaign_id, 100, hostile_token, sender=advertiser)
    assert escrow.get_ledger(campaign_id).deposited == 0
