"""CampaignRegistry: the epoch clock, sequential registration, the active/paused/ended
lifecycle, metadata updates, the max spend per epoch and its history, views and the emergency
stop, each path with its event and its exact revert reason."""

import ape
import pytest

from tests.contracts.conftest import (
    ACTIVE,
    CPC,
    CPM,
    ENDED,
    EPOCH_LENGTH,
    MAX_SPEND,
    METADATA,
    PAUSED,
    USDC,
    ZERO,
    end_epoch,
)

NEW_METADATA = bytes.fromhex("22" * 32)
EMPTY_HASH = b"\x00" * 32


@pytest.fixture
def campaign_id(register_campaign, advertiser, usdc):
    return register_campaign(advertiser, token=usdc.address)


# the epoch clock


def test_constructor_records_the_clock_in_an_event(project, admin):
    genesis = ape.chain.blocks.head.timestamp - 5 * EPOCH_LENGTH

    registry = project.CampaignRegistry.deploy(EPOCH_LENGTH, genesis, sender=admin)

    deployed = ape.chain.provider.get_receipt(registry.txn_hash)
    assert deployed.events == [
        registry.RoleGranted(role=registry.DEFAULT_ADMIN_ROLE(), account=admin, sender=admin),
        registry.EpochClockSet(epoch_length=EPOCH_LENGTH, genesis=genesis),
    ]
    assert (registry.epoch_length(), registry.genesis()) == (EPOCH_LENGTH, genesis)
    assert registry.current_epoch() == 6


@pytest.mark.parametrize(
    ("epoch_length", "genesis_offset", "reason"),
    [
        (3_599, 0, "campaigns: epoch below floor"),
        (7 * 86_400 + 1, 0, "campaigns: epoch too long"),
        (EPOCH_LENGTH, 3_600, "campaigns: genesis in the future"),
    ],
)
def test_constructor_rejects_unsafe_clocks(project, admin, epoch_length, genesis_offset, reason):
    genesis = ape.chain.pending_timestamp + genesis_offset
    with ape.reverts(reason):
        project.CampaignRegistry.deploy(epoch_length, genesis, sender=admin)


def test_constructor_accepts_the_bounds(project, admin):
    head = ape.chain.blocks.head.timestamp
    shortest = project.CampaignRegistry.deploy(3_600, head, sender=admin)
    longest = project.CampaignRegistry.deploy(7 * 86_400, head, sender=admin)
    assert shortest.MIN_EPOCH_LENGTH() == shortest.epoch_length() == 3_600
    assert longest.MAX_EPOCH_LENGTH() == longest.epoch_length() == 7 * 86_400


def test_epochs_are_windows_from_genesis(campaign_registry):
    genesis = campaign_registry.genesis()
    assert campaign_registry.current_epoch() == 1
    assert campaign_registry.epoch_end(1) == genesis + EPOCH_LENGTH
    assert campaign_registry.epoch_end(3) == genesis + 3 * EPOCH_LENGTH

    ape.chain.mine(timestamp=genesis + EPOCH_LENGTH - 1)
    assert campaign_registry.current_epoch() == 1
    ape.chain.mine(timestamp=genesis + EPOCH_LENGTH)
    assert campaign_registry.current_epoch() == 2
    end_epoch(campaign_registry, 4)
    assert campaign_registry.current_epoch() == 5
    with ape.reverts("campaigns: epoch zero"):
        campaign_registry.epoch_end(0)


# register


