"""PublisherRegistry: registration, payment wallets, oracle scores and domains, guardian
suspension and the emergency stop, each path with its event and its exact revert reason."""

import ape
import pytest
from eth_utils import keccak

from tests.contracts.conftest import ZERO

PUB_ID = "pub-news-site"
DOMAIN_HASH = keccak(text="news.example")


@pytest.fixture
def registered(publisher_registry, publisher, other_publisher):
    """`publisher` registered as PUB_ID, paid to `other_publisher`'s wallet."""
    publisher_registry.register(PUB_ID, other_publisher, sender=publisher)
    return publisher


# register


def test_register_records_publisher_and_emits_event(publisher_registry, publisher, other_publisher):
    tx = publisher_registry.register(PUB_ID, other_publisher, sender=publisher)

    assert tx.events == [
        publisher_registry.PublisherRegistered(
            publisher=publisher, pub_id=PUB_ID, payment_wallet=other_publisher
        )
    ]
    record = publisher_registry.get_publisher(publisher)
    assert record.pub_id == PUB_ID
    assert record.payment_wallet == other_publisher
    assert record.quality_score == 0
    assert record.domain_hash == b"\x00" * 32
    assert record.registered_at == tx.timestamp
    assert record.suspended is False
    assert publisher_registry.is_registered(publisher)
    assert publisher_registry.pub_id_owner(keccak(text=PUB_ID)) == publisher
    assert publisher_registry.publisher_count() == 1


def test_register_counts_each_publisher(publisher_registry, publisher, other_publisher):
    publisher_registry.register("first", publisher, sender=publisher)
    publisher_registry.register("second", other_publisher, sender=other_publisher)

    assert publisher_registry.publisher_count() == 2


def test_register_twice_reverts(publisher_registry, registered):
    with ape.reverts("registry: already registered"):
        publisher_registry.register("another-id", registered, sender=registered)


def test_register_empty_pub_id_reverts(publisher_registry, publisher):
    with ape.reverts("registry: empty pub_id"):
        publisher_registry.register("", publisher, sender=publisher)


def test_register_zero_payment_wallet_reverts(publisher_registry, publisher):
    with ape.reverts("registry: zero payment wallet"):
        publisher_registry.register(PUB_ID, ZERO, sender=publisher)


def test_register_taken_pub_id_reverts(publisher_registry, registered, other_publisher):
    with ape.reverts("registry: pub_id taken"):
        publisher_registry.register(PUB_ID, other_publisher, sender=other_publisher)


def test_register_while_paused_reverts(publisher_registry, guardian, publisher):
    publisher_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        publisher_registry.register(PUB_ID, publisher, sender=publisher)


# update_payment_wallet


def test_update_payment_wallet_redirects_payments(
    publisher_registry, registered, other_publisher, stranger
):
    tx = publisher_registry.update_payment_wallet(stranger, sender=registered)

    assert tx.events == [
        publisher_registry.PaymentWalletUpdated(
            publisher=registered, previous_wallet=other_publisher, new_wallet=stranger
        )
    ]
    assert publisher_registry.get_publisher(registered).payment_wallet == stranger
    assert publisher_registry.payment_wallet_of(PUB_ID) == stranger


def test_update_payment_wallet_unregistered_reverts(publisher_registry, stranger):
    with ape.reverts("registry: not registered"):
        publisher_registry.update_payment_wallet(stranger, sender=stranger)


def test_update_payment_wallet_zero_reverts(publisher_registry, registered):
    with ape.reverts("registry: zero payment wallet"):
        publisher_registry.update_payment_wallet(ZERO, sender=registered)


def test_update_payment_wallet_while_paused_reverts(
    publisher_registry, registered, guardian, stranger
):
    publisher_registry.pause(sender=guardian)

    with ape.reverts("guard: paused"):
        publisher_registry.update_payment_wallet(stranger, sender=registered)


# set_quality_score


@pytest.mark.parametrize("score", [0, 73, 100])
def test_set_quality_score_records_score(publisher_registry, registered, oracle, score):
    tx = publisher_registry.set_quality_score(registered, score, sender=oracle)

    assert tx.events == [publisher_registry.QualityScoreSet(publisher=registered, score=score)]
    assert publisher_registry.get_publisher(registered).quality_score == score


def test_set_quality_score_above_100_reverts(publisher_registry, registered, oracle):
    with ape.reverts("registry: score above 100"):
        publisher_registry.set_quality_score(registered, 101, sender=oracle)


def test_set_quality_score_unregistered_reverts(publisher_registry, oracle, stranger):
    with ape.reverts("registry: not registered"):
        publisher_registry.set_quality_score(stranger, 50, sender=oracle)


def test_set_quality_score_by_non_oracle_reverts(publisher_registry, registered, guardian):
    with ape.reverts("registry: caller is not oracle"):
        publisher_registry.set_quality_score(registered, 50, sender=guardian)


# set_domain_verified


def test_set_domain_verified_binds_domain(publisher_registry, registered, oracle):
    tx = publisher_registry.set_domain_verified(registered, DOMAIN_HASH, sender=oracle)

    assert tx.events == [
        publisher_registry.DomainVerified(publisher=registered, domain_hash=DOMAIN_HASH)
    ]
    assert publisher_registry.get_publisher(registered).domain_hash == DOMAIN_HASH


