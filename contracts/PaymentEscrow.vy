# pragma version ~=0.4.3
"""
@title PaymentEscrow
@notice Holds advertisers' campaign budgets. Only a campaign's advertiser
        can fund it; unspent budget leaves only through a withdraw request
        that matures after `withdraw_delay` (time paused does not count),
        so spend already delivered cannot be pulled out from under
        settlement.
        Spend epochs are CampaignRegistry's time windows. Once an epoch has
        ended the SETTLER moves its spend out, each campaign at most once
        and never above its balance or the max spend per epoch in force
        in that epoch: the publishers' share to PublisherPayout, the
        network fee to the treasury. A campaign that cannot be charged is
        skipped with an event; the batch goes through. What a stolen
        SETTLER key can take is bounded by the clock and those maxima.
        ETH is the zero address; ERC-20 tokens must be allow-listed, and
        only tokens the payout has registered can be.
        A campaign's deposited total is always balance + withdrawn + spent.
"""

from ethereum.ercs import IERC20
from snekmate.auth import access_control
from modules import guard
import CampaignRegistry

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


interface Payout:
    def fund(token: address, amount: uint256): payable
    def is_registered_token(token: address) -> bool: view


struct Ledger:
    token: address
    deposited: uint256
    withdrawn: uint256
    spent: uint256
    last_spent_epoch: uint256


struct WithdrawRequest:
    amount: uint256
    available_at: uint256


struct PendingWithdraw:
    amount: uint256
    available_at: uint256
    # the guard's paused_total when the request was made: later pauses push maturity back
    paused_total: uint256


event EscrowConfigured:
    campaign_registry: address
    publisher_payout: address
    treasury: address
    fee_bps: uint256
    epoch_length: uint256
    genesis: uint256
    settlement_grace: uint256
    withdraw_delay: uint256


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
    asked: uint256
    charged: uint256
    publisher_share: uint256
    fee: uint256


event SpendSkipped:
    epoch: indexed(uint256)
    campaign_id: indexed(uint256)
    asked: uint256
    reason: String[32]


event EpochSpent:
    epoch: indexed(uint256)
    campaigns_charged: uint256
    campaigns_skipped: uint256


event TokenAllowed:
    token: indexed(address)
    allowed: bool


event TreasuryUpdated:
    previous_treasury: address
    new_treasury: address


event WithdrawDelayUpdated:
    previous_delay: uint256
    new_delay: uint256


event SettlementGraceUpdated:
    previous_grace: uint256
    new_grace: uint256


SETTLER_ROLE: public(constant(bytes32)) = keccak256("SETTLER_ROLE")
BPS: constant(uint256) = 10_000
MAX_FEE_BPS: public(constant(uint256)) = 5_000
# settlement needs at least an hour after an epoch ends (IVT hold, finality, posting)
MIN_SETTLEMENT_GRACE: public(constant(uint256)) = 3_600
MAX_WITHDRAW_DELAY: public(constant(uint256)) = 30 * 86_400
MAX_BATCH: public(constant(uint256)) = 256
MAX_BATCH_TOKENS: constant(uint256) = 8
# every amount is held in 128 bits, two to a slot
MAX_AMOUNT: public(constant(uint256)) = 2**128 - 1

# The ledger is packed into three slots per campaign; spend reads and
# writes only the first two.
#   _accounts:  token in bits 96..255, last spent epoch in bits 0..95
#   _balances:  balance in bits 128..255, spent in bits 0..127
#   _totals:    deposited in bits 128..255, withdrawn in bits 0..127
TOKEN_SHIFT: constant(uint256) = 96
EPOCH_MASK: constant(uint256) = 2**96 - 1
HIGH_SHIFT: constant(uint256) = 128
LOW_MASK: constant(uint256) = 2**128 - 1


campaigns: public(immutable(CampaignRegistry.__interface__))
payout: public(immutable(Payout))
fee_bps: public(immutable(uint256))
epoch_length: public(immutable(uint256))
genesis: public(immutable(uint256))

