# pragma version ~=0.4.3
"""
@title PaymentEscrow
@notice Holds advertisers' campaign budgets. Only a campaign's advertiser
        can fund it; unspent budget leaves only through a withdraw request
        that matures after `withdraw_delay`, so spend already delivered
        cannot be pulled out from under settlement. Once per epoch per
        campaign the SETTLER moves spend out: the publishers' share to
        PublisherPayout, the network fee to the treasury.
        ETH is the zero address; ERC-20 tokens must be allow-listed.
        A campaign's balance is always deposited - withdrawn - spent.
"""

from ethereum.ercs import IERC20
from snekmate.auth import access_control
from modules import guard
import CampaignRegistry
import PublisherPayout

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


struct Ledger:
    token: address
    deposited: uint256
    withdrawn: uint256
    spent: uint256
    last_spent_epoch: uint256


struct WithdrawRequest:
    amount: uint256
    available_at: uint256


event Deposited:
    campaign_id: indexed(uint256)
    token: indexed(address)
    sender: address
    amount: uint256


event WithdrawRequested:
    campaign_id: indexed(uint256)
    token: indexed(address)
    amount: uint256
    available_at: uint256


event WithdrawCancelled:
    campaign_id: indexed(uint256)
    token: indexed(address)


event Withdrawn:
    campaign_id: indexed(uint256)
    token: indexed(address)
    recipient: address
    amount: uint256


event Spent:
    epoch: indexed(uint256)
    campaign_id: indexed(uint256)
    token: indexed(address)
    amount: uint256
    publisher_share: uint256
    fee: uint256


event EpochSpent:
    epoch: indexed(uint256)
    campaigns: uint256


event TokenAllowed:
    token: indexed(address)
    allowed: bool


event TreasuryUpdated:
    previous_treasury: address
    new_treasury: address


event WithdrawDelayUpdated:
    previous_delay: uint256
    new_delay: uint256


SETTLER_ROLE: public(constant(bytes32)) = keccak256("SETTLER_ROLE")
BPS: constant(uint256) = 10_000
MAX_FEE_BPS: public(constant(uint256)) = 5_000
MAX_WITHDRAW_DELAY: public(constant(uint256)) = 30 * 86_400
MAX_BATCH: public(constant(uint256)) = 256
MAX_BATCH_TOKENS: constant(uint256) = 8


campaigns: public(immutable(CampaignRegistry.__interface__))
payout: public(immutable(PublisherPayout.__interface__))
fee_bps: public(immutable(uint256))

treasury: public(address)
withdraw_delay: public(uint256)
allowed_tokens: public(HashMap[address, bool])
latest_epoch: public(uint256)

_ledgers: HashMap[uint256, Ledger]
_withdraw_requests: HashMap[uint256, WithdrawRequest]


@deploy
def __init__(
    campaign_registry: address,
    publisher_payout: address,
    treasury_: address,
    withdraw_delay_: uint256,
    fee_bps_: uint256,
):
    """
    @param campaign_registry The CampaignRegistry that names each campaign's advertiser and token.
    @param publisher_payout The PublisherPayout that receives the publishers' share.
    @param treasury_ Where the network fee goes.
    @param withdraw_delay_ Seconds between a withdraw request and the withdrawal.
    @param fee_bps_ The network fee in basis points of each spend (1500 = 15%).
    """
    # dev: the fee is bounded so publishers always receive the larger part
    assert fee_bps_ <= MAX_FEE_BPS, "escrow: fee too high"
    # dev: a zero treasury would burn the fee
    assert treasury_ != empty(address), "escrow: zero treasury"
    # dev: an unbounded delay would lock budgets forever
    assert withdraw_delay_ <= MAX_WITHDRAW_DELAY, "escrow: delay too long"
    access_control.__init__()
    guard.__init__()
    campaigns = CampaignRegistry.__interface__(campaign_registry)
    payout = PublisherPayout.__interface__(publisher_payout)
    fee_bps = fee_bps_
    self.treasury = treasury_
    self.withdraw_delay = withdraw_delay_


@external
@payable
@nonreentrant
def deposit(campaign_id: uint256, amount: uint256, token: address):
    """
    @notice Adds budget to the caller's campaign. ETH is sent as value with
            `token` zero; an ERC-20 is pulled with `transferFrom` and the
            amount actually received is credited.
    @param campaign_id The campaign to fund.
    @param amount The amount in atomic units.
    @param token The campaign's token.
    """
    guard._require_not_paused()
    campaign: CampaignRegistry.Campaign = staticcall campaigns.get_campaign(campaign_id)
    # dev: the campaign must exist
    assert campaign.advertiser != empty(address), "escrow: unknown campaign"
    # dev: only the campaign's own advertiser funds it
    assert campaign.advertiser == msg.sender, "escrow: caller is not advertiser"
    # dev: a budget is held in the token the campaign bids in
    assert campaign.token == token, "escrow: wrong token for campaign"
    # dev: only vetted tokens are accepted
    assert self.allowed_tokens[token], "escrow: token not allowed"
    # dev: an ended campaign can no longer spend
    assert campaign.status != 3, "escrow: campaign ended"
    # dev: an empty deposit is a mistake
    assert amount != 0, "escrow: zero amount"
    received: uint256 = amount
    if token == empty(address):
        # dev: the value sent must be the amount declared
        assert msg.value == amount, "escrow: value mismatch"
    else:
        # dev: ETH sent with a token deposit would be stuck
        assert msg.value == 0, "escrow: unexpected value"
        received = self._pull(token, msg.sender, amount)
    self._ledgers[campaign_id].token = token
    self._ledgers[campaign_id].deposited += received
    log Deposited(campaign_id=campaign_id, token=token, sender=msg.sender, amount=received)


