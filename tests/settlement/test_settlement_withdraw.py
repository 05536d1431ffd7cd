"""A withdraw that matures while an epoch is being settled does not break the spend batch:
the campaign whose balance left is skipped by the escrow (its charge written off), every other
campaign in the batch is charged in full, and the publishers are paid what was charged."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from tests.api.conftest import Wallet
from tests.settlement.conftest import api_on_chain_clock, settlement_env
from tests.settlement.world import (
    CPM_BID,
    FINALITY,
    USDC,
    Campaign,
    Publisher,
    end_epoch,
    open_campaign,
    render,
    rows,
    send,
    serve,
    settle,
    share,
    start_epoch,
    stored,
    visitor,
)
from tests.support.anvil import WITHDRAW_DELAY
from tests.support.chain import dev_account
from tests.support.stack import PROJECT_ROOT, Stack

LEAVING = 30  # an advertiser beyond anvil's unlocked accounts: impersonated to send


def test_a_withdraw_maturing_mid_settlement_is_skipped_and_the_batch_goes_through(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p1: Publisher = world["p1"]
    cpm: Campaign = world["cpm"]
    leaving = dev_account(LEAVING).address
    stack.anvil.call("anvil_impersonateAccount", leaving)
    stack.anvil.call("anvil_setBalance", leaving, hex(10**20))
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        other = open_campaign(api, stack, LEAVING, bid_model="cpm", bid=CPM_BID, funds=5 * USDC)

    epoch = start_epoch(stack)
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        seen = [
            serve(api, p1, campaign.campaign_id, visitor(500 + i))
            for i, campaign in enumerate([cpm, cpm, other, other])
        ]
        for visit in seen:
            render(api, visit)
    stored(stack, [v.ad["ad_id"] for v in seen], 4)
    end_epoch(stack, epoch)

    # settlement charges both campaigns, then dies before sending the spend
    stack.chain.mine(FINALITY)
    stack.index_here()
    died = subprocess.run(
        [sys.executable, "-m", "api.settlement", "run"],
        cwd=PROJECT_ROOT,
        env=settlement_env(stack, settlement_settings, BUZZER_SETTLEMENT_CRASH_AT="charge:done"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert died.returncode == 137
    asked = dict(
        rows(stack, "SELECT campaign_id, asked FROM settlement_charges WHERE epoch = %s", epoch)
    )
    assert asked == {cpm.campaign_id: 2 * CPM_BID // 1000, other.campaign_id: 2 * CPM_BID // 1000}

    # meanwhile the other advertiser takes everything out
    owner = Wallet(dev_account(LEAVING))
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        request = api.post(
            f"{other.path}/withdraw-request-tx", json={"amount": 5 * USDC}, headers=other.headers
        )
        assert request.status_code == 200, request.text
        send(stack, owner, request.json())
        stack.chain.increase_time(WITHDRAW_DELAY + 1)
        stack.index_here()
        send(stack, owner, api.post(f"{other.path}/withdraw-tx", headers=other.headers).json())
    assert (
        int(stack.chain.call("PaymentEscrow", "get_balance", other.campaign_id, stack.chain.usdc))
        == 0
    )

    settle(stack, settlement_settings)
    charged = dict(
        rows(
            stack,
            "SELECT campaign_id, charged FROM settlement_charges WHERE epoch = %s",
            epoch,
        )
    )
    assert charged == {cpm.campaign_id: 2 * CPM_BID // 1000, other.campaign_id: 0}
    skipped = rows(
        stack, "SELECT campaign_id, reason FROM epoch_spend_skips WHERE epoch = %s", epoch
    )
    assert skipped == [(other.campaign_id, "no balance")]
    allocated = rows(
        stack, "SELECT sum(amount) FROM settlement_allocations WHERE epoch = %s", epoch
    )
    assert allocated == [(share(2 * CPM_BID // 1000)[0],)]
    stack.anvil.call("anvil_stopImpersonatingAccount", leaving)
