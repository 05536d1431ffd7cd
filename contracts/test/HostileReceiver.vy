# pragma version ~=0.4.3
"""
@title HostileReceiver
@notice A contract wallet for attack tests: it forwards any call (so it can
        act as advertiser or publisher), and when it receives ETH it calls
        back into a target (reentrancy), or refuses the ETH outright.
"""

reentry_target: public(address)
reentry_calldata: public(Bytes[2048])
reentry_attempts: public(uint256)
reentry_successes: public(uint256)
refuse_eth: public(bool)


@external
@payable
def execute(target: address, calldata: Bytes[4096], amount: uint256) -> Bytes[256]:
    return raw_call(target, calldata, value=amount, max_outsize=256)


@external
def arm_reentry(target: address, calldata: Bytes[2048]):
    self.reentry_target = target
    self.reentry_calldata = calldata


@external
def set_refuse_eth(flag: bool):
    self.refuse_eth = flag


@external
@payable
def __default__():
    assert not self.refuse_eth, "receiver: refusing ETH"
    if self.reentry_target != empty(address):
        target: address = self.reentry_target
        self.reentry_target = empty(address)
        self.reentry_attempts += 1
        ok: bool = raw_call(target, self.reentry_calldata, revert_on_failure=False)
        if ok:
            self.reentry_successes += 1
