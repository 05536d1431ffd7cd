# pragma version ~=0.4.3
"""
@title Roles, admin hand-over and emergency stop shared by every Buzzer contract
@notice Each contract has exactly one DEFAULT_ADMIN holder (a multisig on real
        networks). It changes hands in two steps, `propose_admin` then
        `accept_admin`, and in no other way: granting, revoking or renouncing
        DEFAULT_ADMIN_ROLE directly reverts. The admin grants and revokes
        every other role.
        The GUARDIAN role can stop a contract at once; only the admin can
        start it again, so a leaked guardian key cannot flip the switch back
        during an incident. The module counts the time spent paused, so a
        contract can keep its clocks (withdraw delays, challenge periods)
        from running while it is stopped.
"""

from snekmate.auth import access_control
from snekmate.utils import pausable

uses: access_control
initializes: pausable


event AdminProposed:
    admin: indexed(address)
    proposed_admin: indexed(address)


event AdminTransferred:
    previous_admin: indexed(address)
    new_admin: indexed(address)


event PausedTimeAdded:
    duration: uint256
    paused_total: uint256


GUARDIAN_ROLE: public(constant(bytes32)) = keccak256("GUARDIAN_ROLE")


# the one DEFAULT_ADMIN holder, and the one it proposed as its successor
admin: public(address)
pending_admin: public(address)
# when the current pause began (zero while running), and all time spent paused
paused_at: public(uint256)
paused_total: public(uint256)


@deploy
def __init__():
    """
    @dev `access_control.__init__` grants DEFAULT_ADMIN_ROLE to the deployer.
    """
    pausable.__init__()
    self.admin = msg.sender


@external
def grantRole(role: bytes32, account: address):
    """
    @notice Grants `role` to `account`; the caller needs the role's admin role.
            DEFAULT_ADMIN_ROLE is handed over with `propose_admin` instead.
    """
    # dev: the admin changes hands only in two steps
    assert role != access_control.DEFAULT_ADMIN_ROLE, "guard: admin moves in two steps"
    # dev: only the role's admin may grant it
    assert access_control.hasRole[access_control.getRoleAdmin[role]][msg.sender], "guard: caller is not role admin"
    access_control._grant_role(role, account)


@external
def revokeRole(role: bytes32, account: address):
    """
    @notice Revokes `role` from `account`; the caller needs the role's admin role.
    """
    # dev: the admin changes hands only in two steps
    assert role != access_control.DEFAULT_ADMIN_ROLE, "guard: admin moves in two steps"
    # dev: only the role's admin may revoke it
    assert access_control.hasRole[access_control.getRoleAdmin[role]][msg.sender], "guard: caller is not role admin"
    access_control._revoke_role(role, account)


@external
def renounceRole(role: bytes32, account: address):
    """
    @notice Gives up a role the caller holds (a compromised key stepping down).
    """
    # dev: a contract without an admin could never be configured again
    assert role != access_control.DEFAULT_ADMIN_ROLE, "guard: admin moves in two steps"
    # dev: a role can only be renounced by its holder
    assert account == msg.sender, "guard: can only renounce for self"
    access_control._revoke_role(role, account)


@external
def propose_admin(new_admin: address):
    """
    @notice Names the next admin; it takes over when it calls `accept_admin`.
            Proposing the zero address withdraws a proposal.
    """
    # dev: only the admin hands over its role
    assert msg.sender == self.admin, "guard: caller is not admin"
    # dev: proposing itself would change nothing
    assert new_admin != self.admin, "guard: already admin"
    self.pending_admin = new_admin
    log AdminProposed(admin=msg.sender, proposed_admin=new_admin)


@external
def accept_admin():
    """
    @notice Takes over DEFAULT_ADMIN_ROLE; the previous admin loses it.
    """
    # dev: only the proposed admin can accept
    assert msg.sender == self.pending_admin and msg.sender != empty(address), "guard: caller is not proposed admin"
    previous: address = self.admin
    access_control._revoke_role(access_control.DEFAULT_ADMIN_ROLE, previous)
    access_control._grant_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    self.admin = msg.sender
    self.pending_admin = empty(address)
    log AdminTransferred(previous_admin=previous, new_admin=msg.sender)


@external
def pause():
    """
    @notice Stops every state change guarded by `_require_not_paused`, and
            the clocks of contracts that read `_now`.
    """
    # dev: only a guardian can stop the contract
    assert access_control.hasRole[GUARDIAN_ROLE][msg.sender], "guard: caller is not guardian"
    pausable._pause()
    self.paused_at = block.timestamp


@external
def unpause():
    """
    @notice Lifts the emergency stop.
    """
    self._unpause()


@internal
def _unpause() -> uint256:
    """
    @dev Lifts the stop and returns how long it lasted.
    """
    # dev: only the admin can restart the contract
    assert access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender], "guard: caller is not admin"
    pausable._unpause()
    duration: uint256 = block.timestamp - self.paused_at
    total: uint256 = self.paused_total + duration
    self.paused_total = total
    self.paused_at = 0
    log PausedTimeAdded(duration=duration, paused_total=total)
    return duration


@internal
@view
def _require_not_paused():
    # dev: state changes are refused while stopped
    assert not pausable.paused, "guard: paused"


@internal
@view
def _require_admin():
    # dev: configuration is the admin's
    assert access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender], "guard: caller is not admin"


@internal
@view
def _now() -> uint256:
    """
    @dev The contract's clock: it stands still while the contract is paused.
    """
    if pausable.paused:
        return self.paused_at
    return block.timestamp
