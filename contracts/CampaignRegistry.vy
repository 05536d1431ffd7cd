# pragma version ~=0.4.3
"""
@title CampaignRegistry
@notice On-chain record of every Buzzer campaign: who owns it, which
        token pays for it, how it bids, a content hash of its targeting
        and creative, and the most it may spend in one epoch. Campaign
        ids are sequential from 1. The advertiser that registered a
        campaign is the only wallet that can change it or fund it in
        the escrow.
        The registry also owns the spend clock: epoch e (e >= 1) is the
        window [genesis + (e - 1) * epoch_length, genesis + e * epoch_length).
        A campaign's max spend per epoch is in force from its registration
        epoch; a change takes effect from the next epoch, and every value
        stays answerable for the epochs it governed, so the escrow can clip
        a late settlement by the limit that was in force at the time.
"""

from snekmate.auth import access_control
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


struct Campaign:
    advertiser: address
    token: address
    bid_model: uint8
    bid: uint256
    metadata_hash: bytes32
    status: uint8
    registered_at: uint256


event EpochClockSet:
    epoch_length: uint256
    genesis: uint256


event CampaignRegistered:
    campaign_id: indexed(uint256)
    advertiser: indexed(address)
    token: address
    bid_model: uint8
    bid: uint256
    metadata_hash: bytes32
    max_spend_per_epoch: uint256


event CampaignStatusUpdated:
    campaign_id: indexed(uint256)
    status: uint8


event CampaignMetadataUpdated:
    campaign_id: indexed(uint256)
    bid: uint256
    metadata_hash: bytes32


event MaxSpendPerEpochSet:
    campaign_id: indexed(uint256)
    max_spend: uint256
    effective_epoch: uint256


BID_CPM: public(constant(uint8)) = 0
BID_CPC: public(constant(uint8)) = 1

STATUS_ACTIVE: public(constant(uint8)) = 1
STATUS_PAUSED: public(constant(uint8)) = 2
STATUS_ENDED: public(constant(uint8)) = 3

# an epoch shorter than an hour leaves no time to settle; longer than a week
# would not fit the escrow's withdraw delay (epoch + grace <= 30 days)
MIN_EPOCH_LENGTH: public(constant(uint256)) = 3_600
MAX_EPOCH_LENGTH: public(constant(uint256)) = 7 * 86_400
# the escrow holds amounts in 128 bits; a larger limit would mean nothing
MAX_SPEND_LIMIT: public(constant(uint256)) = 2**128 - 1

# A checkpoint is one slot: effective epoch in bits 192..255, the number of
# older checkpoints (only in the newest) in bits 128..191, the max in 0..127.
EPOCH_SHIFT: constant(uint256) = 192
COUNT_SHIFT: constant(uint256) = 128
COUNT_MASK: constant(uint256) = 2**64 - 1
AMOUNT_MASK: constant(uint256) = 2**128 - 1
# an epoch is at least an hour, so 2**40 epochs outlast any chain
MAX_CHECKPOINTS: constant(uint256) = 2**40


epoch_length: public(immutable(uint256))
genesis: public(immutable(uint256))

_campaigns: HashMap[uint256, Campaign]
campaign_count: public(uint256)
# newest max-spend checkpoint of each campaign; read by every spend
_max_spend_head: HashMap[uint256, uint256]
# the checkpoints it superseded, oldest first
_max_spend_history: HashMap[uint256, HashMap[uint256, uint256]]


@deploy
def __init__(epoch_length_: uint256, genesis_: uint256):
    """
    @param epoch_length_ Seconds in one spend epoch (the escrow reads it).
    @param genesis_ When epoch 1 begins; not in the future.
    """
    # dev: a short epoch leaves no time to settle and multiplies what a stolen settler key can spend
    assert epoch_length_ >= MIN_EPOCH_LENGTH, "campaigns: epoch below floor"
    # dev: the escrow's withdraw delay must cover a whole epoch plus the settlement grace
    assert epoch_length_ <= MAX_EPOCH_LENGTH, "campaigns: epoch too long"
    # dev: epoch 1 must have begun, so the registration epoch always exists
    assert genesis_ <= block.timestamp, "campaigns: genesis in the future"
    access_control.__init__()
    guard.__init__()
    epoch_length = epoch_length_
    genesis = genesis_
    log EpochClockSet(epoch_length=epoch_length_, genesis=genesis_)


