"""Access matrix (RELIABILITY.md, Contracts): every state-changing function of the four Buzzer
contracts, called by every actor. Only the intended role succeeds and emits its event; everyone
else is refused with that function's specific reason.

The world (a registered publisher, a funded campaign that spent in epoch 1, a claimable root) is
built once per module; ape reverts the chain to it before every case, so each case only arranges
what its own function needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import ape
import pytest
from eth_utils import keccak

from tests.contracts.conftest import (
    CHALLENGE_PERIOD,
    FEE_BPS,
    PAUSED,
    SETTLEMENT_GRACE,
    USDC,
    WITHDRAW_DELAY,
    ZERO,
    advance,
    end_epoch,
)

ACTORS = [
    "stranger",
    "advertiser",
    "other_advertiser",
    "publisher",
    "settler",
    "oracle",
    "guardian",
    "admin",
]
BUDGET = 100 * USDC
EPOCH_SPEND = 10 * USDC
PUBLISHER_SHARE = EPOCH_SPEND * (10_000 - FEE_BPS) // 10_000
GUARDED = ["publisher_registry", "campaign_registry", "escrow", "payout"]
NEW_METADATA = bytes.fromhex("22" * 32)
DOMAIN_HASH = keccak(text="news.example")


@pytest.fixture(scope="module")
def world(
    publisher_registry,
    campaign_registry,
    escrow,
    payout,
    usdc,
    mint_usdc,
    funded_campaign,
    build_tree,
    post_tree,
    stranger,
    advertiser,
    other_advertiser,
    publisher,
    settler,
    oracle,
    guardian,
    admin,
    treasury,
):
    publisher_registry.register("pub-news-site", publisher, sender=publisher)
    campaign_id = funded_campaign(advertiser, BUDGET)
    # The advertiser holds budget and an allowance for one more deposit.
    mint_usdc(advertiser, BUDGET)
    usdc.approve(escrow, BUDGET, sender=advertiser)
    end_epoch(escrow, 1)
    escrow.spend_batch(1, [campaign_id], [EPOCH_SPEND], sender=settler)
    tree = build_tree([(publisher, usdc, PUBLISHER_SHARE)])
    post_tree(tree)
    advance(CHALLENGE_PERIOD + 1)
    return SimpleNamespace(
        publisher_registry=publisher_registry,
        campaign_registry=campaign_registry,
        escrow=escrow,
        payout=payout,
        usdc=usdc,
        treasury=treasury,
        campaign_id=campaign_id,
        tree=tree,
        actors={
            "stranger": stranger,
            "advertiser": advertiser,
            "other_advertiser": other_advertiser,
            "publisher": publisher,
            "settler": settler,
            "oracle": oracle,
            "guardian": guardian,
            "admin": admin,
        },
    )


Act = Callable[[SimpleNamespace, Any], Any]
Events = Callable[[SimpleNamespace, Any, Any], list]


@dataclass(frozen=True)
class Case:
    """One state-changing function: who may call it, how others are refused, what it emits."""

    name: str
    allowed: frozenset[str]
    reason: str
    act: Act
    events: Events
    arrange: Callable[[SimpleNamespace], None] = lambda w: None


def only(*actors: str) -> frozenset[str]:
    return frozenset(actors)


def request_withdraw(w: SimpleNamespace) -> None:
    w.escrow.request_withdraw(w.campaign_id, w.usdc, USDC, sender=w.actors["advertiser"])


def matured_withdraw(w: SimpleNamespace) -> None:
    request_withdraw(w)
    advance(WITHDRAW_DELAY)


def end_second_epoch(w: SimpleNamespace) -> None:
    end_epoch(w.escrow, 2)


def propose_stranger(contract_name: str) -> Callable[[SimpleNamespace], None]:
    def arrange(w: SimpleNamespace) -> None:
        getattr(w, contract_name).propose_admin(w.actors["stranger"], sender=w.actors["admin"])

    return arrange


def post_pending_root(w: SimpleNamespace) -> None:
    w.payout.post_root(
        2, w.tree.root, [w.usdc], [PUBLISHER_SHARE], "ipfs://2", sender=w.actors["settler"]
    )


def pause(contract_name: str) -> Callable[[SimpleNamespace], None]:
    def arrange(w: SimpleNamespace) -> None:
        getattr(w, contract_name).pause(sender=w.actors["guardian"])

    return arrange


def role_cases(contract_name: str) -> list[Case]:
    """Emergency stop and role management, shared by every contract through guard.vy."""

    def c(w: SimpleNamespace):
        return getattr(w, contract_name)

    def guardian_role(w: SimpleNamespace) -> bytes:
        return c(w).GUARDIAN_ROLE()

    missing_role = "guard: caller is not role admin"
    return [
        Case(
            f"{contract_name}.pause",
            only("guardian"),
            "guard: caller is not guardian",
            lambda w, a: c(w).pause(sender=a),
            lambda w, a, tx: [c(w).Paused(account=a)],
        ),
        Case(
            f"{contract_name}.unpause",
            only("admin"),
            "guard: caller is not admin",
            lambda w, a: c(w).unpause(sender=a),
            lambda w, a, tx: [c(w).Unpaused(account=a)],
            arrange=pause(contract_name),
        ),
        Case(
            f"{contract_name}.grantRole",
            only("admin"),
            missing_role,
            lambda w, a: c(w).grantRole(guardian_role(w), w.actors["stranger"], sender=a),
            lambda w, a, tx: [
                c(w).RoleGranted(role=guardian_role(w), account=w.actors["stranger"], sender=a)
            ],
        ),
        Case(
            f"{contract_name}.revokeRole",
            only("admin"),
            missing_role,
            lambda w, a: c(w).revokeRole(guardian_role(w), w.actors["guardian"], sender=a),
            lambda w, a, tx: [
                c(w).RoleRevoked(role=guardian_role(w), account=w.actors["guardian"], sender=a)
            ],
        ),
        Case(
            f"{contract_name}.renounceRole",
            only("guardian"),
            "guard: can only renounce for self",
            lambda w, a: c(w).renounceRole(guardian_role(w), w.actors["guardian"], sender=a),
            lambda w, a, tx: [
                c(w).RoleRevoked(role=guardian_role(w), account=w.actors["guardian"], sender=a)
            ],
        ),
        Case(
            f"{contract_name}.propose_admin",
            only("admin"),
            "guard: caller is not admin",
            lambda w, a: c(w).propose_admin(w.actors["stranger"], sender=a),
            lambda w, a, tx: [c(w).AdminProposed(admin=a, proposed_admin=w.actors["stranger"])],
        ),
        Case(
            f"{contract_name}.accept_admin",
            only("stranger"),
            "guard: caller is not proposed admin",
            lambda w, a: c(w).accept_admin(sender=a),
            lambda w, a, tx: [
                c(w).RoleRevoked(role=b"\x00" * 32, account=w.actors["admin"], sender=a),
                c(w).RoleGranted(role=b"\x00" * 32, account=a, sender=a),
                c(w).AdminTransferred(previous_admin=w.actors["admin"], new_admin=a),
            ],
            arrange=propose_stranger(contract_name),
        ),
    ]


CASES: list[Case] = [
    # PublisherRegistry: the oracle scores and verifies, the guardian suspends.
    Case(
        "publisher_registry.set_quality_score",
        only("oracle"),
        "registry: caller is not oracle",
        lambda w, a: w.publisher_registry.set_quality_score(w.actors["publisher"], 80, sender=a),
        lambda w, a, tx: [
            w.publisher_registry.QualityScoreSet(publisher=w.actors["publisher"], score=80)
        ],
    ),
    Case(
        "publisher_registry.set_domain_verified",
        only("oracle"),
        "registry: caller is not oracle",
        lambda w, a: w.publisher_registry.set_domain_verified(
            w.actors["publisher"], DOMAIN_HASH, sender=a
        ),
        lambda w, a, tx: [
            w.publisher_registry.DomainVerified(
                publisher=w.actors["publisher"], domain_hash=DOMAIN_HASH
            )
        ],
    ),
    Case(
        "publisher_registry.set_suspended",
        only("guardian"),
        "registry: caller is not guardian",
        lambda w, a: w.publisher_registry.set_suspended(w.actors["publisher"], True, sender=a),
        lambda w, a, tx: [
            w.publisher_registry.PublisherSuspended(publisher=w.actors["publisher"], suspended=True)
        ],
    ),
    # CampaignRegistry: only the campaign's own advertiser changes it.
    Case(
        "campaign_registry.update_status",
        only("advertiser"),
        "campaigns: caller is not advertiser",
        lambda w, a: w.campaign_registry.update_status(w.campaign_id, PAUSED, sender=a),
        lambda w, a, tx: [
            w.campaign_registry.CampaignStatusUpdated(campaign_id=w.campaign_id, status=PAUSED)
        ],
    ),
    Case(
        "campaign_registry.update_metadata",
        only("advertiser"),
        "campaigns: caller is not advertiser",
        lambda w, a: w.campaign_registry.update_metadata(
            w.campaign_id, 3 * USDC, NEW_METADATA, sender=a
        ),
        lambda w, a, tx: [
            w.campaign_registry.CampaignMetadataUpdated(
                campaign_id=w.campaign_id, bid=3 * USDC, metadata_hash=NEW_METADATA
            )
        ],
    ),
    # PaymentEscrow: configuration is the admin's, spend the settler's, budgets the advertiser's.
    Case(
        "escrow.set_token_allowed",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.escrow.set_token_allowed(w.usdc, False, sender=a),
        lambda w, a, tx: [w.escrow.TokenAllowed(token=w.usdc, allowed=False)],
    ),
    Case(
        "escrow.set_treasury",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.escrow.set_treasury(w.actors["stranger"], sender=a),
        lambda w, a, tx: [
            w.escrow.TreasuryUpdated(
                previous_treasury=w.treasury,
                new_treasury=w.actors["stranger"],
            )
        ],
    ),
    Case(
        "escrow.set_withdraw_delay",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.escrow.set_withdraw_delay(WITHDRAW_DELAY + 1, sender=a),
        lambda w, a, tx: [
            w.escrow.WithdrawDelayUpdated(
                previous_delay=WITHDRAW_DELAY, new_delay=WITHDRAW_DELAY + 1
            )
        ],
    ),
    Case(
        "escrow.set_settlement_grace",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.escrow.set_settlement_grace(SETTLEMENT_GRACE - 1, sender=a),
        lambda w, a, tx: [
            w.escrow.SettlementGraceUpdated(
                previous_grace=SETTLEMENT_GRACE, new_grace=SETTLEMENT_GRACE - 1
            )
        ],
    ),
    Case(
        "escrow.spend_batch",
        only("settler"),
        "escrow: caller is not settler",
        lambda w, a: w.escrow.spend_batch(2, [w.campaign_id], [EPOCH_SPEND], sender=a),
        # The escrow is the payout's only funder: a settled spend is what funds it.
        lambda w, a, tx: [
            w.escrow.Spent(
                epoch=2,
                campaign_id=w.campaign_id,
                token=w.usdc,
                asked=EPOCH_SPEND,
                charged=EPOCH_SPEND,
                publisher_share=PUBLISHER_SHARE,
                fee=EPOCH_SPEND - PUBLISHER_SHARE,
            ),
            w.usdc.Transfer(sender=w.escrow, receiver=w.payout, value=PUBLISHER_SHARE),
            w.payout.Funded(
                token=w.usdc,
                sender=w.escrow,
                amount=PUBLISHER_SHARE,
                total_funded=2 * PUBLISHER_SHARE,
            ),
            w.usdc.Transfer(
                sender=w.escrow, receiver=w.treasury, value=EPOCH_SPEND - PUBLISHER_SHARE
            ),
            w.escrow.EpochSpent(epoch=2, campaigns_charged=1, campaigns_skipped=0),
        ],
        arrange=end_second_epoch,
    ),
    Case(
        "escrow.deposit",
        only("advertiser"),
        "escrow: caller is not advertiser",
        lambda w, a: w.escrow.deposit(w.campaign_id, USDC, w.usdc, sender=a),
        lambda w, a, tx: [
            w.usdc.Transfer(sender=a, receiver=w.escrow, value=USDC),
            w.escrow.Deposited(campaign_id=w.campaign_id, token=w.usdc, sender=a, amount=USDC),
        ],
    ),
    Case(
        "escrow.request_withdraw",
        only("advertiser"),
        "escrow: caller is not advertiser",
        lambda w, a: w.escrow.request_withdraw(w.campaign_id, w.usdc, USDC, sender=a),
        lambda w, a, tx: [
            w.escrow.WithdrawRequested(
                campaign_id=w.campaign_id,
                token=w.usdc,
                amount=USDC,
                available_at=tx.timestamp + WITHDRAW_DELAY,
            )
        ],
    ),
    Case(
        "escrow.cancel_withdraw",
        only("advertiser"),
        "escrow: caller is not advertiser",
        lambda w, a: w.escrow.cancel_withdraw(w.campaign_id, w.usdc, sender=a),
        lambda w, a, tx: [w.escrow.WithdrawCancelled(campaign_id=w.campaign_id, token=w.usdc)],
        arrange=request_withdraw,
    ),
    Case(
        "escrow.withdraw",
        only("advertiser"),
        "escrow: caller is not advertiser",
        lambda w, a: w.escrow.withdraw(w.campaign_id, w.usdc, sender=a),
        lambda w, a, tx: [
            w.usdc.Transfer(sender=w.escrow, receiver=a, value=USDC),
            w.escrow.Withdrawn(campaign_id=w.campaign_id, token=w.usdc, recipient=a, amount=USDC),
        ],
        arrange=matured_withdraw,
    ),
    # PublisherPayout: the escrow funds, the settler posts, the guardian vetoes, anyone claims.
    Case(
        "payout.fund",
        only(),
        "payout: caller is not funder",
        lambda w, a: w.payout.fund(w.usdc, USDC, sender=a),
        lambda w, a, tx: [],
    ),
    Case(
        "payout.post_root",
        only("settler"),
        "payout: caller is not settler",
        lambda w, a: w.payout.post_root(
            2, w.tree.root, [w.usdc], [PUBLISHER_SHARE], "ipfs://2", sender=a
        ),
        lambda w, a, tx: [
            w.payout.RootPosted(
                root_id=2,
                root=w.tree.root,
                claimable_at=tx.timestamp + CHALLENGE_PERIOD,
                tokens=[ZERO, w.usdc.address],
                cumulative_totals=[0, PUBLISHER_SHARE],
                artefact_uri="ipfs://2",
            )
        ],
    ),
    Case(
        "payout.revoke_root",
        only("guardian"),
        "payout: caller is not guardian",
        lambda w, a: w.payout.revoke_root(2, sender=a),
        lambda w, a, tx: [w.payout.RootRevoked(root_id=2, root=w.tree.root, guardian=a)],
        arrange=post_pending_root,
    ),
    Case(
        "payout.set_challenge_period",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.payout.set_challenge_period(3_600, sender=a),
        lambda w, a, tx: [
            w.payout.ChallengePeriodUpdated(previous_period=CHALLENGE_PERIOD, new_period=3_600)
        ],
    ),
    # Anyone may push a publisher's earnings; they always go to the publisher.
    Case(
        "payout.claim",
        frozenset(ACTORS),
        "",
        lambda w, a: w.payout.claim(
            w.actors["publisher"],
            w.usdc,
            PUBLISHER_SHARE,
            w.tree.proof(w.actors["publisher"].address, w.usdc.address),
            sender=a,
        ),
        lambda w, a, tx: [
            w.usdc.Transfer(sender=w.payout, receiver=w.actors["publisher"], value=PUBLISHER_SHARE),
            w.payout.Claimed(
                root_id=1,
                account=w.actors["publisher"],
                token=w.usdc,
                recipient=w.actors["publisher"],
                amount=PUBLISHER_SHARE,
                cumulative_amount=PUBLISHER_SHARE,
            ),
        ],
    ),
    # Only the account itself may send its earnings elsewhere.
    Case(
        "payout.claim_to",
        only("publisher"),
        "payout: invalid proof",
        lambda w, a: w.payout.claim_to(
            w.actors["stranger"],
            w.usdc,
            PUBLISHER_SHARE,
            w.tree.proof(w.actors["publisher"].address, w.usdc.address),
            sender=a,
        ),
        lambda w, a, tx: [
            w.usdc.Transfer(sender=w.payout, receiver=w.actors["stranger"], value=PUBLISHER_SHARE),
            w.payout.Claimed(
                root_id=1,
                account=a,
                token=w.usdc,
                recipient=w.actors["stranger"],
                amount=PUBLISHER_SHARE,
                cumulative_amount=PUBLISHER_SHARE,
            ),
        ],
    ),
    Case(
        "payout.register_token",
        only("admin"),
        "guard: caller is not admin",
        lambda w, a: w.payout.register_token(w.campaign_registry, sender=a),
        lambda w, a, tx: [w.payout.TokenRegistered(token=w.campaign_registry)],
    ),
    Case(
        "campaign_registry.set_max_spend_per_epoch",
        only("advertiser"),
        "campaigns: caller is not advertiser",
        lambda w, a: w.campaign_registry.set_max_spend_per_epoch(w.campaign_id, USDC, sender=a),
        lambda w, a, tx: [
            w.campaign_registry.MaxSpendPerEpochSet(
                campaign_id=w.campaign_id,
                max_spend=USDC,
                effective_epoch=w.campaign_registry.current_epoch() + 1,
            )
        ],
    ),
]
for _contract_name in GUARDED:
    CASES.extend(role_cases(_contract_name))


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_only_intended_role_succeeds(world, case: Case, actor: str):
    caller = world.actors[actor]
    case.arrange(world)

    if actor in case.allowed:
        tx = case.act(world, caller)
        expected = case.events(world, caller, tx)
        # Allowance bookkeeping (Approval) is the token's business, not the contract's.
        names = {event.event_name for event in expected}
        assert [log for log in tx.events if log.event_name in names] == expected
        assert expected, "a privileged change must emit an event"
    else:
        with ape.reverts(case.reason):
            case.act(world, caller)
