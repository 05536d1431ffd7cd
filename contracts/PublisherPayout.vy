# pragma version ~=0.4.3
"""
@title PublisherPayout
@notice Cumulative Merkle distributor of publisher earnings.
        The SETTLER posts roots numbered 1, 2, 3 … (`root_id`, +1 per post,
        revoked or not) over leaves (account, token, cumulative amount). At
        most one root is pending at a time: a root matures `challenge_period`
        after it was posted, and until then the GUARDIAN can revoke it. Time
        spent paused does not count toward maturity.
        Claims verify only against the current root: the newest matured,
        unrevoked one. Once a pending root matures, every older root is dead,
        so a corrected tree supersedes the one it corrects.
        Solvency holds on-chain: a root's total per token is at least the
        current root's and at least everything already claimed, and at most
        everything ever funded; claims never lift `total_claimed` above the
        current root's total.
        Leaf: keccak256(keccak256(abi.encode(chain_id, this contract,
        account, token, cumulative_amount))), pairs hashed sorted; this is
        OpenZeppelin's StandardMerkleTree leaf over
        (uint256, address, address, address, uint256).
"""

from ethereum.ercs import IERC20
from snekmate.auth import access_control
from snekmate.utils import merkle_proof_verification
from modules import guard

initializes: access_control
initializes: guard[access_control := access_control]

exports: (
    access_control.hasRole,
    access_control.getRoleAdmin,
    access_control.DEFAULT_ADMIN_ROLE,
    access_control.supportsInterface,
    guard.grantRole,
    guard.revokeRole,
    guard.renounceRole,
    guard.propose_admin,
    guard.accept_admin,
    guard.admin,
    guard.pending_admin,
    guard.pause,
    guard.paused_at,
    guard.paused_total,
    guard.GUARDIAN_ROLE,
    guard.pausable.paused,
)


struct Root:
    root: bytes32
    claimable_at: uint256


struct ClaimRequest:
    account: address
    token: address
    cumulative_amount: uint256
    proof: DynArray[bytes32, MAX_PROOF]


event Funded:
    token: indexed(address)
    sender: indexed(address)
    amount: uint256
    total_funded: uint256


event RootPosted:
    root_id: indexed(uint256)
    root: bytes32
    claimable_at: uint256
    tokens: DynArray[address, MAX_TOKENS]
    cumulative_totals: DynArray[uint256, MAX_TOKENS]
    artefact_uri: String[256]


event RootRevoked:
    root_id: indexed(uint256)
    root: bytes32
    guardian: address


event RootMaturityDelayed:
    root_id: indexed(uint256)
    claimable_at: uint256


event Claimed:
    root_id: indexed(uint256)
    account: indexed(address)
    token: indexed(address)
    recipient: address
    amount: uint256
    cumulative_amount: uint256


event ClaimSkipped:
    account: indexed(address)
    token: indexed(address)
    cumulative_amount: uint256
    reason: String[32]


event TokenRegistered:
    token: indexed(address)


event ChallengePeriodUpdated:
    previous_period: uint256
    new_period: uint256


SETTLER_ROLE: public(constant(bytes32)) = keccak256("SETTLER_ROLE")
FUNDER_ROLE: public(constant(bytes32)) = keccak256("FUNDER_ROLE")
MAX_TOKENS: public(constant(uint256)) = 16
MAX_PROOF: public(constant(uint256)) = 32
MAX_CLAIMS: public(constant(uint256)) = 128
MIN_CHALLENGE_PERIOD: public(constant(uint256)) = 3_600
MAX_CHALLENGE_PERIOD: public(constant(uint256)) = 30 * 86_400
# Gas an ETH payment forwards: enough for a Safe proxy's receive (delegatecall
# into its singleton, which logs), too little for a receiver to do real work.
ETH_SEND_GAS: public(constant(uint256)) = 30_000

# root ids, the pending root's maturity and the current root share one slot:
# bits 0-63 current root id, 64-127 pending root id, 128-191 pending claimable_at
_ID_BITS: constant(uint256) = 64
_ID_MASK: constant(uint256) = 2**64 - 1


challenge_period: public(uint256)
# newest root id ever posted, revoked or not: the next post is this + 1
latest_root_id: public(uint256)
_root_ids: uint256

registered_tokens: public(DynArray[address, MAX_TOKENS])
is_registered_token: public(HashMap[address, bool])
total_funded: public(HashMap[address, uint256])
total_claimed: public(HashMap[address, uint256])
_roots: HashMap[uint256, Root]
_root_totals: HashMap[uint256, HashMap[address, uint256]]
revoked: public(HashMap[uint256, bool])
claimed: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(challenge_period_: uint256):
    """
    @param challenge_period_ Seconds a posted root waits before it can be claimed.
    """
    access_control.__init__()
    guard.__init__()
    self._set_challenge_period(challenge_period_)


