"""Settlement survives being killed anywhere and being started many times at once: a
`python -m api.settlement run` process SIGKILLed (as `os._exit` from inside, with no cleanup)
at every step boundary, between storing a transaction and sending it and between sending it
and seeing its receipt, then resumed, leaves the chain and the database as one clean run
would: one spend per campaign and epoch, one root per id, nobody paid more than earned. Ten
runs started together settle an epoch once."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from typing import Any

import httpx

from api.settlement.service import CRASH_POINTS, Settlement
from tests.settlement.conftest import api_on_chain_clock, settlement_env
from tests.settlement.world import (
    CPM_BID,
    FINALITY,
    PAYEE_1,
    Campaign,
    Publisher,
    claim,
    end_epoch,
    render,
    rows,
    serve,
    settle,
    share,
    start_epoch,
    stored,
    visitor,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.stack import PROJECT_ROOT, Stack

KILLED = 137


def impressions(stack: Stack, publisher: Publisher, campaign: Campaign, n: int, first: int) -> None:
    """`n` valid impressions of `campaign` on `publisher` in the chain's current epoch."""
    with api_on_chain_clock(stack) as url, httpx.Client(base_url=url, timeout=30) as api:
        seen = [serve(api, publisher, campaign.campaign_id, visitor(first + i)) for i in range(n)]
        for visit in seen:
            render(api, visit)
    stored(stack, [v.ad["ad_id"] for v in seen], n)


def run_process(stack: Stack, settings: Any, crash_at: str | None) -> subprocess.CompletedProcess:
    extra = {"BUZZER_SETTLEMENT_CRASH_AT": crash_at} if crash_at else {}
    return subprocess.run(
        [sys.executable, "-m", "api.settlement", "run"],
        cwd=PROJECT_ROOT,
        env=settlement_env(stack, settings, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def leaf(stack: Stack, account: str, epoch: int) -> int:
    found = rows(
        stack,
        "SELECT p.cumulative FROM payout_proofs p JOIN settlement_roots r ON r.chain_id ="
        " p.chain_id AND r.root_id = p.root_id WHERE %s = ANY(r.epochs) AND p.account = %s",
        epoch,
        account,
    )
    return int(found[0][0]) if found else 0


def test_killed_at_every_step_and_resumed_settles_once(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p1: Publisher = world["p1"]
    cpm: Campaign = world["cpm"]
    payee = stack.chain.account(PAYEE_1).lower()
    earned_before = int(
        rows(
            stack,
            "SELECT coalesce(max(cumulative), 0) FROM payout_proofs WHERE account = %s",
            payee,
        )[0][0]
    )
    epoch = start_epoch(stack)
    impressions(stack, p1, cpm, 3, first=100)
    end_epoch(stack, epoch)

    crashed = []
    for point in CRASH_POINTS:
        stack.chain.mine(FINALITY)
        stack.index_here()
        result = run_process(stack, settlement_settings, point)
        assert result.returncode in (0, KILLED), result.stderr[-2000:]
        if result.returncode == KILLED:
            crashed.append(point)
    # every point was reached by one of the runs (each resumes where the last one died)
    assert crashed == list(CRASH_POINTS)
    settle(stack, settlement_settings)

    charged = 3 * CPM_BID // 1000
    publisher_share, _ = share(charged)
    assert rows(
        stack,
        "SELECT charged FROM epoch_spends WHERE epoch = %s AND campaign_id = %s",
        epoch,
        cpm.campaign_id,
    ) == [(charged,)]
    skipped = rows(stack, "SELECT reason FROM epoch_spend_skips WHERE epoch = %s", epoch)
    assert skipped == []  # no second spend was even tried
    roots = rows(stack, "SELECT root_id, state FROM settlement_roots WHERE %s = ANY(epochs)", epoch)
    assert [state for _, state in roots] == ["posted"]
    (root_id,) = [r for r, _ in roots]
    assert rows(stack, "SELECT count(*) FROM payout_roots WHERE root_id = %s", root_id) == [(1,)]
    sent = rows(
        stack,
        "SELECT step, status FROM settlement_txs WHERE step LIKE %s OR step = %s ORDER BY step",
        f"spend:{epoch}:%",
        f"post:{root_id}",
    )
    assert sent == [(f"post:{root_id}", "mined"), (f"spend:{epoch}:0", "mined")]
    assert leaf(stack, payee, epoch) == earned_before + publisher_share

    # and the claim pays exactly what was earned since the last claim
    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    stack.index_here()
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        before = stack.chain.usdc_balance(PAYEE_1)
        claim(api, stack, p1)
    assert stack.chain.usdc_balance(PAYEE_1) - before == publisher_share


def test_ten_runs_at_once_settle_an_epoch_once(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p2: Publisher = world["p2"]
    cpm: Campaign = world["cpm"]
    epoch = start_epoch(stack)
    impressions(stack, p2, cpm, 2, first=200)
    end_epoch(stack, epoch)
    stack.chain.mine(FINALITY)
    stack.index_here()

    reports = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(Settlement(settlement_settings).run())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "api.settlement", "run"],
            cwd=PROJECT_ROOT,
            env=settlement_env(stack, settlement_settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for process in processes:
        assert process.wait(120) == 0
    assert errors == []
    assert sum(1 for r in reports if r.busy) >= 1  # the others found the lock taken
    settle(stack, settlement_settings)

    assert rows(
        stack,
        "SELECT count(*), sum(charged) FROM epoch_spends WHERE epoch = %s AND campaign_id = %s",
        epoch,
        cpm.campaign_id,
    ) == [(1, 2 * CPM_BID // 1000)]
    assert rows(stack, "SELECT count(*) FROM epoch_spend_skips WHERE epoch = %s", epoch) == [(0,)]
    assert rows(stack, "SELECT count(*) FROM settlement_roots WHERE %s = ANY(epochs)", epoch) == [
        (1,)
    ]


def test_a_later_epoch_is_not_settled_before_an_earlier_one(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    """The escrow spends epochs forward only: `run --epoch N` with an earlier epoch still
    unsettled is refused (settling N first would leave the earlier one unspendable)."""
    p1: Publisher = world["p1"]
    cpm: Campaign = world["cpm"]
    earlier = start_epoch(stack)
    impressions(stack, p1, cpm, 1, first=600)
    end_epoch(stack, earlier)
    later = start_epoch(stack)
    end_epoch(stack, later)
    stack.chain.mine(FINALITY)
    stack.index_here()
    refused = subprocess.run(
        [sys.executable, "-m", "api.settlement", "run", "--epoch", str(later)],
        cwd=PROJECT_ROOT,
        env=settlement_env(stack, settlement_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1
    # the first epoch not settled is named (an empty one may come before `earlier`)
    named = re.search(r"epoch (\d+) is not settled yet", refused.stderr)
    assert named is not None and int(named.group(1)) <= earlier, refused.stderr
    assert rows(stack, "SELECT count(*) FROM settlement_epochs WHERE epoch >= %s", earlier) == [
        (0,)
    ]
    settle(stack, settlement_settings)  # in order, all of them
    states = dict(
        rows(stack, "SELECT epoch, state FROM settlement_epochs WHERE epoch >= %s", earlier)
    )
    assert states == {
        number: "allocated" if number == earlier else "empty"
        for number in range(earlier, later + 1)
    }
    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    stack.index_here()
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        claim(api, stack, p1)  # leave nothing unclaimed for the tests that follow
