# pragma version ~=0.4.3
"""
@title SafeLikeProxy
@notice Receives ETH the way a Safe proxy does: its fallback reads the
        singleton from storage and delegatecalls it, and the singleton logs
        the receipt. Used to size the payout's ETH gas stipend.
"""

singleton: public(address)


@deploy
def __init__(singleton_: address):
    self.singleton = singleton_


@external
@payable
def __default__():
    raw_call(self.singleton, msg.data, is_delegate_call=True)