def test_register_records_campaign_and_emits_event(campaign_registry, advertiser, usdc):
    tx = campaign_registry.register(usdc, CPC, 3 * USDC, METADATA, 50 * USDC, sender=advertiser)

    assert tx.events == [
        campaign_registry.CampaignRegistered(
            campaign_id=1,
            advertiser=advertiser,
            token=usdc,
            bid_model=CPC,
            bid=3 * USDC,
            metadata_hash=METADATA,
            max_spend_per_epoch=50 * USDC,
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
    epoch = campaign_registry.current_epoch()
    assert campaign_registry.max_spend_in_epoch(1, epoch) == 50 * USDC
    assert campaign_registry.max_spend_in_epoch(1, epoch + 100) == 50 * USDC


def test_register_returns_sequential_ids_from_one(campaign_registry, advertiser, other_advertiser):
    for expected_id, owner in [(1, advertiser), (2, other_advertiser), (3, advertiser)]:
        # The dry run shows what the call returns; the event shows what was stored.
        assert campaign_registry.register.call(
            ZERO, CPM, USDC, METADATA, MAX_SPEND, sender=owner
        ) == (expected_id)
        tx = campaign_registry.register(ZERO, CPM, USDC, METADATA, MAX_SPEND, sender=owner)
        event = tx.events.filter(campaign_registry.CampaignRegistered)[0]
        assert event.campaign_id == expected_id
        assert campaign_registry.advertiser_of(expected_id) == owner
    assert campaign_registry.campaign_count() == 3


def test_register_unknown_bid_model_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: unknown bid model"):
        campaign_registry.register(ZERO, 2, USDC, METADATA, MAX_SPEND, sender=advertiser)


def test_register_zero_bid_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: zero bid"):
        campaign_registry.register(ZERO, CPM, 0, METADATA, MAX_SPEND, sender=advertiser)


def test_register_empty_metadata_reverts(campaign_registry, advertiser):
    with ape.reverts("campaigns: empty metadata hash"):
        campaign_registry.register(ZERO, CPM, USDC, EMPTY_HASH, MAX_SPEND, sender=advertiser)


def test_register_while_paused_reverts(campaign_registry, guardian, advertiser):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        campaign_registry.register(ZERO, CPM, USDC, METADATA, MAX_SPEND, sender=advertiser)


@pytest.mark.parametrize(
    ("max_spend", "reason"),
    [(0, "campaigns: zero max spend"), (2**128, "campaigns: max spend too large")],
)
def test_register_needs_a_max_spend_that_fits(campaign_registry, advertiser, max_spend, reason):
    with ape.reverts(reason):
        campaign_registry.register(ZERO, CPM, USDC, METADATA, max_spend, sender=advertiser)
    campaign_registry.register(ZERO, CPM, USDC, METADATA, 2**128 - 1, sender=advertiser)
    assert campaign_registry.max_spend_per_epoch(1) == (2**128 - 1, 2**128 - 1, 1)


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


# max spend per epoch


def test_a_new_max_takes_effect_from_the_next_epoch_only(
    campaign_registry, advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, max_spend=100)
    end_epoch(campaign_registry, 1)  # now in epoch 2

    tx = campaign_registry.set_max_spend_per_epoch(campaign_id, 40, sender=advertiser)

    assert tx.events == [
        campaign_registry.MaxSpendPerEpochSet(
            campaign_id=campaign_id, max_spend=40, effective_epoch=3
        )
    ]
    assert campaign_registry.max_spend_in_epoch(campaign_id, 2) == 100
    assert campaign_registry.max_spend_in_epoch(campaign_id, 3) == 40
    assert campaign_registry.max_spend_per_epoch(campaign_id) == (100, 40, 3)
    end_epoch(campaign_registry, 2)
    assert campaign_registry.max_spend_per_epoch(campaign_id) == (40, 40, 3)


def test_a_second_change_in_one_epoch_replaces_the_pending_one(
    campaign_registry, advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, max_spend=100)
    campaign_registry.set_max_spend_per_epoch(campaign_id, 40, sender=advertiser)

    tx = campaign_registry.set_max_spend_per_epoch(campaign_id, 70, sender=advertiser)

    assert tx.events == [
        campaign_registry.MaxSpendPerEpochSet(
            campaign_id=campaign_id, max_spend=70, effective_epoch=2
        )
    ]
    assert [campaign_registry.max_spend_in_epoch(campaign_id, e) for e in (1, 2, 3)] == [
        100,
        70,
        70,
    ]


def test_history_answers_for_every_past_epoch(campaign_registry, advertiser, register_campaign):
    """Registered in epoch 1 at 100; changed in epochs 1 (to 50), 2 (to 20, then 30 in the
    same epoch) and 5 (to 90): every epoch keeps the limit that governed it."""
    campaign_id = register_campaign(advertiser, max_spend=100)
    campaign_registry.set_max_spend_per_epoch(campaign_id, 50, sender=advertiser)
    end_epoch(campaign_registry, 1)
    campaign_registry.set_max_spend_per_epoch(campaign_id, 20, sender=advertiser)
    campaign_registry.set_max_spend_per_epoch(campaign_id, 30, sender=advertiser)
    end_epoch(campaign_registry, 4)
    campaign_registry.set_max_spend_per_epoch(campaign_id, 90, sender=advertiser)

    expected = {0: 0, 1: 100, 2: 50, 3: 30, 4: 30, 5: 30, 6: 90, 1_000: 90}
    assert {e: campaign_registry.max_spend_in_epoch(campaign_id, e) for e in expected} == expected
    assert campaign_registry.max_spend_per_epoch(campaign_id) == (30, 90, 6)


def test_no_max_before_registration_or_for_unknown_campaigns(
    campaign_registry, advertiser, register_campaign
):
    end_epoch(campaign_registry, 2)
    campaign_id = register_campaign(advertiser, max_spend=100)
    assert campaign_registry.max_spend_in_epoch(campaign_id, 2) == 0
    assert campaign_registry.max_spend_in_epoch(campaign_id, 3) == 100
    assert campaign_registry.max_spend_in_epoch(campaign_id + 1, 3) == 0
    assert campaign_registry.max_spend_per_epoch(campaign_id + 1) == (0, 0, 0)


def test_set_max_spend_by_another_wallet_reverts(
    campaign_registry, campaign_id, other_advertiser, admin
):
    for wallet in (other_advertiser, admin):
        with ape.reverts("campaigns: caller is not advertiser"):
            campaign_registry.set_max_spend_per_epoch(campaign_id, 1, sender=wallet)
    assert campaign_registry.max_spend_in_epoch(campaign_id, 2) == MAX_SPEND


@pytest.mark.parametrize(
    ("new_max", "reason"),
    [
        (0, "campaigns: zero max spend"),
        (2**128, "campaigns: max spend too large"),
        (MAX_SPEND, "campaigns: max spend unchanged"),
    ],
)
def test_set_max_spend_rejects_bad_values(
    campaign_registry, campaign_id, advertiser, new_max, reason
):
    with ape.reverts(reason):
        campaign_registry.set_max_spend_per_epoch(campaign_id, new_max, sender=advertiser)


def test_set_max_spend_of_ended_unknown_or_while_paused_reverts(
    campaign_registry, campaign_id, advertiser, guardian, admin
):
    with ape.reverts("campaigns: unknown campaign"):
        campaign_registry.set_max_spend_per_epoch(campaign_id + 1, 1, sender=advertiser)
    campaign_registry.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        campaign_registry.set_max_spend_per_epoch(campaign_id, 1, sender=advertiser)
    campaign_registry.unpause(sender=admin)
    campaign_registry.update_status(campaign_id, ENDED, sender=advertiser)
    with ape.reverts("campaigns: campaign ended"):
        campaign_registry.set_max_spend_per_epoch(campaign_id, 1, sender=advertiser)


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

    duration = unpaused.timestamp - paused.timestamp
    assert unpaused.events == [
        campaign_registry.Unpaused(account=admin),
        campaign_registry.PausedTimeAdded(duration=duration, paused_total=duration),
    ]
    assert not campaign_registry.paused()
    campaign_registry.register(ZERO, CPM, USDC, METADATA, MAX_SPEND, sender=advertiser)
    assert campaign_registry.campaign_count() == 1


def test_pause_by_non_guardian_reverts(campaign_registry, admin):
    with ape.reverts("guard: caller is not guardian"):
        campaign_registry.pause(sender=admin)


def test_unpause_by_guardian_reverts(campaign_registry, guardian):
    campaign_registry.pause(sender=guardian)

    with ape.reverts("guard: caller is not admin"):
        campaign_registry.unpause(sender=guardian)
