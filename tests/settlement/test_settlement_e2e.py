"""The money loop end to end on the session stack: advertisers fund campaigns on-chain, ads
are served and seen and clicked (some of it invalid), an epoch ends, settlement spends from
escrow, allocates, posts a root, and publishers claim through the API from their own wallets.
Every balance on-chain and every row equals the expected value to the atomic unit; invalid
events earn nothing; 85/15 holds; a second epoch pays only the difference; a campaign whose
events exceed its balance is charged exactly its balance; a publisher who changes payment
wallet between epochs keeps the old earnings on the old wallet."""

from __future__ import annotations

import time
from typing import Any

import httpx

from api.settlement.service import reconcile
from api.settlement.watcher import Watcher
from api.tracking.stream import Keys
from tests.settlement.conftest import api_on_chain_clock
from tests.settlement.world import (
    BOT,
    CPC_BID,
    CPM_BID,
    P2,
    PAYEE_1,
    PAYEE_2B,
    USDC,
    Campaign,
    Publisher,
    claim,
    click,
    end_epoch,
    render,
    rows,
    serve,
    settle,
    share,
    start_epoch,
    stored,
    visitor,
    wallet,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.chain import TREASURY
from tests.support.stack import Stack


def test_two_epochs_pay_publishers_exactly_what_valid_traffic_earned(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p1: Publisher = world["p1"]
    p2: Publisher = world["p2"]
    cpm: Campaign = world["cpm"]
    cpc: Campaign = world["cpc"]
    usdc = stack.chain.usdc
    treasury_before = stack.chain.usdc_balance(TREASURY)

    # --- epoch 1: 5 valid impressions (3 on P1, 2 on P2), a duplicate and a bot render;
    # 2 valid clicks on P1 and one too fast on P2
    e1 = start_epoch(stack)
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        seen = [
            serve(api, p, cpm.campaign_id, visitor(i)) for i, p in enumerate([p1, p1, p1, p2, p2])
        ]
        for visit in seen:
            render(api, visit)
        render(api, seen[0])  # a duplicate
        bot_visit = serve(api, p1, cpm.campaign_id, visitor(10))
        bot_visit.user_agent = BOT
        render(api, bot_visit)
        clicked = [
            serve(api, p, cpc.campaign_id, visitor(20 + i)) for i, p in enumerate([p1, p1, p2])
        ]
        for visit in clicked:
            render(api, visit)
        click(api, clicked[2])  # faster than a person
        time.sleep(stack.settings.min_click_ms / 1000 + 0.1)
        click(api, clicked[0])
        click(api, clicked[1])
    serve_ids = [v.ad["ad_id"] for v in [*seen, bot_visit, *clicked]]
    stored(stack, serve_ids, 5 + 1 + 1 + 3 + 3)
    verified = rows(
        stack,
        "SELECT count(*) FILTER (WHERE verified AND kind = 'impression' AND campaign_id = %s),"
        " count(*) FILTER (WHERE verified AND kind = 'click' AND campaign_id = %s)"
        " FROM ad_events WHERE serve_id = ANY(%s)",
        cpm.campaign_id,
        cpc.campaign_id,
        serve_ids,
    )[0]
    assert verified == (5, 2)

    end_epoch(stack, e1)
    done = settle(stack, settlement_settings)
    assert any(f"epoch {e1}: spent" in line for line in done), done

    cpm_charged, cpc_charged = 5 * CPM_BID // 1000, 2 * CPC_BID
    spends = dict(
        rows(
            stack,
            "SELECT campaign_id, charged FROM epoch_spends"
            " WHERE epoch = %s AND campaign_id = ANY(%s)",
            e1,
            [cpm.campaign_id, cpc.campaign_id],
        )
    )
    assert spends == {cpm.campaign_id: cpm_charged, cpc.campaign_id: cpc_charged}
    cpm_share, cpm_fee = share(cpm_charged)
    cpc_share, cpc_fee = share(cpc_charged)
    # P1 had 3 of the 5 impressions' bids, P2 2 of them; every valid click was P1's
    assert cpm_share * 3 % 5 == 0
    p1_cpm = cpm_share * 3 // 5
    allocations = dict(
        (account, int(amount))
        for account, amount in rows(
            stack,
            "SELECT account, sum(amount) FROM settlement_allocations WHERE epoch = %s"
            " GROUP BY account",
            e1,
        )
    )
    assert allocations[wallet(PAYEE_1)] + allocations[wallet(P2)] == cpm_share + cpc_share
    assert allocations[wallet(PAYEE_1)] == p1_cpm + cpc_share
    assert allocations[wallet(P2)] == cpm_share - p1_cpm
    assert stack.chain.usdc_balance(TREASURY) - treasury_before == cpm_fee + cpc_fee
    # each step left its row, with what it read and wrote
    steps = dict(
        rows(stack, "SELECT step, outputs FROM settlement_steps WHERE subject = %s", f"epoch:{e1}")
    )
    assert sorted(steps) == ["allocate", "charge", "freeze", "spend"]
    assert steps["spend"]["charged"] == cpm_charged + cpc_charged
    assert steps["allocate"]["allocated"] == cpm_share + cpc_share

    # the root is posted; claims wait for its challenge period
    root_1 = rows(stack, "SELECT root_id, state FROM settlement_roots WHERE %s = ANY(epochs)", e1)
    assert len(root_1) == 1 and root_1[0][1] == "posted"
    # the watcher recomputes it from its public artefact and the chain, and agrees
    reports = Watcher(settlement_settings).run_once()
    assert [r.root_id for r in reports if not r.ok] == [] and root_1[0][0] in {
        r.root_id for r in reports
    }
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        (epoch_row,) = [e for e in api.get("/api/v1/settlement/epochs").json() if e["epoch"] == e1]
        assert (epoch_row["charged"], epoch_row["fee"], epoch_row["root_id"]) == (
            cpm_charged + cpc_charged,
            cpm_fee + cpc_fee,
            root_1[0][0],
        )
        root = api.get(f"/api/v1/settlement/roots/{root_1[0][0]}").json()
        assert root["onchain_status"] == "pending" and e1 in root["epochs"]
        artefact = httpx.get(root["artefact_uri"]).json()
        assert artefact["root"] == root["root"] and e1 in artefact["epochs"]
        spend = api.get(f"{cpm.path}/spend", headers=cpm.headers).json()
        assert [(s["epoch"], s["charged"]) for s in spend if s["epoch"] == e1] == [
            (e1, cpm_charged)
        ]

        earnings = api.get("/api/v1/publishers/me/earnings", headers=p1.headers).json()
        (token,) = [t for t in earnings["tokens"] if t["token"] == usdc.lower()]
        assert int(token["pending"]) == p1_cpm + cpc_share and int(token["claimable"]) == 0

        stack.chain.increase_time(CHALLENGE_PERIOD + 1)
        stack.index_here()
        earnings = api.get("/api/v1/publishers/me/earnings", headers=p1.headers).json()
        (token,) = [t for t in earnings["tokens"] if t["token"] == usdc.lower()]
        assert int(token["claimable"]) == p1_cpm + cpc_share

        (ready,) = api.get("/api/v1/publishers/me/claims", headers=p1.headers).json()["claimable"]
        assert (ready["account"], ready["claimable"]) == (wallet(PAYEE_1), p1_cpm + cpc_share)
        before = stack.chain.usdc_balance(PAYEE_1)
        claim(api, stack, p1)
        assert stack.chain.usdc_balance(PAYEE_1) - before == p1_cpm + cpc_share
        stack.index_here()
        history = api.get("/api/v1/publishers/me/claims", headers=p1.headers).json()
        assert [(c["account"], c["amount"]) for c in history["claims"]] == [
            (wallet(PAYEE_1), p1_cpm + cpc_share)
        ]
        assert history["claimable"][0]["claimable"] == 0

    # --- epoch 2: P2 moves its payments to a new wallet; 2 valid impressions on P2; the CPC
    # campaign gets 3 valid clicks but has 400,000 left: it is charged exactly that
    e2 = start_epoch(stack)
    stack.chain.update_payment_wallet(P2, PAYEE_2B)
    stack.index_here()
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        seen = [serve(api, p2, cpm.campaign_id, visitor(30 + i)) for i in range(2)]
        for visit in seen:
            render(api, visit)
        clicked = [serve(api, p1, cpc.campaign_id, visitor(40 + i)) for i in range(3)]
        for visit in clicked:
            render(api, visit)
        time.sleep(stack.settings.min_click_ms / 1000 + 0.1)
        for visit in clicked:
            click(api, visit)
    stored(stack, [v.ad["ad_id"] for v in [*seen, *clicked]], 2 + 3 + 3)
    end_epoch(stack, e2)
    settle(stack, settlement_settings)

    cpc_left = USDC - cpc_charged
    spends = dict(
        rows(
            stack,
            "SELECT campaign_id, charged FROM epoch_spends"
            " WHERE epoch = %s AND campaign_id = ANY(%s)",
            e2,
            [cpm.campaign_id, cpc.campaign_id],
        )
    )
    assert spends == {cpm.campaign_id: 2 * CPM_BID // 1000, cpc.campaign_id: cpc_left}
    written_off = rows(
        stack,
        "SELECT written_off FROM settlement_charges WHERE epoch = %s AND campaign_id = %s",
        e2,
        cpc.campaign_id,
    )
    assert written_off == [(3 * CPC_BID - cpc_left,)]
    assert int(stack.chain.call("PaymentEscrow", "get_balance", cpc.campaign_id, usdc)) == 0
    assert int(stack.chain.call("PaymentEscrow", "get_balance", cpm.campaign_id, usdc)) == (
        10 * USDC - 7 * CPM_BID // 1000
    )
    # settled spend left the serving budget's billed counter
    with stack.cache() as cache:
        assert (
            int(cache.get(Keys(cpm.campaign_id, stack.settings.tracking_shards).billed) or 0) == 0
        )

    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    stack.index_here()
    cpm2_share, _ = share(2 * CPM_BID // 1000)
    cpc2_share, _ = share(cpc_left)
    leaves = dict(
        (account, int(cumulative))
        for account, cumulative in rows(
            stack,
            "SELECT p.account, p.cumulative FROM payout_proofs p JOIN settlement_roots r"
            " ON r.chain_id = p.chain_id AND r.root_id = p.root_id WHERE %s = ANY(r.epochs)",
            e2,
        )
    )
    # the old wallet keeps epoch 1's earnings, the new one gets epoch 2's
    assert leaves[wallet(P2)] == cpm_share - p1_cpm
    assert leaves[wallet(PAYEE_2B)] == cpm2_share
    assert leaves[wallet(PAYEE_1)] == p1_cpm + cpc_share + cpc2_share
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        before = stack.chain.usdc_balance(PAYEE_1)
        claim(api, stack, p1)
        # the second claim pays only what epoch 2 added
        assert stack.chain.usdc_balance(PAYEE_1) - before == cpc2_share
        before = stack.chain.usdc_balance(PAYEE_2B), stack.chain.usdc_balance(P2)
        claim(api, stack, p2)  # both of P2's leaves: the old wallet's and the new one's
        assert stack.chain.usdc_balance(PAYEE_2B) - before[0] == cpm2_share
        assert stack.chain.usdc_balance(P2) - before[1] == cpm_share - p1_cpm

    # the books balance to the unit: the newest root pays exactly the settled publisher
    # shares, and the payout holds exactly what was funded less what was claimed
    stack.index_here()
    (book,) = [b for b in reconcile(settlement_settings) if b.token == usdc.lower()]
    assert (book.root_difference, book.balance_difference) == (0, 0)
    assert book.claimed > 0 and book.root_total == book.settled_share > 0