treasury: public(address)
settlement_grace: public(uint256)
withdraw_delay: public(uint256)
allowed_tokens: public(HashMap[address, bool])
latest_epoch: public(uint256)

_accounts: HashMap[uint256, uint256]
_balances: HashMap[uint256, uint256]
_totals: HashMap[uint256, uint256]
_withdraw_requests: HashMap[uint256, PendingWithdraw]


@deploy
def __init__(
    campaign_registry: address,
    publisher_payout: address,
    treasury_: address,
    fee_bps_: uint256,
    settlement_grace_: uint256,
    withdraw_delay_: uint256,
):
    """
    @param campaign_registry The CampaignRegistry that names each campaign's
           advertiser, token and max spend, and keeps the epoch clock.
    @param publisher_payout The PublisherPayout that receives the publishers' share.
    @param treasury_ Where the network fee goes.
    @param fee_bps_ The network fee in basis points of each spend (1500 = 15%).
    @param settlement_grace_ Seconds after an epoch ends that settlement may
           take (IVT hold, finality, posting).
    @param withdraw_delay_ Seconds between a withdraw request and the
           withdrawal; at least one epoch plus the settlement grace.
    """
    # dev: the fee is bounded so publishers always receive the larger part
    assert fee_bps_ <= MAX_FEE_BPS, "escrow: fee too high"
    # dev: a zero treasury would burn the fee
    assert treasury_ != empty(address), "escrow: zero treasury"
    registry: CampaignRegistry.__interface__ = CampaignRegistry.__interface__(campaign_registry)
    epoch_length_: uint256 = staticcall registry.epoch_length()
    self._check_timing(epoch_length_, settlement_grace_, withdraw_delay_)
    access_control.__init__()
    guard.__init__()
    campaigns = registry
    payout = Payout(publisher_payout)
    fee_bps = fee_bps_
    epoch_length = epoch_length_
    genesis = staticcall registry.genesis()
    self.treasury = treasury_
    self.settlement_grace = settlement_grace_
    self.withdraw_delay = withdraw_delay_
    log EscrowConfigured(
        campaign_registry=campaign_registry,
        publisher_payout=publisher_payout,
        treasury=treasury_,
        fee_bps=fee_bps_,
        epoch_length=epoch_length_,
        genesis=genesis,
        settlement_grace=settlement_grace_,
        withdraw_delay=withdraw_delay_,
    )


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
    totals: uint256 = self._totals[campaign_id]
    deposited: uint256 = (totals >> HIGH_SHIFT) + received
    # dev: every amount is held in 128 bits; balance, spent and withdrawn never exceed deposited
    assert deposited <= MAX_AMOUNT, "escrow: deposit above 2**128 - 1"
    self._totals[campaign_id] = (deposited << HIGH_SHIFT) | (totals & LOW_MASK)
    self._balances[campaign_id] += received << HIGH_SHIFT
    account: uint256 = self._accounts[campaign_id]
    self._accounts[campaign_id] = (convert(token, uint256) << TOKEN_SHIFT) | (account & EPOCH_MASK)
    log Deposited(campaign_id=campaign_id, token=token, sender=msg.sender, amount=received)


