# pragma version ~=0.4.3
"""
@title HostileToken
@notice An ERC-20 that misbehaves on demand, for attack tests only: it can
        return false, charge a fee on transfer, refuse blocklisted
        recipients, stop all transfers, or call back into a target while a
        transfer is in progress (reentrancy).
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


name: public(String[16])
symbol: public(String[8])
decimals: public(constant(uint8)) = 18
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

return_false: public(bool)
fee_bps: public(uint256)
blocked: public(HashMap[address, bool])
stopped: public(bool)

reentry_target: public(address)
reentry_calldata: public(Bytes[2048])
reentry_attempts: public(uint256)
reentry_successes: public(uint256)


@deploy
def __init__():
    self.name = "Hostile"
    self.symbol = "HOST"


@external
def mint(owner: address, amount: uint256):
    self.balanceOf[owner] += amount
    self.totalSupply += amount
    log Transfer(sender=empty(address), receiver=owner, value=amount)


@external
def set_return_false(flag: bool):
    self.return_false = flag


@external
def set_fee_bps(bps: uint256):
    self.fee_bps = bps


@external
def set_blocked(account: address, flag: bool):
    self.blocked[account] = flag


@external
def set_stopped(flag: bool):
    self.stopped = flag


@external
def arm_reentry(target: address, calldata: Bytes[2048]):
    self.reentry_target = target
    self.reentry_calldata = calldata


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transfer(receiver: address, amount: uint256) -> bool:
    return self._transfer(msg.sender, receiver, amount)


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    if self.return_false:
        return False
    self.allowance[owner][msg.sender] -= amount
    return self._transfer(owner, receiver, amount)


@internal
def _transfer(owner: address, receiver: address, amount: uint256) -> bool:
    if self.return_false:
        return False
    assert not self.stopped, "hostile: stopped"
    assert not self.blocked[receiver], "hostile: blocked"
    fee: uint256 = amount * self.fee_bps // 10_000
    self.balanceOf[owner] -= amount
    self.balanceOf[receiver] += amount - fee
    self.totalSupply -= fee
    log Transfer(sender=owner, receiver=receiver, value=amount - fee)
    if self.reentry_target != empty(address):
        target: address = self.reentry_target
        self.reentry_target = empty(address)
        self.reentry_attempts += 1
        ok: bool = raw_call(target, self.reentry_calldata, revert_on_failure=False)
        if ok:
            self.reentry_successes += 1
    return True
