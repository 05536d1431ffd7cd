# pragma version ~=0.4.3
"""
@title SafeLikeSingleton
@notice The logic a SafeLikeProxy delegates to: like a Safe singleton's
        receive, it logs who sent how much.
"""

event SafeReceived:
    sender: indexed(address)
    value: uint256


@external
@payable
def __default__():
    log SafeReceived(sender=msg.sender, value=msg.value)