@external
def request_withdraw(campaign_id: uint256, token: address, amount: uint256):
    """
    @notice Asks to take unspent budget back after `withdraw_delay`; time
            the escrow spends paused does not count. The campaign stops
            serving while a request is pending. A new request replaces the
            previous one and restarts the clock.
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
    self._withdraw_requests[campaign_id] = PendingWithdraw(
        amount=amount, available_at=available_at, paused_total=guard.paused_total
    )
    log WithdrawRequested(
        campaign_id=campaign_id, token=token, amount=amount, available_at=available_at
    )


@external
def cancel_withdraw(campaign_id: uint256, token: address):
    """
    @notice Drops a pending withdraw request; the campaign can serve again.
    @param campaign_id The campaign.
    @param token The campaign's token.
    """
    self._require_advertiser(campaign_id, token)
    # dev: there must be something to cancel
    assert self._withdraw_requests[campaign_id].amount != 0, "escrow: no pending withdraw"
    self._withdraw_requests[campaign_id] = empty(PendingWithdraw)
    log WithdrawCancelled(campaign_id=campaign_id, token=token)


@external
@nonreentrant
def withdraw(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Pays a matured withdraw request to the advertiser: the amount
            requested, or what is left after settlement if that is less.
    @param campaign_id The campaign.
    @param token The campaign's token.
    @return The amount paid.
    """
    guard._require_not_paused()
    advertiser: address = self._require_advertiser(campaign_id, token)
    request: PendingWithdraw = self._withdraw_requests[campaign_id]
    # dev: a request must come first
    assert request.amount != 0, "escrow: no pending withdraw"
    # dev: the delay protects spend that is not settled yet, and does not run while paused
    assert block.timestamp >= request.available_at + guard.paused_total - request.paused_total, "escrow: withdraw delay not over"
    balances: uint256 = self._balances[campaign_id]
    amount: uint256 = min(request.amount, balances >> HIGH_SHIFT)
    # dev: settlement may have spent everything that was requested
    assert amount != 0, "escrow: nothing to withdraw"
    self._withdraw_requests[campaign_id] = empty(PendingWithdraw)
    self._balances[campaign_id] = balances - (amount << HIGH_SHIFT)
    self._totals[campaign_id] += amount
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
    @notice Moves an ended epoch's spend out of escrow. Each campaign is
            charged what was asked, clipped to its balance and to its max
            spend in force in `epoch`, at most once per epoch. A campaign
            that cannot be charged (zero asked, unknown, unfunded, already
            spent in this or a later epoch) is skipped with an event.
            Epochs move forward only; an epoch may be split over batches.
    @param epoch The spend epoch; it must have ended.
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
    # dev: epochs are counted from 1
    assert epoch != 0, "escrow: epoch zero"
    # dev: spend is known only once the epoch is over; this bounds a stolen key by the clock
    # (epoch e has ended when e whole epochs lie between genesis and now; no overflow for any e)
    assert epoch <= (block.timestamp - genesis) // epoch_length, "escrow: epoch not ended"
    # dev: epochs only move forward
    assert epoch >= self.latest_epoch, "escrow: epoch already closed"
    self.latest_epoch = epoch

    tokens: DynArray[address, MAX_BATCH_TOKENS] = []
    shares: DynArray[uint256, MAX_BATCH_TOKENS] = []
    fees: DynArray[uint256, MAX_BATCH_TOKENS] = []
    skipped: uint256 = 0
    for i: uint256 in range(len(campaign_ids), bound=MAX_BATCH):
        campaign_id: uint256 = campaign_ids[i]
        asked: uint256 = amounts[i]
        reason: String[32] = ""
        charged: uint256 = 0
        account: uint256 = 0
        balances: uint256 = 0
        if asked == 0:
            reason = "zero amount"
        else:
            account = self._accounts[campaign_id]
            balances = self._balances[campaign_id]
            if account & EPOCH_MASK >= epoch:
                reason = "already spent"
            elif balances >> HIGH_SHIFT == 0:
                reason = "no balance"
                if staticcall campaigns.advertiser_of(campaign_id) == empty(address):
                    reason = "unknown campaign"
            else:
                max_spend: uint256 = staticcall campaigns.max_spend_in_epoch(campaign_id, epoch)
                charged = min(min(asked, balances >> HIGH_SHIFT), max_spend)
                if charged == 0:
                    reason = "before registration"
        if charged == 0:
            skipped += 1
            log SpendSkipped(epoch=epoch, campaign_id=campaign_id, asked=asked, reason=reason)
            continue

        token: address = convert(convert(account >> TOKEN_SHIFT, uint160), address)
        self._accounts[campaign_id] = (account & ~EPOCH_MASK) | epoch
        self._balances[campaign_id] = balances - (charged << HIGH_SHIFT) + charged
        share: uint256 = charged * (BPS - fee_bps) // BPS
        fee: uint256 = charged - share
        found: bool = False
        for j: uint256 in range(len(tokens), bound=MAX_BATCH_TOKENS):
            if tokens[j] == token:
                shares[j] += share
                fees[j] += fee
                found = True
                break
        if not found:
            # dev: a batch covers at most MAX_BATCH_TOKENS tokens
            assert len(tokens) < MAX_BATCH_TOKENS, "escrow: too many tokens in batch"
            tokens.append(token)
            shares.append(share)
            fees.append(fee)
        log Spent(
            epoch=epoch,
            campaign_id=campaign_id,
            token=token,
            asked=asked,
            charged=charged,
            publisher_share=share,
            fee=fee,
        )

    for j: uint256 in range(len(tokens), bound=MAX_BATCH_TOKENS):
        self._fund_payout(tokens[j], shares[j])
        if fees[j] != 0:
            self._send(tokens[j], self.treasury, fees[j])
    log EpochSpent(
        epoch=epoch,
        campaigns_charged=len(campaign_ids) - skipped,
        campaigns_skipped=skipped,
    )