@external
def register_token(token: address):
    """
    @notice Adds a token (zero address = ETH) that earnings can be paid in.
            The escrow allow-lists only tokens registered here. Tokens are
            never removed: roots and claims may still name them.
    """
    guard._require_admin()
    # dev: each token is registered once
    assert not self.is_registered_token[token], "payout: token already registered"
    # dev: every root walks the token list, so it stays short
    assert len(self.registered_tokens) < MAX_TOKENS, "payout: too many tokens"
    # dev: an ERC-20 must be a deployed contract
    assert token == empty(address) or token.is_contract, "payout: token is not a contract"
    self.registered_tokens.append(token)
    self.is_registered_token[token] = True
    log TokenRegistered(token=token)


@external
@payable
@nonreentrant
def fund(token: address, amount: uint256):
    """
    @notice Adds publisher earnings to the pool (the escrow calls this at
            every spend). ETH is sent as value; an ERC-20 is pulled with
            `transferFrom` and the amount actually received is credited.
    """
    # dev: only the escrow (or the admin's chosen funders) adds funds
    assert access_control.hasRole[FUNDER_ROLE][msg.sender], "payout: caller is not funder"
    # dev: only registered tokens can be paid out
    assert self.is_registered_token[token], "payout: token not registered"
    # dev: an empty funding is a mistake
    assert amount != 0, "payout: zero amount"
    received: uint256 = amount
    if token == empty(address):
        # dev: the value sent must be the amount declared
        assert msg.value == amount, "payout: value mismatch"
    else:
        # dev: ETH sent with a token funding would be stuck
        assert msg.value == 0, "payout: unexpected value"
        before: uint256 = staticcall IERC20(token).balanceOf(self)
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True), "payout: transfer failed"
        received = staticcall IERC20(token).balanceOf(self) - before
        # dev: a token that delivers nothing funds nothing
        assert received != 0, "payout: nothing received"
    total: uint256 = self.total_funded[token] + received
    self.total_funded[token] = total
    log Funded(token=token, sender=msg.sender, amount=received, total_funded=total)


@external
def post_root(
    root_id: uint256,
    root: bytes32,
    tokens: DynArray[address, MAX_TOKENS],
    cumulative_totals: DynArray[uint256, MAX_TOKENS],
    artefact_uri: String[256],
):
    """
    @notice Posts the next cumulative earnings root. Tokens left out keep the
            current root's total. Gas depends on the number of registered
            tokens, never on the number of leaves.
    @param root_id The previous root id + 1, whether that root was revoked or not.
    @param root The Merkle root.
    @param tokens The tokens whose totals changed.
    @param cumulative_totals Σ cumulative amounts in the tree, per token.
    @param artefact_uri Where the tree and proofs are published.
    """
    guard._require_not_paused()
    # dev: roots are posted by the settlement key only
    assert access_control.hasRole[SETTLER_ROLE][msg.sender], "payout: caller is not settler"
    # dev: root ids move by exactly one, so no number can skip ahead
    assert root_id == self.latest_root_id + 1, "payout: root id not next"
    # dev: an empty root proves nothing
    assert root != empty(bytes32), "payout: empty root"
    # dev: each token needs its total
    assert len(tokens) == len(cumulative_totals), "payout: length mismatch"

    current: uint256 = 0
    pending: uint256 = 0
    pending_at: uint256 = 0
    current, pending, pending_at = self._unpack(self._root_ids)
    if pending != 0:
        # dev: one root at a time: the guardian checks each before the next
        assert pending_at <= block.timestamp, "payout: root pending"
        current = pending

    matched: uint256 = 0
    totals: DynArray[uint256, MAX_TOKENS] = []
    all_tokens: DynArray[address, MAX_TOKENS] = self.registered_tokens
    for token: address in all_tokens:
        previous: uint256 = self._root_totals[current][token]
        total: uint256 = previous
        for j: uint256 in range(len(tokens), bound=MAX_TOKENS):
            if tokens[j] == token:
                total = cumulative_totals[j]
                matched += 1
                break
        # dev: cumulative earnings never go down
        assert total >= previous, "payout: cumulative total decreased"
        # dev: what was already paid out stays covered
        assert total >= self.total_claimed[token], "payout: total below claimed"
        # dev: solvency: never promise more than was funded
        assert total <= self.total_funded[token], "payout: root exceeds funding"
        self._root_totals[root_id][token] = total
        totals.append(total)
    # dev: every listed token must be registered, and listed once
    assert matched == len(tokens), "payout: unknown or repeated token"

    claimable_at: uint256 = block.timestamp + self.challenge_period
    self._roots[root_id] = Root(root=root, claimable_at=claimable_at)
    self.latest_root_id = root_id
    self._root_ids = self._pack(current, root_id, claimable_at)
    log RootPosted(
        root_id=root_id,
        root=root,
        claimable_at=claimable_at,
        tokens=all_tokens,
        cumulative_totals=totals,
        artefact_uri=artefact_uri,
    )


