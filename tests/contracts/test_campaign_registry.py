"""CampaignRegistry: sequential registration, the active/paused/ended lifecycle, metadata
updates, views and the emergency stop, each path with its event and its exact revert reason."""

import ape
import pytest

from tests.contracts.conftest import ACTIVE, CPC, CPM, ENDED, METADATA, PAUSED, USDC, ZERO

NEW_METADATA = bytes.fromhex("22" * 32)
EMPTY_HASH = b"\x00" * 32


@pytest.fixture
def campaign_id(register_campaign, advertiser, usdc):
    return register_campaign(advertiser, token=usdc.address)


# register


def test_register_records_campaign_and_emits_event(campaign_registry, advertiser, usdc):
    tx = campaign_registry.register(usdc, CPC, 3 * USDC, METADATA, sender=advertiser)

    assert tx.events == [
        campaign_registry.CampaignRegistered(
            campaign_id=1,
            advertiser=advertiser,
            token=usdc,
            bid_model=CPC,
            bid=3 * USDC,
            metadata_hash=METADATA,
        )
    ]
    campaign = campaign_registry.get_campaign(1)
    assert campaign.advertiser == advertiser
    assert campaign.token == usdc
    assert campaign.bid_model == CPC
    assert campaign.bid == 3 * USDC
    assert campaign.metadata_hash == METADATA
    assert campaign.status == ACTIVE
    assert campaign.registered_at == tx.timestamp
    assert campaign_registry.campaign_count() == 1


def test_register_returns_sequential_ids_from_one(campaign_registry, advertiser, other_advertiser):
    for expected_id, owner in [(1, advertiser), (2, other_advertiser), (3, advertiser)]:
        # The dry run shows what the call returns; the event shows what was stored.
        assert campaign_registry.register.call(ZERO, CPM, USDC, METADATA, sender=owner) == (
            expected_id
        )
        tx = campaign_registry.register(ZERO, CPM, USDC, METADATA, sender=owner)
        event = tx.events.filter(campaign_registry.CampaignRegistered)[0]
        assert event.campaign_id == expected_id
        assert campaign_registry.advertiser_of(expected_id) == owner
    assert campaign_registry.campaign_count() == 3


def test_register_unknown_bid_model_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: unknown bid model"):
        campaign_registry.register(ZERO, 2, USDC, METADATA, sender=advertiser)


def test_register_zero_bid_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: zero bid"):
        campaign_registry.register(ZERO, CPM, 0, METADATA, sender=advertiser)


def test_register_empty_metadata_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: empty metadata hash"):
        campaign_registry.register(ZERO, CPM, USDC, EMPTY_HASH, sender=advertiser)


def test_register_while_paused_reverts(campaign_registry, guardian, advertiser):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        campaign_registry.register(ZERO, CPM, USDC, METADATA, sender=advertiser)


# update_status


@pytest.mark.parametrize(
    "path",
    [
        [PAUSED],
        [PAUSED, ACTIVE],
        [ENDED],
        [PAUSED, ENDED],
    ],
    ids=["pause", "pause-resume", "end", "pause-end"],
)
def test_update_status_transitions(campaign_registry, campaign_id, advertiser, path):
    for status in path:
        tx = campaign_registry.update_status(campaign_id, status, sender=advertiser)

        assert tx.events == [
            campaign_registry.CampaignStatusUpdated(campaign_id=campaign_id, status=status)
        ]
        assert campaign_registry.get_campaign(campaign_id).status == status
        assert campaign_registry.is_active(campaign_id) == (status == ACTIVE)


@pytest.mark.parametrize("status", [ACTIVE, PAUSED, ENDED])
def test_ended_is_final(campaign_registry, campaign_id, advertiser, status):
    campaign_registry.update_status(campaign_id, ENDED, sender=advertiser)

    with ape.reverts("campaigns: campaign ended"):
        campaign_registry.update_status(campaign_id, status, sender=advertiser)
    assert campaign_registry.get_campaign(campaign_id).status == ENDED


@pytest.mark.parametrize("current", [ACTIVE, PAUSED])
def test_update_status_unchanged_reverts(campaign_registry, campaign_id, advertiser, current):
    if current == PAUSED:
        campaign_registry.update_status(campaign_id, PAUSED, sender=advertiser)

    with ape.reverts("campaigns: status unchanged"):
        campaign_registry.update_status(campaign_id, current, sender=advertiser)


@pytest.mark.parametrize("status", [0, 4, 255])
def test_update_status_unknown_status_reverts(campaign_registry, campaign_id, advertiser, status):
    with ape.reverts("campaigns: unknown status"):
        campaign_registry.update_status(campaign_id, status, sender=advertiser)


@pytest.mark.parametrize("unknown_id", [0, 2])
def test_update_status_unknown_campaign_reverts(
    campaign_registry, campaign_id, advertiser, unknown_id
):
    with ape.reverts("campaigns: unknown campaign"):
        campaign_registry.update_status(unknown_id, PAUSED, sender=advertiser)