@external
def request_withdraw(campaign_id: uint256, token: address, amount: uint256):
    """
    @notice Asks to take unspent budget back after `withdraw_delay`. The
            campaign stops serving while a request is pending. A new
            request replaces the previous one and restarts the clock.
    @param campaign_id The campaign.
    @param token The campaign's token.
    @param amount The amount wanted back.
    """
    guard._require_not_paused()
    self._require_advertiser(campaign_id, token)
    # dev: an empty request is a mistake
    assert amount != 0, "escrow: zero amount"
    # dev: cannot ask for more than is left
    assert amount <= self._balance(campaign_id), "escrow: amount above balance"
    available_at: uint256 = block.timestamp + self.withdraw_delay
    self._withdraw_requests[campaign_id] = WithdrawRequest(amount=amount, available_at=available_at)
    log WithdrawRequested(
        campaign_id=campaign_id, token=token, amount=amount, available_at=available_at
    )


@external
def cancel_withdraw(campaign_id: uint256, token: address):
    """
    @notice Drops a pending withdraw request; the campaign can serve again.
    """
    self._require_advertiser(campaign_id, token)
    # dev: there must be something to cancel
    assert self._withdraw_requests[campaign_id].amount != 0, "escrow: no pending withdraw"
    self._withdraw_requests[campaign_id] = empty(WithdrawRequest)
    log WithdrawCancelled(campaign_id=campaign_id, token=token)