@external
def revoke_root(root_id: uint256):
    """
    @notice Vetoes the pending root before it matures, also while paused.
            The current root stays current; the next post gets the next id.
    """
    # dev: vetoes are a guardian decision
    assert access_control.hasRole[guard.GUARDIAN_ROLE][msg.sender], "payout: caller is not guardian"
    current: uint256 = 0
    pending: uint256 = 0
    pending_at: uint256 = 0
    current, pending, pending_at = self._unpack(self._root_ids)
    # dev: only the pending root can be revoked; a matured one may have paid
    assert pending != 0 and root_id == pending and pending_at > guard._now(), "payout: root not pending"
    self.revoked[root_id] = True
    self._roots[root_id].claimable_at = max_value(uint256)
    self._root_ids = self._pack(current, 0, 0)
    log RootRevoked(root_id=root_id, root=self._roots[root_id].root, guardian=msg.sender)


@external
def unpause():
    """
    @notice Lifts the emergency stop. A root that was pending when the pause
            began matures later by the time spent paused.
    """
    paused_at: uint256 = guard.paused_at
    duration: uint256 = guard._unpause()
    current: uint256 = 0
    pending: uint256 = 0
    pending_at: uint256 = 0
    current, pending, pending_at = self._unpack(self._root_ids)
    if pending != 0 and pending_at > paused_at:
        pending_at += duration
        self._roots[pending].claimable_at = pending_at
        self._root_ids = self._pack(current, pending, pending_at)
        log RootMaturityDelayed(root_id=pending, claimable_at=pending_at)


