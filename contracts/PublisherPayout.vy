# pragma version ~=0.4.3
"""
@title PublisherPayout
@notice Cumulative Merkle distributor of publisher earnings. Each epoch the
        SETTLER posts a root over leaves (account, token, cumulative amount);
        a root becomes claimable after `challenge_period`, during which the
        GUARDIAN can revoke it. Anyone can claim for an account; the account
        receives its cumulative amount minus what it was already paid.
        A root is refused on-chain when, for any token, its cumulative total
        is below the previous root's or above everything ever funded.
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
    guard.unpause,
    guard.paused_at,
    guard.paused_total,
    guard.GUARDIAN_ROLE,
    guard.pausable.paused,
)


struct Root:
    root: bytes32
    claimable_at: uint256
    parent_epoch: uint256


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
    epoch: indexed(uint256)
    root: bytes32
    claimable_at: uint256
    tokens: DynArray[address, MAX_TOKENS]
    cumulative_totals: DynArray[uint256, MAX_TOKENS]
    artefact_uri: String[256]


event RootRevoked:
    epoch: indexed(uint256)
    root: bytes32
    guardian: address


event Claimed:
    epoch: indexed(uint256)
    account: indexed(address)
    token: indexed(address)
    amount: uint256
    cumulative_amount: uint256


event ChallengePeriodUpdated:
    previous_period: uint256
    new_period: uint256


SETTLER_ROLE: public(constant(bytes32)) = keccak256("SETTLER_ROLE")
FUNDER_ROLE: public(constant(bytes32)) = keccak256("FUNDER_ROLE")
MAX_TOKENS: public(constant(uint256)) = 16
MAX_PROOF: public(constant(uint256)) = 32
MAX_CLAIMS: public(constant(uint256)) = 128
MAX_CHALLENGE_PERIOD: public(constant(uint256)) = 30 * 86_400


challenge_period: public(uint256)
# newest epoch ever posted, revoked or not: epochs are never reused
latest_posted_epoch: public(uint256)
# newest root that is not revoked; the next root is checked against it
head_epoch: public(uint256)

funded_tokens: public(DynArray[address, MAX_TOKENS])
total_funded: public(HashMap[address, uint256])
_roots: HashMap[uint256, Root]
_root_totals: HashMap[uint256, HashMap[address, uint256]]
revoked: public(HashMap[uint256, bool])
is_registered_token: public(HashMap[address, bool])
claimed: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(challenge_period_: uint256):
    """
    @param challenge_period_ Seconds a posted root waits before it can be claimed.
    """
    # dev: an unbounded period would keep earnings out of reach
    assert challenge_period_ <= MAX_CHALLENGE_PERIOD, "payout: period too long"
    access_control.__init__()
    guard.__init__()
    self.challenge_period = challenge_period_


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
    if self.total_funded[token] == 0:
        # dev: the solvency check walks every funded token
        assert len(self.funded_tokens) < MAX_TOKENS, "payout: too many tokens"
        self.funded_tokens.append(token)
    total: uint256 = self.total_funded[token] + received
    self.total_funded[token] = total
    log Funded(token=token, sender=msg.sender, amount=received, total_funded=total)


@external
def post_root(
    epoch: uint256,
    root: bytes32,
    tokens: DynArray[address, MAX_TOKENS],
    cumulative_totals: DynArray[uint256, MAX_TOKENS],
    artefact_uri: String[256],
):
    """
    @notice Posts the cumulative earnings root of `epoch`. Tokens left out
            keep the previous root's total. Gas depends on the number of
            funded tokens, never on the number of leaves.
    @param epoch The settlement epoch; must be newer than every posted one.
    @param root The Merkle root.
    @param tokens The tokens whose totals changed.
    @param cumulative_totals Σ cumulative amounts in the tree, per token.
    @param artefact_uri Where the tree and proofs are published.
    """
    guard._require_not_paused()
    # dev: roots are posted by the settlement key only
    assert access_control.hasRole[SETTLER_ROLE][msg.sender], "payout: caller is not settler"
    # dev: epochs are never reused, even revoked ones
    assert epoch > self.latest_posted_epoch, "payout: epoch not newer"
    # dev: an empty root proves nothing
    assert root != empty(bytes32), "payout: empty root"
    # dev: each token needs its total
    assert len(tokens) == len(cumulative_totals), "payout: length mismatch"

    parent: uint256 = self.head_epoch
    all_tokens: DynArray[address, MAX_TOKENS] = self.funded_tokens
    totals: DynArray[uint256, MAX_TOKENS] = []
    matched: uint256 = 0
    for token: address in all_tokens:
        previous: uint256 = self._root_totals[parent][token]
        total: uint256 = previous
        for j: uint256 in range(len(tokens), bound=MAX_TOKENS):
            if tokens[j] == token:
                total = cumulative_totals[j]
                matched += 1
                break
        # dev: cumulative earnings never go down
        assert total >= previous, "payout: cumulative total decreased"
        # dev: solvency: never promise more than was funded
        assert total <= self.total_funded[token], "payout: root exceeds funding"
        self._root_totals[epoch][token] = total
        totals.append(total)
    # dev: every listed token must be funded, and listed once
    assert matched == len(tokens), "payout: unknown or repeated token"

    claimable_at: uint256 = block.timestamp + self.challenge_period
    self._roots[epoch] = Root(root=root, claimable_at=claimable_at, parent_epoch=parent)
    self.latest_posted_epoch = epoch
    self.head_epoch = epoch
    log RootPosted(
        epoch=epoch,
        root=root,
        claimable_at=claimable_at,
        tokens=all_tokens,
        cumulative_totals=totals,
        artefact_uri=artefact_uri,
    )


@external
def revoke_root(epoch: uint256):
    """
    @notice Vetoes a root that is still in its challenge period. Only the
            newest live root can be revoked (newer roots build on older ones).
    """
    # dev: vetoes are a guardian decision
    assert access_control.hasRole[guard.GUARDIAN_ROLE][msg.sender], "payout: caller is not guardian"
    entry: Root = self._roots[epoch]
    # dev: the root must exist
    assert entry.root != empty(bytes32), "payout: unknown epoch"
    # dev: a revoked root stays revoked
    assert not self.revoked[epoch], "payout: root revoked"
    # dev: a claimable root may already have paid out
    assert block.timestamp < entry.claimable_at, "payout: root already claimable"
    # dev: newer roots include this one's amounts
    assert epoch == self.head_epoch, "payout: revoke newer roots first"
    self.revoked[epoch] = True
    self._roots[epoch].claimable_at = max_value(uint256)
    self.head_epoch = entry.parent_epoch
    log RootRevoked(epoch=epoch, root=entry.root, guardian=msg.sender)


@external
@nonreentrant
def claim(
    epoch: uint256,
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    """
    @notice Pays `account` its cumulative earnings in `token` under the root of
            `epoch`, minus what it was already paid. Anyone may call.
    @return The amount paid.
    """
    guard._require_not_paused()
    amount: uint256 = self._claimable(epoch, account, token, cumulative_amount, proof)
    # dev: a repeated claim pays nothing and is refused
    assert amount != 0, "payout: nothing to claim"
    self.claimed[account][token] = cumulative_amount
    self._send(token, account, amount)
    log Claimed(
        epoch=epoch, account=account, token=token, amount=amount, cumulative_amount=cumulative_amount
    )
    return amount


@external
@nonreentrant
def claim_many(epoch: uint256, requests: DynArray[ClaimRequest, MAX_CLAIMS]) -> uint256:
    """
    @notice Pushes earnings to many accounts under one root (the seed's
            batchPayout); accounts with nothing new are skipped.
    @return The number of accounts paid.
    """
    guard._require_not_paused()
    paid: uint256 = 0
    for request: ClaimRequest in requests:
        amount: uint256 = self._claimable(
            epoch, request.account, request.token, request.cumulative_amount, request.proof
        )
        if amount == 0:
            continue
        self.claimed[request.account][request.token] = request.cumulative_amount
        self._send(request.token, request.account, amount)
        log Claimed(
            epoch=epoch,
            account=request.account,
            token=request.token,
            amount=amount,
            cumulative_amount=request.cumulative_amount,
        )
        paid += 1
    return paid


@external
def register_token(token: address):
    """
    @notice Interim: registers a token the payout accepts.
    """
    guard._require_admin()
    self.is_registered_token[token] = True


@external
def set_challenge_period(new_period: uint256):
    """
    @notice Changes the period for roots posted from now on; pending roots keep theirs.
    """
    # dev: configuration is the admin's
    assert access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender], "payout: caller is not admin"
    # dev: an unbounded period would keep earnings out of reach
    assert new_period <= MAX_CHALLENGE_PERIOD, "payout: period too long"
    previous: uint256 = self.challenge_period
    self.challenge_period = new_period
    log ChallengePeriodUpdated(previous_period=previous, new_period=new_period)


@external
@view
def claimable(
    epoch: uint256,
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    """
    @notice Returns what `claim` would pay now; reverts with its reason otherwise.
    """
    return self._claimable(epoch, account, token, cumulative_amount, proof)


@external
@view
def get_total_paid(account: address, token: address) -> uint256:
    """
    @notice Returns everything ever paid to `account` in `token`.
    """
    return self.claimed[account][token]


@external
@view
def get_root(epoch: uint256) -> Root:
    """
    @notice Returns the root posted for `epoch` (zero when none).
    """
    return self._roots[epoch]


@external
@view
def root_total(epoch: uint256, token: address) -> uint256:
    """
    @notice Returns the cumulative total of `token` under the root of `epoch`.
    """
    return self._root_totals[epoch][token]


@external
@view
def leaf(account: address, token: address, cumulative_amount: uint256) -> bytes32:
    """
    @notice Returns the Merkle leaf this contract expects for these values.
    """
    return self._leaf(account, token, cumulative_amount)


@internal
@view
def _leaf(account: address, token: address, cumulative_amount: uint256) -> bytes32:
    return keccak256(keccak256(abi_encode(chain.id, self, account, token, cumulative_amount)))


@internal
@view
def _claimable(
    epoch: uint256,
    account: address,
    token: address,
    cumulative_amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    # two fields read on their own: loading the whole struct would cost a third cold slot
    root: bytes32 = self._roots[epoch].root
    # dev: the root must exist
    assert root != empty(bytes32), "payout: unknown epoch"
    if block.timestamp < self._roots[epoch].claimable_at:
        # dev: a vetoed root never pays
        assert not self.revoked[epoch], "payout: root revoked"
        # dev: the guardian may still veto it
        raise "payout: root not claimable yet"
    # dev: the leaf must be in the tree
    assert merkle_proof_verification._verify(
        proof, root, self._leaf(account, token, cumulative_amount)
    ), "payout: invalid proof"
    already: uint256 = self.claimed[account][token]
    if cumulative_amount <= already:
        return 0
    return cumulative_amount - already


@internal
def _send(token: address, recipient: address, amount: uint256):
    if token == empty(address):
        raw_call(recipient, b"", value=amount)
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).transfer(recipient, amount, default_return_value=True), "payout: transfer failed"
