"""Push payouts: a publisher who opts in is paid once a root is current, without sending a
claim; one who did not opt in, or whose claimable amount is below its threshold, is left to
claim. (Runs after the other settlement tests, on the same publishers and campaigns.)"""

from __future__ import annotations

from typing import Any

import httpx

from api.settlement.service import POST_STEPS, Settlement
from tests.settlement.test_settlement_resume import impressions
from tests.settlement.world import (
    CPM_BID,
    PAYEE_1,
    Campaign,
    Publisher,
    claim,
    end_epoch,
    rows,
    settle,
    share,
    start_epoch,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.stack import Stack


def payment_wallet(stack: Stack, publisher: Publisher) -> str:
    """The publisher's payment wallet on-chain now (an earlier test may have changed it)."""
    ((account,),) = rows(
        stack, "SELECT payment_wallet FROM publishers_onchain WHERE wallet = %s", publisher.wallet
    )
    return str(account).lower()


def test_an_opted_in_publisher_is_paid_without_claiming(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p1: Publisher = world["p1"]
    p2: Publisher = world["p2"]
    cpm: Campaign = world["cpm"]
    payee_2 = payment_wallet(stack, p2)
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        refused = api.patch(
            "/api/v1/publishers/me", json={"push_threshold": -1}, headers=p2.headers
        )
        assert refused.status_code == 422
        chosen = api.patch(
            "/api/v1/publishers/me",
            json={"push_payouts": True, "push_threshold": 1_000},
            headers=p2.headers,
        )
        assert chosen.status_code == 200, chosen.text
        assert (chosen.json()["push_payouts"], chosen.json()["push_threshold"]) == (True, 1_000)
        # P1 opts in too, but above anything it earns here
        api.patch(
            "/api/v1/publishers/me",
            json={"push_payouts": True, "push_threshold": 10**12},
            headers=p1.headers,
        ).raise_for_status()

    epoch = start_epoch(stack)
    impressions(stack, p2, cpm, 2, first=300)
    impressions(stack, p1, cpm, 1, first=310)
    end_epoch(stack, epoch)
    settle(stack, settlement_settings)
    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    p2_share, _ = share(2 * CPM_BID // 1000)
    before = stack.chain.usdc_balance(payee_2), stack.chain.usdc_balance(PAYEE_1)
    done = settle(stack, settlement_settings)  # the root is current now: pushes go out
    assert any("pushed 1 payout(s), 0 skipped" in line for line in done), done

    assert stack.chain.usdc_balance(payee_2) - before[0] == p2_share
    assert stack.chain.usdc_balance(PAYEE_1) == before[1]  # below its threshold: not pushed
    pushed = rows(stack, "SELECT account, amount, status FROM settlement_pushes")
    assert pushed == [(payee_2, p2_share, "paid")]
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        stack.index_here()
        claims = api.get("/api/v1/publishers/me/claims", headers=p2.headers).json()
        assert [(p["account"], p["amount"], p["status"]) for p in claims["pushes"]] == [
            (payee_2, p2_share, "paid")
        ]
        # nothing is left to claim on the pushed leaf
        assert all(c["claimable"] == 0 for c in claims["claimable"] if c["account"] == payee_2)
    assert settle(stack, settlement_settings) == []  # and nothing is pushed twice
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        claim(api, stack, p1)  # leave nothing unclaimed for the tests that follow


def test_a_push_the_contract_skips_is_recorded_with_its_reason(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    """P2 (opted in) claims by hand just as its root becomes current, before the indexer has
    seen the claim: the push that follows is skipped by `claim_many` ("nothing to claim"),
    recorded and shown, and not sent again once the claim is known."""
    p2: Publisher = world["p2"]
    cpm: Campaign = world["cpm"]
    payee_2 = payment_wallet(stack, p2)
    epoch = start_epoch(stack)
    impressions(stack, p2, cpm, 1, first=320)
    end_epoch(stack, epoch)
    settle(stack, settlement_settings)
    (root_id,) = [
        r
        for (r,) in rows(
            stack, "SELECT root_id FROM settlement_roots WHERE %s = ANY(epochs)", epoch
        )
    ]
    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    stack.index_here()
    before = stack.chain.usdc_balance(payee_2)
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        claim(api, stack, p2)  # not indexed yet
    paid_by_hand = stack.chain.usdc_balance(payee_2) - before
    assert paid_by_hand == share(CPM_BID // 1000)[0]

    Settlement(settlement_settings).run(POST_STEPS)  # pushes from what it knows
    settle(stack, settlement_settings)
    pushed = rows(
        stack,
        "SELECT account, amount, status, reason FROM settlement_pushes WHERE root_id = %s",
        root_id,
    )
    assert pushed == [(payee_2, 0, "skipped", "payout: nothing to claim")]
    assert stack.chain.usdc_balance(payee_2) - before == paid_by_hand  # paid once
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        shown = api.get("/api/v1/publishers/me/claims", headers=p2.headers).json()["pushes"]
    assert [(p["root_id"], p["status"]) for p in shown if p["root_id"] == root_id] == [
        (root_id, "skipped")
    ]
    assert settle(stack, settlement_settings) == []  # the claim is known now: not retried
