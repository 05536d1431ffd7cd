"""The guard module in all four contracts: one DEFAULT_ADMIN holder handed over in two steps,
no other way to grant, revoke or renounce it, and the emergency stop (finding 10)."""

from __future__ import annotations

import ape
import pytest

from tests.contracts.conftest import advance

CONTRACTS = ["publisher_registry", "campaign_registry", "escrow", "payout"]
ADMIN_ROLE = b"\x00" * 32


@pytest.fixture(params=CONTRACTS)
def contract(request, publisher_registry, campaign_registry, escrow, payout):
    # all four are named here so they are deployed before the test's chain snapshot
    deployed = {
        "publisher_registry": publisher_registry,
        "campaign_registry": campaign_registry,
        "escrow": escrow,
        "payout": payout,
    }
    return deployed[request.param]


def test_the_deployer_is_the_one_admin(contract, admin):
    assert contract.admin() == admin.address
    assert contract.hasRole(ADMIN_ROLE, admin)
    assert contract.pending_admin() == "0x" + "00" * 20


def test_admin_changes_hands_in_two_steps(contract, admin, stranger, other_publisher):
    with ape.reverts("guard: caller is not admin"):
        contract.propose_admin(stranger, sender=stranger)
    with ape.reverts("guard: already admin"):
        contract.propose_admin(admin, sender=admin)

    tx = contract.propose_admin(stranger, sender=admin)
    assert tx.events == [contract.AdminProposed(admin=admin, proposed_admin=stranger)]
    assert contract.hasRole(ADMIN_ROLE, admin)
    with ape.reverts("guard: caller is not proposed admin"):
        contract.accept_admin(sender=other_publisher)

    tx = contract.accept_admin(sender=stranger)

    assert tx.events.filter(contract.AdminTransferred) == [
        contract.AdminTransferred(previous_admin=admin, new_admin=stranger)
    ]
    assert contract.admin() == stranger.address
    assert contract.hasRole(ADMIN_ROLE, stranger)
    assert not contract.hasRole(ADMIN_ROLE, admin)
    assert contract.pending_admin() == "0x" + "00" * 20
    with ape.reverts("guard: caller is not admin"):
        contract.propose_admin(admin, sender=admin)
    with ape.reverts("guard: caller is not proposed admin"):
        contract.accept_admin(sender=stranger)


def test_a_proposal_can_be_withdrawn(contract, admin, stranger):
    contract.propose_admin(stranger, sender=admin)
    contract.propose_admin("0x" + "00" * 20, sender=admin)
    with ape.reverts("guard: caller is not proposed admin"):
        contract.accept_admin(sender=stranger)
    assert contract.admin() == admin.address


def test_admin_role_cannot_move_any_other_way(contract, admin, stranger):
    with ape.reverts("guard: admin moves in two steps"):
        contract.grantRole(ADMIN_ROLE, stranger, sender=admin)
    with ape.reverts("guard: admin moves in two steps"):
        contract.revokeRole(ADMIN_ROLE, admin, sender=admin)
    with ape.reverts("guard: admin moves in two steps"):
        contract.renounceRole(ADMIN_ROLE, admin, sender=admin)
    assert contract.hasRole(ADMIN_ROLE, admin)
    assert not contract.hasRole(ADMIN_ROLE, stranger)
    # the raw snekmate setter that would let another role administer the admin is not exported
    assert not hasattr(contract, "set_role_admin")


def test_other_roles_are_granted_revoked_and_renounced_by_their_rules(
    contract, admin, guardian, stranger
):
    role = contract.GUARDIAN_ROLE()
    with ape.reverts("guard: caller is not role admin"):
        contract.grantRole(role, stranger, sender=guardian)
    contract.grantRole(role, stranger, sender=admin)
    assert contract.hasRole(role, stranger)
    with ape.reverts("guard: can only renounce for self"):
        contract.renounceRole(role, stranger, sender=admin)
    contract.renounceRole(role, stranger, sender=stranger)
    assert not contract.hasRole(role, stranger)
    with ape.reverts("guard: caller is not role admin"):
        contract.revokeRole(role, guardian, sender=stranger)
    contract.revokeRole(role, guardian, sender=admin)
    assert not contract.hasRole(role, guardian)


def test_guardian_pauses_admin_unpauses_and_paused_time_is_counted(contract, admin, guardian):
    with ape.reverts("guard: caller is not guardian"):
        contract.pause(sender=admin)
    contract.pause(sender=guardian)
    assert contract.paused()
    started = contract.paused_at()
    advance(1_000)
    with ape.reverts("guard: caller is not admin"):
        contract.unpause(sender=guardian)
    tx = contract.unpause(sender=admin)
    duration = tx.events.filter(contract.PausedTimeAdded)[0].duration
    assert duration == ape.chain.blocks.head.timestamp - started
    assert contract.paused_total() == duration
    assert (contract.paused(), contract.paused_at()) == (False, 0)