@external
def register(
    token: address,
    bid_model: uint8,
    bid: uint256,
    metadata_hash: bytes32,
    max_spend_per_epoch: uint256,
) -> uint256:
    """
    @notice Registers a campaign owned by the caller; it starts active.
    @param token The token its budget is paid in (zero address for ETH).
    @param bid_model 0 for CPM (price per 1,000 impressions), 1 for CPC.
    @param bid The bid in the token's atomic units.
    @param metadata_hash Content hash of the campaign's targeting and creative.
    @param max_spend_per_epoch The most the escrow may charge for one epoch,
           in force from the current epoch.
    @return The new campaign id.
    """
    guard._require_not_paused()
    # dev: only CPM and CPC are priced
    assert bid_model <= BID_CPC, "campaigns: unknown bid model"
    # dev: a zero bid would never be paid
    assert bid != 0, "campaigns: zero bid"
    # dev: the metadata hash is what the ad server checks creatives against
    assert metadata_hash != empty(bytes32), "campaigns: empty metadata hash"
    self._check_max_spend(max_spend_per_epoch)
    campaign_id: uint256 = self.campaign_count + 1
    self.campaign_count = campaign_id
    self._campaigns[campaign_id] = Campaign(
        advertiser=msg.sender,
        token=token,
        bid_model=bid_model,
        bid=bid,
        metadata_hash=metadata_hash,
        status=STATUS_ACTIVE,
        registered_at=block.timestamp,
    )
    self._max_spend_head[campaign_id] = self._pack(self._current_epoch(), 0, max_spend_per_epoch)
    log CampaignRegistered(
        campaign_id=campaign_id,
        advertiser=msg.sender,
        token=token,
        bid_model=bid_model,
        bid=bid,
        metadata_hash=metadata_hash,
        max_spend_per_epoch=max_spend_per_epoch,
    )
    return campaign_id


@external
def update_status(campaign_id: uint256, status: uint8):
    """
    @notice Activates, pauses or ends a campaign. Ending is final.
    @param campaign_id The campaign.
    @param status 1 active, 2 paused, 3 ended.
    """
    guard._require_not_paused()
    current: uint8 = self._require_owner(campaign_id)
    # dev: only the three lifecycle states exist
    assert status >= STATUS_ACTIVE and status <= STATUS_ENDED, "campaigns: unknown status"
    # dev: an ended campaign stays ended
    assert current != STATUS_ENDED, "campaigns: campaign ended"
    # dev: a no-op would emit a misleading event
    assert current != status, "campaigns: status unchanged"
    self._campaigns[campaign_id].status = status
    log CampaignStatusUpdated(campaign_id=campaign_id, status=status)


@external
def update_metadata(campaign_id: uint256, bid: uint256, metadata_hash: bytes32):
    """
    @notice Changes a live campaign's bid and targeting/creative hash.
    @param campaign_id The campaign.
    @param bid The new bid in atomic units.
    @param metadata_hash The new content hash.
    """
    guard._require_not_paused()
    current: uint8 = self._require_owner(campaign_id)
    # dev: an ended campaign stays as it ended
    assert current != STATUS_ENDED, "campaigns: campaign ended"
    # dev: a zero bid would never be paid
    assert bid != 0, "campaigns: zero bid"
    # dev: the metadata hash is what the ad server checks creatives against
    assert metadata_hash != empty(bytes32), "campaigns: empty metadata hash"
    self._campaigns[campaign_id].bid = bid
    self._campaigns[campaign_id].metadata_hash = metadata_hash
    log CampaignMetadataUpdated(campaign_id=campaign_id, bid=bid, metadata_hash=metadata_hash)


@external
def set_max_spend_per_epoch(campaign_id: uint256, new_max: uint256):
    """
    @notice Changes the campaign's max spend per epoch from the next epoch
            on; the current epoch keeps the limit it started with, so spend
            already delivered is settled under the rule it was served by.
            A second change within one epoch replaces the pending one.
    @param campaign_id The campaign.
    @param new_max The new limit in the campaign token's atomic units.
    """
    guard._require_not_paused()
    current: uint8 = self._require_owner(campaign_id)
    # dev: an ended campaign stays as it ended
    assert current != STATUS_ENDED, "campaigns: campaign ended"
    self._check_max_spend(new_max)
    effective_epoch: uint256 = self._current_epoch() + 1
    head: uint256 = self._max_spend_head[campaign_id]
    # dev: a no-op would emit a misleading event
    assert head & AMOUNT_MASK != new_max, "campaigns: max spend unchanged"
    older: uint256 = (head >> COUNT_SHIFT) & COUNT_MASK
    if head >> EPOCH_SHIFT != effective_epoch:
        # the head governed past or current epochs: keep it as history
        self._max_spend_history[campaign_id][older] = head
        older += 1
    self._max_spend_head[campaign_id] = self._pack(effective_epoch, older, new_max)
    log MaxSpendPerEpochSet(
        campaign_id=campaign_id, max_spend=new_max, effective_epoch=effective_epoch
    )


