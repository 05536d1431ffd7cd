# pragma version ~=0.4.3
"""
@title Roles and emergency stop shared by every Buzzer contract
@notice The GUARDIAN role can stop a contract at once; only the admin
        can start it again, so a leaked guardian key cannot be used to
        flip the switch back during an incident.
"""

from snekmate.auth import access_control
from snekmate.utils import pausable

uses: access_control
initializes: pausable


GUARDIAN_ROLE: public(constant(bytes32)) = keccak256("GUARDIAN_ROLE")


@deploy
def __init__():
    pausable.__init__()


@external
def pause():
    """
    @notice Stops every state change guarded by `_require_not_paused`.
    """
    # dev: only a guardian can stop the contract
    assert access_control.hasRole[GUARDIAN_ROLE][msg.sender], "guard: caller is not guardian"
    pausable._pause()


@external
def unpause():
    """
    @notice Lifts the emergency stop.
    """
    # dev: only the admin can restart the contract
    assert access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender], "guard: caller is not admin"
    pausable._unpause()


@internal
@view
def _require_not_paused():
    # dev: state changes are refused while stopped
    assert not pausable.paused, "guard: paused"