@external
@nonreentrant
def withdraw(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Pays a matured withdraw request to the advertiser: the amount
            requested, or what is left after settlement if that is less.
    @return The amount paid.
    """
    guard._require_not_paused()
    advertiser: address = self._require_advertiser(campaign_id, token)
    request: WithdrawRequest = self._withdraw_requests[campaign_id]
    # dev: a request must come first
    assert request.amount != 0, "escrow: no pending withdraw"
    # dev: the delay protects spend that is not settled yet
    assert block.timestamp >= request.available_at, "escrow: withdraw delay not over"
    amount: uint256 = min(request.amount, self._balance(campaign_id))
    # dev: settlement may have spent everything that was requested
    assert amount != 0, "escrow: nothing to withdraw"
    self._withdraw_requests[campaign_id] = empty(WithdrawRequest)
    self._ledgers[campaign_id].withdrawn += amount
    self._send(token, advertiser, amount)
    log Withdrawn(campaign_id=campaign_id, token=token, recipient=advertiser, amount=amount)
    return amount


@external
@nonreentrant
def spend_batch(
    epoch: uint256,
    campaign_ids: DynArray[uint256, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
):
    """
    @notice Moves one epoch's spend out of escrow. Each campaign is spent
            at most once per epoch and never above its balance; epochs move
            forward only. A large epoch may be split over several batches.
    @param epoch The settlement epoch.
    @param campaign_ids The campaigns that spent in this epoch.
    @param amounts What each spent, in its token's atomic units.
    """
    guard._require_not_paused()
    # dev: spend is moved by the settlement key only
    assert access_control.hasRole[SETTLER_ROLE][msg.sender], "escrow: caller is not settler"
    # dev: each campaign needs an amount
    assert len(campaign_ids) == len(amounts), "escrow: length mismatch"
    # dev: an empty batch would record nothing
    assert len(campaign_ids) != 0, "escrow: empty batch"
    # dev: epochs only move forward
    assert epoch != 0 and epoch >= self.latest_epoch, "escrow: epoch already closed"
    self.latest_epoch = epoch

    tokens: DynArray[address, MAX_BATCH_TOKENS] = []
    shares: DynArray[uint256, MAX_BATCH_TOKENS] = []
    fees: DynArray[uint256, MAX_BATCH_TOKENS] = []
    for i: uint256 in range(len(campaign_ids), bound=MAX_BATCH):
        campaign_id: uint256 = campaign_ids[i]
        amount: uint256 = amounts[i]
        ledger: Ledger = self._ledgers[campaign_id]
        # dev: a spend must move something
        assert amount != 0, "escrow: zero spend"
        # dev: a replayed batch or a second spend in one epoch is refused
        assert ledger.last_spent_epoch < epoch, "escrow: campaign already spent in epoch"
        # dev: never spend budget that is not there
        assert amount <= ledger.deposited - ledger.withdrawn - ledger.spent, "escrow: spend above balance"
        self._ledgers[campaign_id].spent = ledger.spent + amount
        self._ledgers[campaign_id].last_spent_epoch = epoch
        share: uint256 = amount * (BPS - fee_bps) // BPS
        fee: uint256 = amount - share
        found: bool = False
        for j: uint256 in range(len(tokens), bound=MAX_BATCH_TOKENS):
            if tokens[j] == ledger.token:
                shares[j] += share
                fees[j] += fee
                found = True
                break
        if not found:
            # dev: a batch covers at most MAX_BATCH_TOKENS tokens
            assert len(tokens) < MAX_BATCH_TOKENS, "escrow: too many tokens in batch"
            tokens.append(ledger.token)
            shares.append(share)
            fees.append(fee)
        log Spent(
            epoch=epoch,
            campaign_id=campaign_id,
            token=ledger.token,
            amount=amount,
            publisher_share=share,
            fee=fee,
        )

    for j: uint256 in range(len(tokens), bound=MAX_BATCH_TOKENS):
        self._fund_payout(tokens[j], shares[j])
        if fees[j] != 0:
            self._send(tokens[j], self.treasury, fees[j])
    log EpochSpent(epoch=epoch, campaigns=len(campaign_ids))


@external
def set_token_allowed(token: address, allowed: bool):
    """
    @notice Adds or removes a token from the allow-list (zero address = ETH).
    """
    self._require_admin()
    # dev: an ERC-20 must be a deployed contract
    assert token == empty(address) or token.is_contract, "escrow: token is not a contract"
    self.allowed_tokens[token] = allowed
    log TokenAllowed(token=token, allowed=allowed)


@external
def set_treasury(new_treasury: address):
    """
    @notice Changes where the network fee goes.
    """
    self._require_admin()
    # dev: a zero treasury would burn the fee
    assert new_treasury != empty(address), "escrow: zero treasury"
    previous: address = self.treasury
    self.treasury = new_treasury
    log TreasuryUpdated(previous_treasury=previous, new_treasury=new_treasury)


@external
def set_withdraw_delay(new_delay: uint256):
    """
    @notice Changes the delay for future withdraw requests; pending ones keep theirs.
    """
    self._require_admin()
    # dev: an unbounded delay would lock budgets forever
    assert new_delay <= MAX_WITHDRAW_DELAY, "escrow: delay too long"
    previous: uint256 = self.withdraw_delay
    self.withdraw_delay = new_delay
    log WithdrawDelayUpdated(previous_delay=previous, new_delay=new_delay)


@external
@view
def get_balance(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Returns the campaign's unspent, unwithdrawn budget in `token`.
    """
    if self._ledgers[campaign_id].token != token:
        return 0
    return self._balance(campaign_id)


@external
@view
def get_total_spent(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Returns everything ever spent by the campaign in `token`.
    """
    if self._ledgers[campaign_id].token != token:
        return 0
    return self._ledgers[campaign_id].spent


@external
@view
def get_ledger(campaign_id: uint256) -> Ledger:
    """
    @notice Returns the campaign's token, deposited, withdrawn and spent totals.
    """
    return self._ledgers[campaign_id]


@external
@view
def get_withdraw_request(campaign_id: uint256) -> WithdrawRequest:
    """
    @notice Returns the pending withdraw request (zero when none).
    """
    return self._withdraw_requests[campaign_id]


@external
@view
def has_pending_withdraw(campaign_id: uint256) -> bool:
    """
    @notice Returns True while a withdraw request is pending; the campaign must not serve.
    """
    return self._withdraw_requests[campaign_id].amount != 0


@internal
@view
def _balance(campaign_id: uint256) -> uint256:
    ledger: Ledger = self._ledgers[campaign_id]
    return ledger.deposited - ledger.withdrawn - ledger.spent


@internal
@view
def _require_admin():
    # dev: configuration is the admin's
    assert access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender], "escrow: caller is not admin"


@internal
@view
def _require_advertiser(campaign_id: uint256, token: address) -> address:
    campaign: CampaignRegistry.Campaign = staticcall campaigns.get_campaign(campaign_id)
    # dev: the campaign must exist
    assert campaign.advertiser != empty(address), "escrow: unknown campaign"
    # dev: only the campaign's advertiser moves its budget
    assert campaign.advertiser == msg.sender, "escrow: caller is not advertiser"
    # dev: a budget is held in the token the campaign bids in
    assert campaign.token == token, "escrow: wrong token for campaign"
    return campaign.advertiser


@internal
def _pull(token: address, sender: address, amount: uint256) -> uint256:
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    # dev: tokens that return false, or revert, are refused
    assert extcall IERC20(token).transferFrom(sender, self, amount, default_return_value=True), "escrow: transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    # dev: a token that delivers nothing cannot fund a campaign
    assert received != 0, "escrow: nothing received"
    return received


@internal
def _send(token: address, recipient: address, amount: uint256):
    if token == empty(address):
        raw_call(recipient, b"", value=amount)
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).transfer(recipient, amount, default_return_value=True), "escrow: transfer failed"


@internal
def _fund_payout(token: address, amount: uint256):
    if amount == 0:
        return
    if token == empty(address):
        extcall payout.fund(token, amount, value=amount)
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).approve(payout.address, amount, default_return_value=True), "escrow: approve failed"
        extcall payout.fund(token, amount)