@external
def unpause():
    """
    @notice Lifts the emergency stop (admin only). Pending withdraw
            requests mature later by the time the escrow was paused; the
            guard's `PausedTimeAdded` event carries that time.
    """
    guard._unpause()


@external
def set_token_allowed(token: address, allowed: bool):
    """
    @notice Adds or removes a token from the allow-list (zero address = ETH).
            Only a token the payout has registered can be added, so every
            spend can be funded there.
    @param token The token.
    @param allowed True to accept deposits in it, False to stop them.
    """
    guard._require_admin()
    if allowed:
        # dev: an ERC-20 must be a deployed contract
        assert token == empty(address) or token.is_contract, "escrow: token is not a contract"
        # dev: the publishers' share of every spend is funded into the payout in this token
        assert staticcall payout.is_registered_token(token), "escrow: token not registered in payout"
    self.allowed_tokens[token] = allowed
    log TokenAllowed(token=token, allowed=allowed)


@external
def set_treasury(new_treasury: address):
    """
    @notice Changes where the network fee goes.
    @param new_treasury The new fee recipient.
    """
    guard._require_admin()
    # dev: a zero treasury would burn the fee
    assert new_treasury != empty(address), "escrow: zero treasury"
    previous: address = self.treasury
    self.treasury = new_treasury
    log TreasuryUpdated(previous_treasury=previous, new_treasury=new_treasury)


@external
def set_withdraw_delay(new_delay: uint256):
    """
    @notice Changes the delay for future withdraw requests; pending ones keep theirs.
    @param new_delay Seconds; at least one epoch plus the settlement grace.
    """
    guard._require_admin()
    self._check_timing(epoch_length, self.settlement_grace, new_delay)
    previous: uint256 = self.withdraw_delay
    self.withdraw_delay = new_delay
    log WithdrawDelayUpdated(previous_delay=previous, new_delay=new_delay)


@external
def set_settlement_grace(new_grace: uint256):
    """
    @notice Changes the time settlement may take after an epoch ends; the
            withdraw delay must still cover one epoch plus this grace.
    @param new_grace Seconds, at least MIN_SETTLEMENT_GRACE.
    """
    guard._require_admin()
    self._check_timing(epoch_length, new_grace, self.withdraw_delay)
    previous: uint256 = self.settlement_grace
    self.settlement_grace = new_grace
    log SettlementGraceUpdated(previous_grace=previous, new_grace=new_grace)