@external
@nonreentrant
def claim(
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    """
    @notice Pays `account` its cumulative earnings in `token` under the
            current root, minus what it was already paid. Anyone may call.
    @return The amount paid.
    """
    return self._claim(account, account, token, cumulative_amount, proof)


@external
@nonreentrant
def claim_to(
    recipient: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    """
    @notice Like `claim` for the caller's own leaf, but pays `recipient`.
    @return The amount paid.
    """
    # dev: a payment to nowhere would burn the earnings
    assert recipient != empty(address), "payout: zero recipient"
    return self._claim(msg.sender, recipient, token, cumulative_amount, proof)


@external
@nonreentrant
def claim_many(requests: DynArray[ClaimRequest, MAX_CLAIMS]) -> uint256:
    """
    @notice Pushes earnings to many accounts under the current root (the
            seed's batchPayout). An item that cannot be paid is skipped with
            a `ClaimSkipped` event; the others are paid.
    @return The number of accounts paid.
    """
    guard._require_not_paused()
    root_id: uint256 = self._current_root_id()
    # dev: nothing can be paid before a root matures
    assert root_id != 0, "payout: no current root"
    root: bytes32 = self._roots[root_id].root
    paid: uint256 = 0
    for request: ClaimRequest in requests:
        reason: String[32] = self._check(root_id, root, request.account, request.token, request.cumulative_amount, request.proof)
        if reason == "":
            amount: uint256 = request.cumulative_amount - self.claimed[request.account][request.token]
            if self._try_send(request.token, request.account, amount):
                self.claimed[request.account][request.token] = request.cumulative_amount
                self.total_claimed[request.token] += amount
                log Claimed(
                    root_id=root_id,
                    account=request.account,
                    token=request.token,
                    recipient=request.account,
                    amount=amount,
                    cumulative_amount=request.cumulative_amount,
                )
                paid += 1
                continue
            reason = "transfer failed"
        log ClaimSkipped(
            account=request.account,
            token=request.token,
            cumulative_amount=request.cumulative_amount,
            reason=reason,
        )
    return paid


@external
def set_challenge_period(new_period: uint256):
    """
    @notice Changes the period for roots posted from now on; a pending root keeps its own.
    """
    guard._require_admin()
    self._set_challenge_period(new_period)


@external
@view
def current_root_id() -> uint256:
    """
    @notice Returns the root claims verify against: the newest matured,
            unrevoked root (zero before the first matures).
    """
    return self._current_root_id()


@external
@view
def pending_root_id() -> uint256:
    """
    @notice Returns the root in its challenge period (zero when none).
    """
    current: uint256 = 0
    pending: uint256 = 0
    pending_at: uint256 = 0
    current, pending, pending_at = self._unpack(self._root_ids)
    if pending != 0 and pending_at > guard._now():
        return pending
    return 0


@external
@view
def claimable(
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    """
    @notice Returns what `claim` would pay now; reverts with its reason otherwise.
    """
    root_id: uint256 = self._current_root_id()
    # dev: nothing can be paid before a root matures
    assert root_id != 0, "payout: no current root"
    reason: String[32] = self._check(root_id, self._roots[root_id].root, account, token, cumulative_amount, proof)
    # dev: the same reason `claim` would give
    assert reason == "", reason
    return cumulative_amount - self.claimed[account][token]


@external
@view
def get_total_paid(account: address, token: address) -> uint256:
    """
    @notice Returns everything ever paid to `account` in `token`.
    """
    return self.claimed[account][token]


@external
@view
def get_root(root_id: uint256) -> Root:
    """
    @notice Returns the root posted as `root_id` (zero when none;
            claimable_at is max uint256 once revoked).
    """
    return self._roots[root_id]


@external
@view
def root_total(root_id: uint256, token: address) -> uint256:
    """
    @notice Returns the cumulative total of `token` under root `root_id`.
    """
    return self._root_totals[root_id][token]


@external
@view
def leaf(account: address, token: address, cumulative_amount: uint256) -> bytes32:
    """
    @notice Returns the Merkle leaf this contract expects for these values.
    """
    return self._leaf(account, token, cumulative_amount)


@internal
def _claim(
    account: address,
    recipient: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    guard._require_not_paused()
    root_id: uint256 = self._current_root_id()
    # dev: nothing can be paid before a root matures
    assert root_id != 0, "payout: no current root"
    reason: String[32] = self._check(root_id, self._roots[root_id].root, account, token, cumulative_amount, proof)
    # dev: a bad proof, a repeated claim or an over-claim is refused
    assert reason == "", reason
    amount: uint256 = cumulative_amount - self.claimed[account][token]
    self.claimed[account][token] = cumulative_amount
    self.total_claimed[token] += amount
    if token == empty(address):
        # dev: the recipient must accept ETH within the stipend
        assert raw_call(recipient, b"", value=amount, gas=ETH_SEND_GAS, revert_on_failure=False), "payout: transfer failed"
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).transfer(recipient, amount, default_return_value=True), "payout: transfer failed"
    log Claimed(
        root_id=root_id,
        account=account,
        token=token,
        recipient=recipient,
        amount=amount,
        cumulative_amount=cumulative_amount,
    )
    return amount


@internal
@view
def _check(
    root_id: uint256,
    root: bytes32,
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> String[32]:
    """
    @dev Returns why a claim cannot be paid under `root_id`, or "" when it can.
    """
    if not merkle_proof_verification._verify(proof, root, self._leaf(account, token, cumulative_amount)):
        return "payout: invalid proof"
    already: uint256 = self.claimed[account][token]
    if cumulative_amount <= already:
        return "payout: nothing to claim"
    if self.total_claimed[token] + (cumulative_amount - already) > self._root_totals[root_id][token]:
        return "payout: claims exceed root total"
    return ""


@internal
def _try_send(token: address, recipient: address, amount: uint256) -> bool:
    if token == empty(address):
        return raw_call(recipient, b"", value=amount, gas=ETH_SEND_GAS, revert_on_failure=False)
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        token,
        abi_encode(recipient, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=32,
        revert_on_failure=False,
    )
    if not success:
        return False
    if len(response) == 0:
        # tokens without a return value signal failure by reverting
        return token.is_contract
    return convert(response, bool)


@internal
@view
def _current_root_id() -> uint256:
    current: uint256 = 0
    pending: uint256 = 0
    pending_at: uint256 = 0
    current, pending, pending_at = self._unpack(self._root_ids)
    if pending != 0 and pending_at <= guard._now():
        return pending
    return current


@internal
def _set_challenge_period(new_period: uint256):
    # dev: the guardian needs time to check a root before it pays
    assert new_period >= MIN_CHALLENGE_PERIOD, "payout: period too short"
    # dev: an unbounded period would keep earnings out of reach
    assert new_period <= MAX_CHALLENGE_PERIOD, "payout: period too long"
    previous: uint256 = self.challenge_period
    self.challenge_period = new_period
    log ChallengePeriodUpdated(previous_period=previous, new_period=new_period)


@internal
@pure
def _pack(current: uint256, pending: uint256, pending_at: uint256) -> uint256:
    return current | (pending << _ID_BITS) | (pending_at << (2 * _ID_BITS))


@internal
@pure
def _unpack(packed: uint256) -> (uint256, uint256, uint256):
    return packed & _ID_MASK, (packed >> _ID_BITS) & _ID_MASK, packed >> (2 * _ID_BITS)


@internal
@view
def _leaf(account: address, token: address, cumulative_amount: uint256) -> bytes32:
    return keccak256(keccak256(abi_encode(chain.id, self, account, token, cumulative_amount)))