@external
@view
def max_spend_in_epoch(campaign_id: uint256, epoch: uint256) -> uint256:
    """
    @notice Returns the campaign's max spend in force in `epoch`: zero for
            an unknown campaign or an epoch before its registration.
    @param campaign_id The campaign.
    @param epoch Any epoch, past, current or next.
    """
    checkpoint: uint256 = self._max_spend_head[campaign_id]
    if checkpoint >> EPOCH_SHIFT <= epoch:
        return checkpoint & AMOUNT_MASK
    older: uint256 = (checkpoint >> COUNT_SHIFT) & COUNT_MASK
    # walk back from the newest; a settlement asks about the last epoch or two
    for i: uint256 in range(older, bound=MAX_CHECKPOINTS):
        checkpoint = self._max_spend_history[campaign_id][older - 1 - i]
        if checkpoint >> EPOCH_SHIFT <= epoch:
            return checkpoint & AMOUNT_MASK
    return 0


@external
@view
def max_spend_per_epoch(campaign_id: uint256) -> (uint256, uint256, uint256):
    """
    @notice Returns the max spend in force now, the newest max set and the
            epoch from which that one applies (the current epoch's limit
            and epoch when no change is pending).
    @param campaign_id The campaign.
    """
    head: uint256 = self._max_spend_head[campaign_id]
    now_epoch: uint256 = self._current_epoch()
    if head >> EPOCH_SHIFT <= now_epoch:
        return head & AMOUNT_MASK, head & AMOUNT_MASK, head >> EPOCH_SHIFT
    # a pending change: the one before it is in force now
    older: uint256 = (head >> COUNT_SHIFT) & COUNT_MASK
    in_force: uint256 = self._max_spend_history[campaign_id][older - 1] & AMOUNT_MASK
    return in_force, head & AMOUNT_MASK, head >> EPOCH_SHIFT


@external
@view
def current_epoch() -> uint256:
    """
    @notice Returns the epoch the chain's clock is in (1 from genesis on).
    """
    return self._current_epoch()


@external
@view
def epoch_end(epoch: uint256) -> uint256:
    """
    @notice Returns when `epoch` ends: the first second of the next epoch.
    @param epoch An epoch, 1 or later.
    """
    # dev: epochs are counted from 1
    assert epoch != 0, "campaigns: epoch zero"
    return genesis + epoch * epoch_length


@external
@view
def get_campaign(campaign_id: uint256) -> Campaign:
    """
    @notice Returns a campaign's record (all zero when it does not exist).
    @param campaign_id The campaign.
    """
    return self._campaigns[campaign_id]


@external
@view
def is_active(campaign_id: uint256) -> bool:
    """
    @notice Returns True when the campaign exists and is active.
    @param campaign_id The campaign.
    """
    return self._campaigns[campaign_id].status == STATUS_ACTIVE


@external
@view
def advertiser_of(campaign_id: uint256) -> address:
    """
    @notice Returns the campaign's advertiser, or zero when it does not exist.
    @param campaign_id The campaign.
    """
    return self._campaigns[campaign_id].advertiser


@external
@view
def token_of(campaign_id: uint256) -> address:
    """
    @notice Returns the token the campaign is paid in.
    @param campaign_id The campaign.
    """
    return self._campaigns[campaign_id].token


@internal
@view
def _current_epoch() -> uint256:
    """
    @dev The epoch block.timestamp falls in (the real clock: pausing does not stop it).
    """
    return (block.timestamp - genesis) // epoch_length + 1


@internal
@pure
def _pack(epoch: uint256, older: uint256, max_spend: uint256) -> uint256:
    """
    @dev One checkpoint slot: effective epoch, count of older checkpoints, max.
    """
    return (epoch << EPOCH_SHIFT) | (older << COUNT_SHIFT) | max_spend


@internal
@pure
def _check_max_spend(max_spend: uint256):
    """
    @dev The one rule for a max spend, at registration and on change.
    """
    # dev: a campaign without a limit would let a stolen settler key drain it in one epoch
    assert max_spend != 0, "campaigns: zero max spend"
    # dev: the limit is stored in 128 bits, like every escrow amount
    assert max_spend <= MAX_SPEND_LIMIT, "campaigns: max spend too large"


@internal
@view
def _require_owner(campaign_id: uint256) -> uint8:
    """
    @dev Refuses anyone but the campaign's advertiser; returns its status.
    """
    advertiser: address = self._campaigns[campaign_id].advertiser
    # dev: the campaign must exist
    assert advertiser != empty(address), "campaigns: unknown campaign"
    # dev: only the campaign's advertiser may change it
    assert advertiser == msg.sender, "campaigns: caller is not advertiser"
    return self._campaigns[campaign_id].status
