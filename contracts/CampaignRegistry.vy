# pragma version ~=0.4.3
"""
@title CampaignRegistry
@notice On-chain record of every Buzzer campaign: who owns it, which
        token pays for it, how it bids and a content hash of its
        targeting and creative. Campaign ids are sequential from 1.
        The advertiser that registered a campaign is the only wallet
        that can change its status or fund it in the escrow.
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


event CampaignRegistered:
    campaign_id: indexed(uint256)
    advertiser: indexed(address)
    token: address
    bid_model: uint8
    bid: uint256
    metadata_hash: bytes32


event CampaignStatusUpdated:
    campaign_id: indexed(uint256)
    status: uint8


event CampaignMetadataUpdated:
    campaign_id: indexed(uint256)
    bid: uint256
    metadata_hash: bytes32


BID_CPM: public(constant(uint8)) = 0
BID_CPC: public(constant(uint8)) = 1

STATUS_ACTIVE: public(constant(uint8)) = 1
STATUS_PAUSED: public(constant(uint8)) = 2
STATUS_ENDED: public(constant(uint8)) = 3


_campaigns: HashMap[uint256, Campaign]
campaign_count: public(uint256)


@deploy
def __init__():
    access_control.__init__()
    guard.__init__()


@external
def register(token: address, bid_model: uint8, bid: uint256, metadata_hash: bytes32) -> uint256:
    """
    @notice Registers a campaign owned by the caller; it starts active.
    @param token The token its budget is paid in (zero address for ETH).
    @param bid_model 0 for CPM (price per 1,000 impressions), 1 for CPC.
    @param bid The bid in the token's atomic units.
    @param metadata_hash Content hash of the campaign's targeting and creative.
    @return The new campaign id.
    """
    guard._require_not_paused()
    # dev: only CPM and CPC are priced
    assert bid_model <= BID_CPC, "campaigns: unknown bid model"
    # dev: a zero bid would never be paid
    assert bid != 0, "campaigns: zero bid"
    # dev: the metadata hash is what the ad server checks creatives against
    assert metadata_hash != empty(bytes32), "campaigns: empty metadata hash"
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
    log CampaignRegistered(
        campaign_id=campaign_id,
        advertiser=msg.sender,
        token=token,
        bid_model=bid_model,
        bid=bid,
        metadata_hash=metadata_hash,
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
@view
def get_campaign(campaign_id: uint256) -> Campaign:
    """
    @notice Returns a campaign's record (all zero when it does not exist).
    """
    return self._campaigns[campaign_id]


@external
@view
def is_active(campaign_id: uint256) -> bool:
    """
    @notice Returns True when the campaign exists and is active.
    """
    return self._campaigns[campaign_id].status == STATUS_ACTIVE


@external
@view
def advertiser_of(campaign_id: uint256) -> address:
    """
    @notice Returns the campaign's advertiser, or zero when it does not exist.
    """
    return self._campaigns[campaign_id].advertiser


@external
@view
def token_of(campaign_id: uint256) -> address:
    """
    @notice Returns the token the campaign is paid in.
    """
    return self._campaigns[campaign_id].token


@internal
@view
def _require_owner(campaign_id: uint256) -> uint8:
    advertiser: address = self._campaigns[campaign_id].advertiser
    # dev: the campaign must exist
    assert advertiser != empty(address), "campaigns: unknown campaign"
    # dev: only the campaign's advertiser may change it
    assert advertiser == msg.sender, "campaigns: caller is not advertiser"
    return self._campaigns[campaign_id].status