def test_update_status_by_other_advertiser_reverts(
    campaign_registry, campaign_id, other_advertiser
):
    with ape.reverts("campaigns: caller is not advertiser"):
        campaign_registry.update_status(campaign_id, PAUSED, sender=other_advertiser)
    assert campaign_registry.is_active(campaign_id)


def test_update_status_while_paused_reverts(campaign_registry, campaign_id, advertiser, guardian):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        campaign_registry.update_status(campaign_id, PAUSED, sender=advertiser)


# update_metadata


def test_update_metadata_changes_bid_and_hash(campaign_registry, campaign_id, advertiser):
    tx = campaign_registry.update_metadata(campaign_id, 5 * USDC, NEW_METADATA, sender=advertiser)

    assert tx.events == [
        campaign_registry.CampaignMetadataUpdated(
            campaign_id=campaign_id, bid=5 * USDC, metadata_hash=NEW_METADATA
        )
    ]
    campaign = campaign_registry.get_campaign(campaign_id)
    assert campaign.bid == 5 * USDC
    assert campaign.metadata_hash == NEW_METADATA
    assert campaign.status == ACTIVE


def test_update_metadata_of_paused_campaign(campaign_registry, campaign_id, advertiser):
    campaign_registry.update_status(campaign_id, PAUSED, sender=advertiser)

    campaign_registry.update_metadata(campaign_id, 5 * USDC, NEW_METADATA, sender=advertiser)

    assert campaign_registry.get_campaign(campaign_id).bid == 5 * USDC


def test_update_metadata_of_ended_campaign_reverts(campaign_registry, campaign_id, advertiser):
    campaign_registry.update_status(campaign_id, ENDED, sender=advertiser)

    with ape.reverts("campaigns: campaign ended"):
        campaign_registry.update_metadata(campaign_id, 5 * USDC, NEW_METADATA, sender=advertiser)


def test_update_metadata_zero_bid_reverts(campaign_registry, campaign_id, advertiser):
    with ape.reverts("campaigns: zero bid"):
        campaign_registry.update_metadata(campaign_id, 0, NEW_METADATA, sender=advertiser)


def test_update_metadata_empty_hash_reverts(campaign_registry, campaign_id, advertiser):
    with ape.reverts("campaigns: empty metadata hash"):
        campaign_registry.update_metadata(campaign_id, 5 * USDC, EMPTY_HASH, sender=advertiser)


def test_update_metadata_unknown_campaign_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: unknown campaign"):
        campaign_registry.update_metadata(1, 5 * USDC, NEW_METADATA, sender=advertiser)


def test_update_metadata_by_other_advertiser_reverts(
    campaign_registry, campaign_id, other_advertiser
):
    with ape.reverts("campaigns: caller is not advertiser"):
        campaign_registry.update_metadata(
            campaign_id, 5 * USDC, NEW_METADATA, sender=other_advertiser
        )
    assert campaign_registry.get_campaign(campaign_id).metadata_hash == METADATA


def test_update_metadata_while_paused_reverts(campaign_registry, campaign_id, advertiser, guardian):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        campaign_registry.update_metadata(campaign_id, 5 * USDC, NEW_METADATA, sender=advertiser)


# views


def test_views_of_registered_campaign(campaign_registry, campaign_id, advertiser, usdc):
    assert campaign_registry.is_active(campaign_id)
    assert campaign_registry.advertiser_of(campaign_id) == advertiser
    assert campaign_registry.token_of(campaign_id) == usdc


def test_views_of_unknown_campaign_are_empty(campaign_registry):
    campaign = campaign_registry.get_campaign(7)

    assert campaign.advertiser == ZERO
    assert campaign.status == 0
    assert not campaign_registry.is_active(7)
    assert campaign_registry.advertiser_of(7) == ZERO
    assert campaign_registry.token_of(7) == ZERO


# pause / unpause


def test_pause_and_unpause(campaign_registry, guardian, admin, advertiser):
    paused = campaign_registry.pause(sender=guardian)

    assert paused.events == [campaign_registry.Paused(account=guardian)]
    assert campaign_registry.paused()

    unpaused = campaign_registry.unpause(sender=admin)

    assert unpaused.events == [campaign_registry.Unpaused(account=admin)]
    assert not campaign_registry.paused()
    campaign_registry.register(ZERO, CPM, USDC, METADATA, sender=advertiser)
    assert campaign_registry.campaign_count() == 1


def test_pause_by_non_guardian_reverts(campaign_registry, admin):
    with ape.reverts("guard: caller is not guardian"):
        campaign_registry.pause(sender=admin)


def test_unpause_by_guardian_reverts(campaign_registry, guardian):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: caller is not admin"):
        campaign_registry.unpause(sender=guardian)
