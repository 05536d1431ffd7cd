# pragma version ~=0.4.3
"""
@title NoReturnToken
@notice An ERC-20 whose transfer functions return nothing (like USDT on
        mainnet), for tests that such tokens are handled.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
decimals: public(constant(uint8)) = 6


@external
def mint(owner: address, amount: uint256):
    self.balanceOf[owner] += amount


@external
def approve(spender: address, amount: uint256):
    self.allowance[msg.sender][spender] = amount


@external
def transfer(receiver: address, amount: uint256):
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)


@external
def transferFrom(owner: address, receiver: address, amount: uint256):
    self.allowance[owner][msg.sender] -= amount
    self.balanceOf[owner] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=owner, receiver=receiver, value=amount)