def test_set_domain_verified_empty_hash_reverts(publisher_registry, registered, oracle):
    with ape.reverts("registry: empty domain hash"):
        publisher_registry.set_domain_verified(registered, b"\x00" * 32, sender=oracle)


def test_set_domain_verified_unregistered_reverts(publisher_registry, oracle, stranger):
    with ape.reverts("registry: not registered"):
        publisher_registry.set_domain_verified(stranger, DOMAIN_HASH, sender=oracle)


def test_set_domain_verified_by_non_oracle_reverts(publisher_registry, registered):
    with ape.reverts("registry: caller is not oracle"):
        publisher_registry.set_domain_verified(registered, DOMAIN_HASH, sender=registered)


# set_suspended


def test_set_suspended_suspends_and_reinstates(publisher_registry, registered, guardian):
    suspend = publisher_registry.set_suspended(registered, True, sender=guardian)

    assert suspend.events == [
        publisher_registry.PublisherSuspended(publisher=registered, suspended=True)
    ]
    assert publisher_registry.get_publisher(registered).suspended is True

    reinstate = publisher_registry.set_suspended(registered, False, sender=guardian)

    assert reinstate.events == [
        publisher_registry.PublisherSuspended(publisher=registered, suspended=False)
    ]
    assert publisher_registry.get_publisher(registered).suspended is False


@pytest.mark.parametrize("already_suspended", [False, True])
def test_set_suspended_unchanged_reverts(
    publisher_registry, registered, guardian, already_suspended
):
    if already_suspended:
        publisher_registry.set_suspended(registered, True, sender=guardian)

    with ape.reverts("registry: status unchanged"):
        publisher_registry.set_suspended(registered, already_suspended, sender=guardian)


def test_set_suspended_unregistered_reverts(publisher_registry, guardian, stranger):
    with ape.reverts("registry: not registered"):
        publisher_registry.set_suspended(stranger, True, sender=guardian)


def test_set_suspended_by_non_guardian_reverts(publisher_registry, registered, admin):
    with ape.reverts("registry: caller is not guardian"):
        publisher_registry.set_suspended(registered, True, sender=admin)


def test_guardian_can_suspend_while_paused(publisher_registry, registered, guardian):
    publisher_registry.pause(sender=guardian)

    publisher_registry.set_suspended(registered, True, sender=guardian)

    assert publisher_registry.get_publisher(registered).suspended is True


# views


def test_views_of_unknown_publisher_are_empty(publisher_registry, stranger):
    record = publisher_registry.get_publisher(stranger)

    assert record.pub_id == ""
    assert record.payment_wallet == ZERO
    assert record.registered_at == 0
    assert not publisher_registry.is_registered(stranger)
    assert publisher_registry.payment_wallet_of("nobody") == ZERO


def test_payment_wallet_of_resolves_pub_id(publisher_registry, registered, other_publisher):
    assert publisher_registry.payment_wallet_of(PUB_ID) == other_publisher
    assert publisher_registry.payment_wallet_of(PUB_ID.upper()) == ZERO


# pause / unpause


def test_pause_and_unpause(publisher_registry, guardian, admin):
    paused = publisher_registry.pause(sender=guardian)

    assert paused.events == [publisher_registry.Paused(account=guardian)]
    assert publisher_registry.paused()

    unpaused = publisher_registry.unpause(sender=admin)

    assert unpaused.events.filter(publisher_registry.Unpaused) == [
        publisher_registry.Unpaused(account=admin)
    ]
    assert unpaused.events.filter(publisher_registry.PausedTimeAdded)[0].paused_total == (
        publisher_registry.paused_total()
    )
    assert not publisher_registry.paused()


def test_register_works_again_after_unpause(publisher_registry, guardian, admin, publisher):
    publisher_registry.pause(sender=guardian)
    publisher_registry.unpause(sender=admin)

    publisher_registry.register(PUB_ID, publisher, sender=publisher)

    assert publisher_registry.is_registered(publisher)


def test_pause_by_non_guardian_reverts(publisher_registry, admin):
    with ape.reverts("guard: caller is not guardian"):
        publisher_registry.pause(sender=admin)


def test_unpause_by_guardian_reverts(publisher_registry, guardian):
    publisher_registry.pause(sender=guardian)

    with ape.reverts("guard: caller is not admin"):
        publisher_registry.unpause(sender=guardian)


def test_pause_twice_reverts(publisher_registry, guardian):
    publisher_registry.pause(sender=guardian)

    with ape.reverts("pausable: contract is paused"):
        publisher_registry.pause(sender=guardian)


def test_unpause_when_running_reverts(publisher_registry, admin):
    with ape.reverts("pausable: contract is not paused"):
        publisher_registry.unpause(sender=admin)


def test_oracle_writes_wait_while_paused(publisher_registry, registered, oracle, guardian):
    publisher_registry.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        publisher_registry.set_quality_score(registered, 50, sender=oracle)
    with ape.reverts("guard: paused"):
        publisher_registry.set_domain_verified(registered, b"\x01" * 32, sender=oracle)
