# pragma version ~=0.4.3
"""
@title TestUSDC
@notice A USDC-like token for local chains and tests: 6 decimals, a
        configurable EIP-712 name and version (Base USDC uses "USD Coin"
        and "2"), and EIP-3009 transfer/receive/cancel with authorization,
        which x402's exact scheme settles through. Not for production.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20
from snekmate.utils import ecdsa

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


TRANSFER_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
CANCEL_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)

_used: HashMap[address, HashMap[bytes32, bool]]


@deploy
def __init__(name_: String[25], symbol_: String[5], name_eip712_: String[50], version_eip712_: String[20]):
    ownable.__init__()
    erc20.__init__(name_, symbol_, 6, name_eip712_, version_eip712_)


@external
def transferWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Moves `amount` from `_from` to `to` with `_from`'s signature (EIP-3009).
    """
    self._use_authorization(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after, valid_before, nonce, v, r, s
    )
    erc20._transfer(_from, to, amount)


@external
def receiveWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Like `transferWithAuthorization`, callable only by the payee.
    """
    # dev: front-running protection: only the payee may submit
    assert to == msg.sender, "eip3009: caller must be the payee"
    self._use_authorization(
        RECEIVE_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after, valid_before, nonce, v, r, s
    )
    erc20._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Burns an unused authorization nonce so it can never be used.
    """
    # dev: a used or cancelled nonce cannot be cancelled again
    assert not self._used[authorizer][nonce], "eip3009: authorization is used or canceled"
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    )
    # dev: only the authorizer can cancel
    assert self._recover(digest, v, r, s) == authorizer, "eip3009: invalid signature"
    self._used[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@external
@view
def authorizationState(authorizer: address, nonce: bytes32) -> bool:
    """
    @notice Returns True when the nonce was used or cancelled.
    """
    return self._used[authorizer][nonce]


@internal
def _use_authorization(
    typehash: bytes32,
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    # dev: the authorization's window has not opened
    assert block.timestamp > valid_after, "eip3009: authorization is not yet valid"
    # dev: the authorization's window has closed
    assert block.timestamp < valid_before, "eip3009: authorization is expired"
    # dev: each nonce pays once
    assert not self._used[_from][nonce], "eip3009: authorization is used or canceled"
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(typehash, _from, to, amount, valid_after, valid_before, nonce))
    )
    # dev: the payer must have signed exactly these values
    assert self._recover(digest, v, r, s) == _from, "eip3009: invalid signature"
    self._used[_from][nonce] = True
    log AuthorizationUsed(authorizer=_from, nonce=nonce)


@internal
@pure
def _recover(digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> address:
    return ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