@external
@view
def get_balance(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Returns the campaign's unspent, unwithdrawn budget in `token`.
    @param campaign_id The campaign.
    @param token The token asked about; zero unless it is the campaign's.
    """
    if self._token(campaign_id) != token:
        return 0
    return self._balance(campaign_id)


@external
@view
def get_total_spent(campaign_id: uint256, token: address) -> uint256:
    """
    @notice Returns everything ever spent by the campaign in `token`.
    @param campaign_id The campaign.
    @param token The token asked about; zero unless it is the campaign's.
    """
    if self._token(campaign_id) != token:
        return 0
    return self._balances[campaign_id] & LOW_MASK


@external
@view
def get_ledger(campaign_id: uint256) -> Ledger:
    """
    @notice Returns the campaign's token, deposited, withdrawn and spent
            totals and the last epoch it was charged for.
    @param campaign_id The campaign.
    """
    account: uint256 = self._accounts[campaign_id]
    totals: uint256 = self._totals[campaign_id]
    return Ledger(
        token=self._token(campaign_id),
        deposited=totals >> HIGH_SHIFT,
        withdrawn=totals & LOW_MASK,
        spent=self._balances[campaign_id] & LOW_MASK,
        last_spent_epoch=account & EPOCH_MASK,
    )


@external
@view
def get_withdraw_request(campaign_id: uint256) -> WithdrawRequest:
    """
    @notice Returns the pending withdraw request (zero when none) with the
            time it matures, moved back by every pause since it was made
            (an ongoing pause counted up to now).
    @param campaign_id The campaign.
    """
    request: PendingWithdraw = self._withdraw_requests[campaign_id]
    if request.amount == 0:
        return empty(WithdrawRequest)
    paused_total: uint256 = guard.paused_total
    if guard.pausable.paused:
        paused_total += block.timestamp - guard.paused_at
    return WithdrawRequest(
        amount=request.amount,
        available_at=request.available_at + paused_total - request.paused_total,
    )


@external
@view
def has_pending_withdraw(campaign_id: uint256) -> bool:
    """
    @notice Returns True while a withdraw request is pending; the campaign must not serve.
    @param campaign_id The campaign.
    """
    return self._withdraw_requests[campaign_id].amount != 0


@internal
@view
def _balance(campaign_id: uint256) -> uint256:
    """
    @dev The campaign's balance, the high half of its spend slot.
    """
    return self._balances[campaign_id] >> HIGH_SHIFT


@internal
@view
def _token(campaign_id: uint256) -> address:
    """
    @dev The campaign's token, the high 160 bits of its account slot.
    """
    return convert(convert(self._accounts[campaign_id] >> TOKEN_SHIFT, uint160), address)


@internal
@pure
def _check_timing(epoch_length_: uint256, grace: uint256, delay: uint256):
    """
    @dev The one rule for the settlement grace and the withdraw delay,
         shared by the constructor and both setters.
    """
    # dev: settlement needs time after an epoch ends (IVT hold, finality, posting)
    assert grace >= MIN_SETTLEMENT_GRACE, "escrow: grace below floor"
    # dev: a withdrawal must not overtake the settlement of spend already delivered
    assert delay >= epoch_length_ + grace, "escrow: delay below epoch and grace"
    # dev: an unbounded delay would lock budgets forever
    assert delay <= MAX_WITHDRAW_DELAY, "escrow: delay too long"


@internal
@view
def _require_advertiser(campaign_id: uint256, token: address) -> address:
    """
    @dev Refuses anyone but the campaign's advertiser, and any other token.
    """
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
    """
    @dev Pulls an ERC-20 and returns what actually arrived.
    """
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    # dev: tokens that return false, or revert, are refused
    assert extcall IERC20(token).transferFrom(sender, self, amount, default_return_value=True), "escrow: transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    # dev: a token that delivers nothing cannot fund a campaign
    assert received != 0, "escrow: nothing received"
    return received


@internal
def _send(token: address, recipient: address, amount: uint256):
    """
    @dev Pays ETH or an ERC-20 out.
    """
    if token == empty(address):
        raw_call(recipient, b"", value=amount)
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).transfer(recipient, amount, default_return_value=True), "escrow: transfer failed"


@internal
def _fund_payout(token: address, amount: uint256):
    """
    @dev Hands the publishers' share to the payout; a zero share is not sent.
    """
    if amount == 0:
        return
    if token == empty(address):
        extcall payout.fund(token, amount, value=amount)
    else:
        # dev: tokens that return false, or revert, are refused
        assert extcall IERC20(token).approve(payout.address, amount, default_return_value=True), "escrow: approve failed"
        extcall payout.fund(token, amount)
