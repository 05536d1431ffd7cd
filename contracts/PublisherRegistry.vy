# pragma version ~=0.4.3
"""
@title PublisherRegistry
@notice On-chain identity of Buzzer publishers: the wallet that owns a
        publisher account, the wallet that receives its x402 payments and
        payouts, its quality score and the domain it proved to control.
        A publisher registers from its own wallet; the ORACLE records
        quality scores and domain verifications; the GUARDIAN can suspend.
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


struct Publisher:
    pub_id: String[64]
    payment_wallet: address
    quality_score: uint256
    domain_hash: bytes32
    registered_at: uint256
    suspended: bool


event PublisherRegistered:
    publisher: indexed(address)
    pub_id: String[64]
    payment_wallet: address


event PaymentWalletUpdated:
    publisher: indexed(address)
    previous_wallet: address
    new_wallet: address


event QualityScoreSet:
    publisher: indexed(address)
    score: uint256


event DomainVerified:
    publisher: indexed(address)
    domain_hash: bytes32


event PublisherSuspended:
    publisher: indexed(address)
    suspended: bool


ORACLE_ROLE: public(constant(bytes32)) = keccak256("ORACLE_ROLE")
MAX_QUALITY_SCORE: public(constant(uint256)) = 100


_publishers: HashMap[address, Publisher]
# keccak256(pub_id) -> owning wallet, so a pub_id names one publisher only
pub_id_owner: public(HashMap[bytes32, address])
publisher_count: public(uint256)


@deploy
def __init__():
    access_control.__init__()
    guard.__init__()


@external
def register(pub_id: String[64], payment_wallet: address):
    """
    @notice Registers the caller's wallet as a publisher.
    @param pub_id The publisher's public identifier, as used in ad requests.
    @param payment_wallet The wallet that receives x402 payments and payouts.
    """
    guard._require_not_paused()
    # dev: one registration per wallet
    assert self._publishers[msg.sender].registered_at == 0, "registry: already registered"
    # dev: an empty identifier cannot be looked up
    assert len(pub_id) != 0, "registry: empty pub_id"
    # dev: payments to the zero address would be burnt
    assert payment_wallet != empty(address), "registry: zero payment wallet"
    id_hash: bytes32 = keccak256(pub_id)
    # dev: identifiers are unique across publishers
    assert self.pub_id_owner[id_hash] == empty(address), "registry: pub_id taken"
    self.pub_id_owner[id_hash] = msg.sender
    self._publishers[msg.sender] = Publisher(
        pub_id=pub_id,
        payment_wallet=payment_wallet,
        quality_score=0,
        domain_hash=empty(bytes32),
        registered_at=block.timestamp,
        suspended=False,
    )
    self.publisher_count += 1
    log PublisherRegistered(publisher=msg.sender, pub_id=pub_id, payment_wallet=payment_wallet)


@external
def update_payment_wallet(new_wallet: address):
    """
    @notice Changes where the caller's payments go.
    @param new_wallet The new payment wallet.
    """
    guard._require_not_paused()
    self._require_registered(msg.sender)
    # dev: payments to the zero address would be burnt
    assert new_wallet != empty(address), "registry: zero payment wallet"
    previous: address = self._publishers[msg.sender].payment_wallet
    self._publishers[msg.sender].payment_wallet = new_wallet
    log PaymentWalletUpdated(publisher=msg.sender, previous_wallet=previous, new_wallet=new_wallet)


@external
def set_quality_score(publisher: address, score: uint256):
    """
    @notice Records a publisher's quality score (0 to 100).
    @param publisher The publisher's wallet.
    @param score The new score.
    """
    guard._require_not_paused()
    # dev: scores come from the quality oracle only
    assert access_control.hasRole[ORACLE_ROLE][msg.sender], "registry: caller is not oracle"
    self._require_registered(publisher)
    # dev: the score is a percentage
    assert score <= MAX_QUALITY_SCORE, "registry: score above 100"
    self._publishers[publisher].quality_score = score
    log QualityScoreSet(publisher=publisher, score=score)


@external
def set_domain_verified(publisher: address, domain_hash: bytes32):
    """
    @notice Binds a verified domain to a publisher (our on-chain ads.txt).
    @param publisher The publisher's wallet.
    @param domain_hash keccak256 of the lower-case domain name.
    """
    guard._require_not_paused()
    # dev: verifications come from the domain oracle only
    assert access_control.hasRole[ORACLE_ROLE][msg.sender], "registry: caller is not oracle"
    self._require_registered(publisher)
    # dev: an empty hash would name no domain
    assert domain_hash != empty(bytes32), "registry: empty domain hash"
    self._publishers[publisher].domain_hash = domain_hash
    log DomainVerified(publisher=publisher, domain_hash=domain_hash)


@external
def set_suspended(publisher: address, suspended: bool):
    """
    @notice Suspends a publisher from ad serving, or lifts the suspension.
    @param publisher The publisher's wallet.
    @param suspended True to suspend, False to reinstate.
    """
    # dev: suspension is a guardian decision
    assert access_control.hasRole[guard.GUARDIAN_ROLE][msg.sender], "registry: caller is not guardian"
    self._require_registered(publisher)
    # dev: a no-op would emit a misleading event
    assert self._publishers[publisher].suspended != suspended, "registry: status unchanged"
    self._publishers[publisher].suspended = suspended
    log PublisherSuspended(publisher=publisher, suspended=suspended)


@external
@view
def get_publisher(publisher: address) -> Publisher:
    """
    @notice Returns a publisher's record (all zero when not registered).
    """
    return self._publishers[publisher]


@external
@view
def is_registered(publisher: address) -> bool:
    """
    @notice Returns True when `publisher` has registered.
    """
    return self._publishers[publisher].registered_at != 0


@external
@view
def payment_wallet_of(pub_id: String[64]) -> address:
    """
    @notice Returns the payment wallet for a public identifier, or zero.
    """
    return self._publishers[self.pub_id_owner[keccak256(pub_id)]].payment_wallet


@internal
@view
def _require_registered(publisher: address):
    # dev: the wallet must be a registered publisher
    assert self._publishers[publisher].registered_at != 0, "registry: not registered"
